"""A small order service: the kind of business code the flywheel learns an organisation's style from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


class OrderNotFound(KeyError):
    """Raised when an order id is unknown."""


@dataclass
class OrderLine:
    sku: str
    quantity: int
    unit_price: Decimal

    def total(self) -> Decimal:
        """Price of the line: quantity times unit price."""
        if self.quantity < 0:
            raise ValueError(f"negative quantity for {self.sku}")
        return self.unit_price * self.quantity


@dataclass
class Order:
    order_id: str
    customer_id: str
    lines: list[OrderLine] = field(default_factory=list)
    status: str = "open"
    placed_on: date | None = None

    def subtotal(self) -> Decimal:
        """Sum of all line totals."""
        total = Decimal("0")
        for line in self.lines:
            total += line.total()
        return total

    def add_line(self, sku: str, quantity: int, unit_price: Decimal) -> OrderLine:
        """Add a line, merging it with an existing line for the same SKU."""
        if self.status != "open":
            raise ValueError(f"order {self.order_id} is {self.status}, not open")
        for line in self.lines:
            if line.sku == sku and line.unit_price == unit_price:
                line.quantity += quantity
                return line
        line = OrderLine(sku, quantity, unit_price)
        self.lines.append(line)
        return line


class OrderService:
    """Creates, finds and closes orders kept in memory."""

    def __init__(self, tax_rate: Decimal = Decimal("0.2")):
        self.tax_rate = tax_rate
        self._orders: dict[str, Order] = {}
        self._next_id = 1

    def create_order(self, customer_id: str) -> Order:
        """Open a new, empty order for a customer."""
        order_id = f"ORD-{self._next_id:06d}"
        self._next_id += 1
        order = Order(order_id, customer_id)
        self._orders[order_id] = order
        return order

    def find_order(self, order_id: str) -> Order:
        """The order with this id; raises OrderNotFound when there is none."""
        try:
            return self._orders[order_id]
        except KeyError:
            raise OrderNotFound(order_id) from None

    def orders_of(self, customer_id: str) -> list[Order]:
        """All orders of a customer, oldest first."""
        found = [o for o in self._orders.values() if o.customer_id == customer_id]
        found.sort(key=lambda o: o.order_id)
        return found

    def place_order(self, order_id: str, today: date) -> Decimal:
        """Close an open order with at least one line and return its total including tax."""
        order = self.find_order(order_id)
        if not order.lines:
            raise ValueError(f"order {order_id} has no lines")
        order.status = "placed"
        order.placed_on = today
        return (order.subtotal() * (1 + self.tax_rate)).quantize(Decimal("0.01"))

    def cancel_order(self, order_id: str) -> None:
        """Cancel an order that has not been placed yet."""
        order = self.find_order(order_id)
        if order.status == "placed":
            raise ValueError(f"order {order_id} is already placed")
        order.status = "cancelled"
