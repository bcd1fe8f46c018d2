"""`/v1/accounts/{account_id}/adjustments`: one-off credits and debits billed on the
account's next invoice (rules in ``server.store.adjustments_repo``): the amount is a signed
decimal string exact in the currency's minor unit, the currency the account's; a
``reference`` makes the booking idempotent (the same one again: 200)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from aiohttp import web

from billing_oss.core.money import parse_micros
from billing_oss.server.catalog.billing import TaxClass
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import POOL
from billing_oss.server.http.pagination import ListQuery, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Currency, Id, IntId, Money, Reason, money
from billing_oss.server.http.validation import decode_body, decode_path, decode_query
from billing_oss.server.store import adjustments_repo
from billing_oss.server.store.adjustments_repo import Adjustment, NewAdjustment

# Negative: a credit; positive: a debit. At most 6 decimals here, the currency's minor unit
# checked against the account's currency.
SignedAmount = Annotated[str, msgspec.Meta(pattern="^-?[0-9]{1,12}(\\.[0-9]{1,6})?$",
                                           examples=["-5.00"])]


class AdjustmentIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    amount: SignedAmount
    description: Reason  # printed on the invoice line
    currency: Currency | None = None  # absent: the account's; else it must be the account's
    tax_class: TaxClass = "standard"
    reference: Id | None = None  # the operator's own id for this booking


class AdjustmentView(msgspec.Struct, frozen=True, kw_only=True):
    adjustment_id: int
    account_id: str
    amount: Money
    description: str
    tax_class: str
    reference: str | None
    created_at: dt.datetime
    invoice_id: int | None  # the invoice that bills it; null until a bill run has


class AdjustmentPage(msgspec.Struct, frozen=True):
    items: list[AdjustmentView]
    next_cursor: str | None


class AccountPath(msgspec.Struct, frozen=True):
    account_id: Id


async def list_adjustments(request: web.Request) -> web.Response:
    path = decode_path(request, AccountPath)
    q = decode_query(request, ListQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    rows = await adjustments_repo.find(request.app[POOL], path.account_id,
                                       after[0] if after else None, q.limit)
    items, next_cursor = page(rows, q.limit, lambda a: (a.adjustment_id,))
    return reply(AdjustmentPage([view(a) for a in items], next_cursor))


async def add_adjustment(request: web.Request) -> web.Response:
    path = decode_path(request, AccountPath)
    body = await decode_body(request, AdjustmentIn)
    stored, created = await adjustments_repo.add(
        request.app[POOL], actor(request), path.account_id, NewAdjustment(
            amount_micros=parse_micros(body.amount), description=body.description,
            currency=body.currency, tax_class=body.tax_class, reference=body.reference))
    return reply(view(stored), status=201 if created else 200)


def view(a: Adjustment) -> AdjustmentView:
    return AdjustmentView(
        adjustment_id=a.adjustment_id, account_id=a.account_id,
        amount=money(a.amount_micros, a.currency), description=a.description,
        tax_class=a.tax_class, reference=a.reference, created_at=a.created_at,
        invoice_id=a.invoice_id)


def register(api: Api) -> None:
    tag = "adjustments"
    api.add("GET", "/v1/accounts/{account_id}/adjustments", list_adjustments,
            summary="List an account's adjustments, oldest first", tag=tag,
            params=AccountPath, query=ListQuery, response=AdjustmentPage, roles=("viewer",))
    api.add("POST", "/v1/accounts/{account_id}/adjustments", add_adjustment,
            summary="Book a credit (negative) or debit on the next invoice (201; the same "
            "reference again: 200)", tag=tag, params=AccountPath, request=AdjustmentIn,
            response=AdjustmentView, status=201, also=(200,), roles=("operator",),
            errors=(409,))
