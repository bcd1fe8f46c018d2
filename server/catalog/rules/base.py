"""What a per-call pricing rule is: everything about it but its lines in the native kernel.

DESIGN.md §5, step 5: once the steps have priced a call, per-call rules adjust its exact
total in a fixed order (the connect fee, the minimum, the maximum, the rounding). A rule
module in this package holds, for one rule:

- ``fields``: a msgspec Struct of the rule's catalog fields; a rate (``schema.RateDef``)
  carries them after its own. Each has a default, so catalogs written before the rule
  still decode.
- ``check(fields, path)``: the checked value (an exact ``Fraction`` for money) or a
  ``CatalogError`` naming the field under ``path`` (the rate's path); the model keeps the
  value in ``Rate.rules[name]``.
- ``money(value)``: the amounts the rate's common denominator must clear, so the kernel
  can hold them as integers.
- ``columns`` and ``compile(value, scale)``: the kernel's per-rate columns the rule fills
  (``native.rating.RULE_COLUMNS`` names the same ones) and one value for each; ``scale``
  turns an amount into the kernel's integer at the rate's common denominator.
- ``apply(value, total, usage)``: its exact arithmetic on the call's total, the reference
  twin of its lines in ``native/rating.pyx``.

``optional_amount_rule`` builds the common shape: one optional amount that combines with
the total where set (the minimum and the maximum charge).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Generic, TypeVar

import msgspec

from billing_oss.core.errors import CatalogError
from billing_oss.core.money import parse_price

Fields = TypeVar("Fields", bound=msgspec.Struct)
Value = TypeVar("Value")
Scale = Callable[[Fraction], int]

MAX_DENOMINATOR = 2**62


def _no_money(value: Any) -> tuple[Fraction, ...]:
    return ()


@dataclass(frozen=True, slots=True)
class PricingRule(Generic[Fields, Value]):
    name: str  # the key of its value in ``Rate.rules``
    order: int  # its place among the rules' arithmetic, ascending
    fields: type[Fields]
    check: Callable[[Fields, str], Value]
    columns: tuple[str, ...]
    compile: Callable[[Value, Scale], tuple[int, ...]]
    apply: Callable[[Value, Fraction, int], Fraction]
    money: Callable[[Value], Iterable[Fraction]] = _no_money

    def read(self, rate: object) -> Fields:
        """The rule's own fields of a decoded rate."""
        names = self.fields.__struct_fields__
        return self.fields(**{name: getattr(rate, name) for name in names})


def money(text: str, path: str, *, fee: bool) -> Fraction:
    """A non-negative decimal amount that fits int64 micro-units; a fee (any amount but a
    price per unit) also needs at most 2**62 as its micro-unit denominator."""
    try:
        return parse_price(text, max_denominator=MAX_DENOMINATOR if fee else None)
    except ValueError as exc:
        raise CatalogError(path, str(exc)) from None


def optional_fee(text: str | None, path: str) -> Fraction | None:
    return None if text is None else money(text, path, fee=True)


def flagged(value: Fraction | None, scale: Scale) -> tuple[int, int]:
    """An optional amount as the kernel's (is set, scaled amount) pair of columns."""
    return (0, 0) if value is None else (1, scale(value))


def present(value: Fraction | None) -> tuple[Fraction, ...]:
    return () if value is None else (value,)


def optional_amount_rule(
    name: str, order: int, fields: type[Fields], columns: tuple[str, str],
    combine: Callable[[Fraction, Fraction], Fraction],
) -> PricingRule[Fields, Fraction | None]:
    """A rule of one optional amount, the field ``name``, that ``combine``s with the total
    where set; the kernel gets it as an (is set, amount) pair of columns."""

    def check(values: Fields, path: str) -> Fraction | None:
        return optional_fee(getattr(values, name), f"{path}.{name}")

    def apply(amount: Fraction | None, total: Fraction, usage: int) -> Fraction:
        return total if amount is None else combine(total, amount)

    return PricingRule(name=name, order=order, fields=fields, check=check, columns=columns,
                       compile=flagged, apply=apply, money=present)
