"""Tests of the order service, kept beside it so test-generation examples can be built later."""

from datetime import date
from decimal import Decimal

import pytest

from shop.orders import OrderNotFound, OrderService


def test_place_order_adds_tax():
    service = OrderService(tax_rate=Decimal("0.1"))
    order = service.create_order("c1")
    order.add_line("apple", 3, Decimal("2.00"))
    total = service.place_order(order.order_id, date(2026, 1, 1))
    assert total == Decimal("6.60")
    assert order.status == "placed"


def test_unknown_order_raises():
    service = OrderService()
    with pytest.raises(OrderNotFound):
        service.find_order("ORD-999999")
