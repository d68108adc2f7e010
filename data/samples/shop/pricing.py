"""Pricing rules: discounts and rounding used by the order service."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def round_money(amount: Decimal) -> Decimal:
    """Round to cents, halves away from zero, as invoices do."""
    cents = Decimal("0.01")
    return amount.quantize(cents, rounding=ROUND_HALF_UP)


def volume_discount(quantity: int) -> Decimal:
    """Discount rate for a quantity: 5% from 10 items, 10% from 50, 15% from 100."""
    if quantity >= 100:
        return Decimal("0.15")
    if quantity >= 50:
        return Decimal("0.10")
    if quantity >= 10:
        return Decimal("0.05")
    return Decimal("0")


def apply_coupon(total: Decimal, code: str, coupons: dict[str, Decimal]) -> Decimal:
    """Subtract a known coupon's amount from a total, never going below zero."""
    if code not in coupons:
        raise KeyError(f"unknown coupon {code}")
    reduced = total - coupons[code]
    return max(reduced, Decimal("0"))


class PriceList:
    """Unit prices by SKU, with volume discounts."""

    def __init__(self, prices: dict[str, Decimal]):
        self.prices = dict(prices)

    def unit_price(self, sku: str) -> Decimal:
        """The list price of a SKU; raises KeyError for an unknown SKU."""
        if sku not in self.prices:
            raise KeyError(f"no price for {sku}")
        return self.prices[sku]

    def quote(self, sku: str, quantity: int) -> Decimal:
        """Price of `quantity` items of a SKU after the volume discount, rounded to cents."""
        gross = self.unit_price(sku) * quantity
        discounted = gross * (1 - volume_discount(quantity))
        return round_money(discounted)
