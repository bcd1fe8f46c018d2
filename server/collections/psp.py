"""Card payments reported by a payment service provider's webhook (DESIGN.md §9).

The PSP signs each event the Standard Webhooks way (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``: HMAC-SHA256 with the shared secret, within 5 minutes); an event that
does not verify is refused before anything is read. A ``payment.succeeded`` event records a
payment (method ``card``, source ``psp``) allocated like any other: to the invoices it names,
else oldest first. The event id is the payment's external id, so a redelivered event
changes nothing. Other event types are acknowledged and ignored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated

import asyncpg
import msgspec
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from billing_oss.core.errors import InvalidRequest
from billing_oss.core.money import parse_micros
from billing_oss.server.collections import payments
from billing_oss.server.collections.model import NewPayment, Target

SUCCEEDED = "payment.succeeded"
SOURCE = "psp"

_Amount = Annotated[str, msgspec.Meta(pattern="^[0-9]{1,12}(\\.[0-9]{1,6})?$")]
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[A-Za-z0-9._:@-]+$")]


class PaymentData(msgspec.Struct, frozen=True, kw_only=True):
    account_id: _Id
    amount: _Amount
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]
    paid_on: dt.date
    reference: Annotated[str, msgspec.Meta(max_length=200)] | None = None  # the PSP's charge
    invoice_ids: list[Annotated[int, msgspec.Meta(ge=1)]] = []  # empty: oldest first


class Event(msgspec.Struct, frozen=True, kw_only=True):
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    data: msgspec.Raw = msgspec.Raw(b"null")


class PaymentEvent(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    data: PaymentData


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    type: str
    status: str  # recorded, duplicate, ignored
    payment_id: int | None = None


class BadSignature(Exception):
    """The event is not signed with our secret (or is too old, or headers are missing)."""


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> str:
    """The event id of a correctly signed event, else ``BadSignature`` with the reason."""
    if not secret:
        raise BadSignature("no PSP webhook secret is configured "
                           "(collections.psp_webhook_secret): every event is refused")
    wanted = {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
              if k in headers}
    try:
        Webhook(secret).verify(body, wanted, json_parse=False)
    except (WebhookVerificationError, ValueError) as exc:
        raise BadSignature(f"webhook signature: {exc or 'malformed'}") from None
    return wanted["webhook-id"]


async def handle(pool: asyncpg.Pool, actor: str, event_id: str, body: bytes) -> Outcome:
    """Act on a verified event (body: the JSON the PSP signed)."""
    try:
        event = msgspec.json.decode(body, type=Event)
        data = msgspec.json.decode(body, type=PaymentEvent).data \
            if event.type == SUCCEEDED else None
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid body: {exc}", errors=[
            {"location": "body", "path": _path(str(exc)), "message": str(exc)}]) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"invalid body: not JSON: {exc}", errors=[
            {"location": "body", "path": "$", "message": str(exc)}]) from None
    if data is None:
        return Outcome(event_id=event_id, type=event.type, status="ignored")
    stored, created = await payments.record(pool, actor, NewPayment(
        account_id=data.account_id, amount_micros=parse_micros(data.amount),
        received_on=data.paid_on, method="card", currency=data.currency,
        reference=data.reference, source=SOURCE, external_id=event_id,
        targets=tuple(Target(i) for i in data.invoice_ids)))
    return Outcome(event_id=event_id, type=event.type,
                   status="recorded" if created else "duplicate", payment_id=stored.payment_id)


def _path(message: str) -> str:
    """msgspec says "... - at `$.data.amount`"."""
    _, sep, where = message.rpartition(" - at `")
    return where.rstrip("`") if sep else "$"
