"""Per-call rounding: the call's total rounded to ``decimals`` places (0..6; amounts are
stored with 6) by the named method, once, after the clamps. Without it the stored amount
is the total half-up at the sixth decimal, which the raters do for every rate."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from billing_oss.core.errors import CatalogError
from billing_oss.server.catalog.rules.base import PricingRule
from billing_oss.server.catalog.wire import Strict

RoundingMethod = Literal["half-up", "half-even", "up", "down"]
METHOD_CODES: dict[str, int] = {"half-up": 0, "half-even": 1, "up": 2, "down": 3}


class RoundingDef(Strict):
    decimals: int
    method: RoundingMethod


class RoundingFields(Strict):
    rounding: RoundingDef | None = None


@dataclass(frozen=True, slots=True)
class Rounding:
    decimals: int
    method: str  # half-up | half-even | up | down


def check(fields: RoundingFields, path: str) -> Rounding | None:
    if fields.rounding is None:
        return None
    if not 0 <= fields.rounding.decimals <= 6:
        raise CatalogError(f"{path}.rounding.decimals", "must be between 0 and 6")
    return Rounding(fields.rounding.decimals, fields.rounding.method)


def compile_rounding(rounding: Rounding | None, scale: object) -> tuple[int, ...]:
    """(grid in micro-units, method code); none: the micro-unit itself, half-up."""
    if rounding is None:
        return (1, METHOD_CODES["half-up"])
    return (10 ** (6 - rounding.decimals), METHOD_CODES[rounding.method])


def apply(rounding: Rounding | None, total: Fraction, usage: int) -> Fraction:
    return total if rounding is None else round_amount(total, rounding)


def round_amount(value: Fraction, rounding: Rounding) -> Fraction:
    """Round a non-negative exact amount to ``decimals`` places by the named method."""
    scale = 10**rounding.decimals
    scaled = value * scale
    floor, remainder = divmod(scaled.numerator, scaled.denominator)
    doubled, denominator = 2 * remainder, scaled.denominator
    if rounding.method == "down":
        rounded = floor
    elif rounding.method == "up":
        rounded = floor + (remainder > 0)
    elif rounding.method == "half-up":
        rounded = floor + (doubled >= denominator)
    else:  # half-even
        rounded = floor + (doubled > denominator or (doubled == denominator and floor % 2 == 1))
    return Fraction(rounded, scale)


RULE = PricingRule(
    name="rounding", order=40, fields=RoundingFields, check=check,
    columns=("r_grid", "r_method"), compile=compile_rounding, apply=apply,
)
