"""The connect fee: an amount every call with usage pays once, on top of its steps."""

from __future__ import annotations

from fractions import Fraction

from billing_oss.server.catalog.rules.base import PricingRule, Scale, money
from billing_oss.server.catalog.wire import DecimalText, Strict


class ConnectFeeFields(Strict):
    connect_fee: DecimalText = "0"


def check(fields: ConnectFeeFields, path: str) -> Fraction:
    return money(fields.connect_fee, f"{path}.connect_fee", fee=True)


def compile_fee(fee: Fraction, scale: Scale) -> tuple[int, ...]:
    return (scale(fee),)


def apply(fee: Fraction, total: Fraction, usage: int) -> Fraction:
    return total + fee


RULE = PricingRule(
    name="connect_fee", order=10, fields=ConnectFeeFields, check=check,
    columns=("r_connect",), compile=compile_fee, apply=apply, money=lambda fee: (fee,),
)
