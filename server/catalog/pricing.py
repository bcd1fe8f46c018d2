"""Periodic pricing of aggregated usage and discounts, exact (``Fraction`` of micro-units).

A usage component prices a cycle's total quantity of one service: ``per_unit``,
``graduated`` (each tier prices its own slice), ``volume`` (the tier the total falls in
prices all of it), ``package`` (started packages); ``included`` units are free first.
Tier bounds are inclusive: a total of exactly ``up_to`` falls in that tier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

import msgspec

from billing_oss.core.rounding import MICROS, MoneyError

Model = Literal["per_unit", "graduated", "volume", "package"]


class Tier(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    up_to: Decimal | None  # units, inclusive; None: open-ended
    price: Decimal  # per unit


class UsageComponent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    service: str  # usage kind: voice, sms, data, event
    model: Model
    unit: str = "unit"  # printed unit name
    unit_size: int = 1  # base quantity (seconds, bytes, events) per priced unit
    included: Decimal = Decimal(0)  # free units per cycle (allowance)
    price: Decimal = Decimal(0)  # per_unit, package
    package_size: Decimal = Decimal(1)
    tiers: tuple[Tier, ...] = ()


class VolumeTier(msgspec.Struct, frozen=True):
    from_micros: int
    percent: Decimal


def parse_components(raw: Any) -> list[UsageComponent]:
    try:
        components = msgspec.convert(raw, list[UsageComponent])
    except msgspec.ValidationError as exc:
        raise MoneyError(f"usage pricing: {exc}") from None
    for c in components:
        _check(c)
    return components


def _check(c: UsageComponent) -> None:
    if c.unit_size <= 0 or c.package_size <= 0 or c.included < 0:
        raise MoneyError(f"usage pricing of {c.service}: sizes must be positive")
    if c.model in ("graduated", "volume"):
        bounds = [t.up_to for t in c.tiers]
        if not bounds or bounds[-1] is not None or None in bounds[:-1]:
            raise MoneyError(f"usage pricing of {c.service}: tiers must end open-ended")
        finite = [b for b in bounds if b is not None]
        if finite != sorted(set(finite)):
            raise MoneyError(f"usage pricing of {c.service}: tier bounds must increase")


def billable_units(component: UsageComponent, base_quantity: int | Fraction) -> Fraction:
    """Units after the included allowance."""
    units = Fraction(base_quantity) / component.unit_size
    return max(Fraction(0), units - Fraction(component.included))


def price_units(component: UsageComponent, units: Fraction) -> Fraction:
    """Exact price in micro-units of ``units`` priced units."""
    c = component
    if c.model == "per_unit":
        return units * _micros(c.price)
    if c.model == "package":
        packages = math.ceil(units / Fraction(c.package_size))
        return packages * _micros(c.price)
    if c.model == "volume":
        tier = next(t for t in c.tiers if t.up_to is None or units <= Fraction(t.up_to))
        return units * _micros(tier.price)
    total = Fraction(0)
    lower = Fraction(0)
    for tier in c.tiers:
        upper = None if tier.up_to is None else Fraction(tier.up_to)
        if units <= lower:
            break
        portion = units - lower if upper is None else min(units, upper) - lower
        total += portion * _micros(tier.price)
        if upper is None:
            break
        lower = upper
    return total


def _micros(price: Decimal) -> Fraction:
    return Fraction(price) * MICROS


# Discounts ---------------------------------------------------------------------------------


def percentage(base: Fraction | int, percent: Decimal) -> Fraction:
    return Fraction(base) * Fraction(percent) / 100


def fixed(base: Fraction | int, amount_micros: int) -> Fraction:
    """A fixed amount off, never more than the base (a discount does not create a credit)."""
    return max(Fraction(0), min(Fraction(amount_micros), Fraction(base)))


def volume(base: Fraction | int, tiers: Sequence[VolumeTier]) -> Fraction:
    """The percentage of the highest tier the base reaches, on the whole base."""
    reached = [t for t in tiers if base >= t.from_micros]
    if not reached:
        return Fraction(0)
    return percentage(base, max(reached, key=lambda t: t.from_micros).percent)


def allocate(total: int, weights: Sequence[int], step: int) -> list[int]:
    """Split ``total`` (a multiple of ``step``) over ``weights`` in proportion, each share a
    multiple of ``step``, shares summing to ``total`` exactly (largest remainder)."""
    if total % step:
        raise MoneyError(f"{total} is not a multiple of {step}")
    weight_sum = sum(weights)
    if weight_sum == 0:
        return [total] + [0] * (len(weights) - 1) if weights else []
    units = total // step
    exact = [Fraction(units * w, weight_sum) for w in weights]
    shares = [math.floor(e) for e in exact]
    left = units - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (exact[i] - shares[i], -i), reverse=True)
    for i in order[:left]:
        shares[i] += 1
    return [s * step for s in shares]


def allocate_signed(total: int, weights: Sequence[int], step: int) -> list[int]:
    """Like ``allocate`` for weights of any sign: shares ≈ total × w / Σw, summing exactly.
    With Σw = 0 (credits cancelling charges) the whole total goes to the largest weight."""
    weight_sum = sum(weights)
    if weight_sum == 0:
        shares = [0] * len(weights)
        if weights:
            shares[max(range(len(weights)), key=lambda i: abs(weights[i]))] = total
        return shares
    if total % step:
        raise MoneyError(f"{total} is not a multiple of {step}")
    exact = [Fraction(total // step * w, weight_sum) for w in weights]
    floors = [math.floor(e) for e in exact]
    left = total // step - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (exact[i] - floors[i], -i), reverse=True)
    for i in order[:left]:
        floors[i] += 1
    return [f * step for f in floors]


# What an invoice prints ----------------------------------------------------------------------


class Slice(msgspec.Struct, frozen=True):
    """``quantity`` units at ``price`` each: one row of a priced usage line."""

    quantity: Fraction
    unit: str
    price: Decimal

    @property
    def amount(self) -> Fraction:
        return self.quantity * _micros(self.price)

    def as_json(self) -> dict[str, str]:
        q = self.quantity
        return {"quantity": str(Decimal(q.numerator) / Decimal(q.denominator)),
                "unit": self.unit, "price": str(self.price)}


def slices(component: UsageComponent, units_before: Fraction, units: Fraction) -> list[Slice]:
    """The price of ``units`` more units after ``units_before`` as quantity × price rows:
    one row (per unit, volume: the tier reached), packages started, or one row per tier
    the units fall in (graduated). The caller checks that they sum to the line's price."""
    c = component
    if c.model == "per_unit":
        return [Slice(units, c.unit, c.price)] if units else []
    if c.model == "package":
        size = Fraction(c.package_size)
        started = math.ceil((units_before + units) / size) - math.ceil(units_before / size)
        what = f"packages ({c.package_size.normalize():,f} {c.unit})"
        return [Slice(Fraction(started), what, c.price)] if started else []
    if c.model == "volume":
        total = units_before + units
        tier = next(t for t in c.tiers if t.up_to is None or total <= Fraction(t.up_to))
        return [Slice(units, c.unit, tier.price)] if units else []
    out = []
    lower = Fraction(0)
    start, end = units_before, units_before + units
    for tier in c.tiers:
        upper = None if tier.up_to is None else Fraction(tier.up_to)
        portion = (end if upper is None else min(end, upper)) - max(start, lower)
        if portion > 0:
            out.append(Slice(portion, c.unit, tier.price))
        if upper is None or upper >= end:
            break
        lower = upper
    return out


class Product(msgspec.Struct, frozen=True):
    """A catalog product: a recurring fee and the periodic pricing of its usage."""

    product_id: str
    name: str
    currency: str
    recurring_fee_micros: int
    tax_class: str = "standard"
    usage_pricing: tuple[UsageComponent, ...] = ()
