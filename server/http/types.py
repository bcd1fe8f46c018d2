"""Field types shared by the API's request and response structs.

Limits live here as ``msgspec.Meta`` so validation and the OpenAPI document agree.
PostgreSQL text cannot hold NUL, so no string type admits it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

import msgspec

from billing_oss.core.money import format_api

_NO_NUL = "^[^\\x00]*$"
Text = Annotated[str, msgspec.Meta(max_length=200, pattern=_NO_NUL)]
LongText = Annotated[str, msgspec.Meta(max_length=2000, pattern=_NO_NUL)]
# Why an operator did something (discard, credit): not blank, no NUL anywhere.
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500,
                                     pattern="^[^\\x00]*[^\\s\\x00][^\\x00]*$")]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[A-Za-z0-9._:@-]+$")]
Identifier = Annotated[
    str, msgspec.Meta(min_length=1, max_length=32, pattern="^[0-9A-Za-z._:-]+$")
]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", examples=["EUR"])]
Timestamp = Annotated[dt.datetime, msgspec.Meta(tz=True)]
# A billing cycle, YYYY-MM. Years 2000–2999: wide enough for any real cycle, narrow enough
# that a cycle's end (a month later, in any timezone) is always a representable instant.
Period = Annotated[str, msgspec.Meta(pattern="^2[0-9]{3}-(0[1-9]|1[0-2])$", examples=["2026-01"])]
IntId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
AttrKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[A-Za-z0-9._-]+$")]
Attrs = Annotated[dict[AttrKey, Text], msgspec.Meta(max_length=50)]



class Money(msgspec.Struct, frozen=True):
    """An exact amount: a decimal string (six decimals, micro-units) and its currency."""

    amount: Annotated[str, msgspec.Meta(pattern="^-?[0-9]+\\.[0-9]{6}$")]
    currency: Currency


def money(micros: int, currency: str) -> Money:
    return Money(amount=format_api(micros), currency=currency.strip())


def plain(value: Decimal) -> str:
    """A decimal (a rate, a percentage, a quantity) as a string without exponent or trailing
    zeros: ``Decimal("20.0000")`` -> ``"20"``, ``Decimal("1E-7")`` -> ``"0.0000001"``."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)
