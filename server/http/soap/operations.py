"""The façade's operations, each mapped onto the function its REST route calls.

An operation receives its request element decoded by billing.xsd (already valid against it)
and turns it into the REST route's own input struct with ``msgspec.convert``, so the same
limits and the same business rules apply; what the service returns becomes the response
element's content. Roles are the REST routes' roles: reads need ``viewer``, writes
``operator``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

import msgspec
from aiohttp import web

from billing_oss.core.errors import InvalidRequest
from billing_oss.core.money import format_minor
from billing_oss.server.collections import balances
from billing_oss.server.http import accounts, collections, invoices, subscriptions, traffic
from billing_oss.server.http.keys import POOL
from billing_oss.server.store import accounts_repo
from billing_oss.server.store.accounts_repo import Account
from billing_oss.server.store.subscriptions_repo import Subscription

READ = ("viewer",)
WRITE = ("operator",)

T = TypeVar("T")
Data = dict[str, Any]


class Call(NamedTuple):
    app: web.Application
    actor: str  # the audit log's name of the caller: key:<key id>


class Operation(NamedTuple):
    name: str
    roles: tuple[str, ...]
    doc: str
    run: Callable[[Call, Data], Awaitable[Data]]


OPERATIONS: dict[str, Operation] = {}


def operation(roles: tuple[str, ...], doc: str) -> Callable[
        [Callable[[Call, Data], Awaitable[Data]]], Callable[[Call, Data], Awaitable[Data]]]:
    def add(run: Callable[[Call, Data], Awaitable[Data]]) -> Callable[
            [Call, Data], Awaitable[Data]]:
        name = "".join(part.title() for part in run.__name__.split("_"))
        OPERATIONS[name] = Operation(name, roles, doc, run)
        return run
    return add


# --- accounts ---------------------------------------------------------------------------------

@operation(READ, "An account with its identifiers and attributes (GET /v1/accounts/{id})")
async def get_account(call: Call, data: Data) -> Data:
    return {"account": account_out(await accounts_repo.get(call.app[POOL], data["account_id"]))}


@operation(WRITE, "Create an account (POST /v1/accounts)")
async def create_account(call: Call, data: Data) -> Data:
    body = convert(account_in(data), accounts.AccountCreate)
    return {"account": account_out(await accounts.create(call.app, call.actor, body))}


@operation(WRITE, "Change the account's elements sent; identifiers and attrs replace the "
           "whole list (PATCH /v1/accounts/{id})")
async def update_account(call: Call, data: Data) -> Data:
    fields = account_in(data)
    account_id = fields.pop("account_id")
    body = convert(fields, accounts.AccountUpdate)
    return {"account": account_out(await accounts.update(call.app, call.actor, account_id,
                                                         body))}


def account_in(data: Data) -> Data:
    fields = dict(data)
    if "identifiers" in fields:
        fields["identifiers"] = items(fields["identifiers"])
    if "attrs" in fields:
        fields["attrs"] = {a["key"]: a["value"] or "" for a in items(fields["attrs"])}
    return fields


def account_out(a: Account) -> Data:
    return {
        "account_id": a.account_id, "name": a.name, "status": a.status,
        "currency": a.currency.strip(), "timezone": a.timezone, "billing_day": a.billing_day,
        "identifiers": {"item": [{"identifier": i.identifier, "kind": i.kind}
                                 for i in a.identifiers]},
        "attrs": {"item": [{"key": k, "value": v if isinstance(v, str) else json.dumps(v)}
                           for k, v in a.attrs.items()]},
        "created_at": timestamp(a.created_at), "updated_at": timestamp(a.updated_at),
    }


# --- balance, invoices --------------------------------------------------------------------------

@operation(READ, "The account's balance per currency (the sum of its ledger entries) and the "
           "invoices it still owes, with what each still owes")
async def get_balance(call: Call, data: Data) -> Data:
    found = await balances.position(call.app[POOL], data["account_id"])
    return {
        "account_id": found.account_id,
        "balance": [{"currency": c, "amount": format_minor(m, c)}
                    for c, m in sorted(found.balances.items())],
        "open_invoice": [{
            "invoice_id": i.invoice_id, "number": i.number, "issued_on": i.issued_on.isoformat(),
            "due_date": i.due_date.isoformat(), "currency": i.currency,
            "amount": format_minor(i.amount_micros, i.currency),
            "open": format_minor(i.open_micros, i.currency)} for i in found.open_invoices],
    }


@operation(READ, "The invoice as PDF/A-3 with its Factur-X XML, base64 "
           "(GET /v1/invoices/{id}.pdf)")
async def get_invoice_pdf(call: Call, data: Data) -> Data:
    pdf = await invoices.invoice_pdf(call.app[POOL], data["invoice_id"])
    return {"invoice_id": data["invoice_id"], "pdf": base64.b64encode(pdf).decode()}


# --- subscriptions ----------------------------------------------------------------------------

@operation(WRITE, "Put an account on a tariff from valid_from (to valid_to) "
           "(POST /v1/subscriptions)")
async def create_subscription(call: Call, data: Data) -> Data:
    body = convert(data, subscriptions.SubscriptionCreate)
    stored = await subscriptions.create(call.app[POOL], call.actor, body)
    return {"subscription": subscription_out(stored)}


@operation(WRITE, "End (valid_to), re-open (valid_to xsi:nil) or rename (product) a "
           "subscription (PATCH /v1/subscriptions/{id})")
async def update_subscription(call: Call, data: Data) -> Data:
    fields = dict(data)
    subscription_id = fields.pop("subscription_id")
    body = convert(fields, subscriptions.SubscriptionUpdate)
    stored = await subscriptions.update(call.app[POOL], call.actor, subscription_id, body)
    return {"subscription": subscription_out(stored)}


def subscription_out(s: Subscription) -> Data:
    out: Data = {"subscription_id": s.subscription_id, "account_id": s.account_id,
                 "tariff_id": s.tariff_id, "product": s.product,
                 "valid_from": timestamp(s.valid_from)}
    if s.valid_to is not None:
        out["valid_to"] = timestamp(s.valid_to)
    return out


# --- payments -----------------------------------------------------------------------------------

@operation(WRITE, "Record a payment and allocate it (the invoices named, else oldest first); "
           "the same reference again records nothing and answers created=false "
           "(POST /v1/payments)")
async def post_payment(call: Call, data: Data) -> Data:
    fields = dict(data)
    fields["amount"] = decimal_text(fields["amount"])
    fields["external_id"] = fields["reference"]  # the CRM's id of it: idempotency
    if "allocations" in fields:
        fields["allocations"] = [
            {**t, **({"amount": decimal_text(t["amount"])} if "amount" in t else {})}
            for t in items(fields["allocations"])]
    body = convert(fields, collections.PaymentIn)
    stored, created = await collections.record(call.app[POOL], call.actor, body)
    view = collections.payment_view(stored)
    payment: Data = {
        "payment_id": view.payment_id, "account_id": view.account_id, "amount": view.amount,
        "currency": view.currency, "received_on": view.received_on.isoformat(),
        "method": view.method}
    if view.reference is not None:
        payment["reference"] = view.reference
    payment |= {"allocated": view.allocated, "unapplied": view.unapplied, "allocation": [
        {"entry_id": a.entry_id, "kind": a.kind, "invoice_id": a.invoice_id,
         "amount": a.amount}
        for a in view.allocations]}
    return {"created": created, "payment": payment}


# --- usage --------------------------------------------------------------------------------------

@operation(READ, "The account's usage records of [from, to), a page at a time: pass "
           "next_cursor back as cursor (GET /v1/usage)")
async def list_usage(call: Call, data: Data) -> Data:
    query = convert(data, traffic.UsageQuery)
    found = await traffic.usage_page(call.app[POOL], query)
    usage = []
    for u in found.items:
        row: Data = {"usage_id": u.usage_id, "event_time": timestamp(u.event_time),
                     "source": u.source, "record_key": u.record_key, "kind": u.kind}
        for name in ("duration_s", "volume_up", "volume_down", "quantity", "unit", "calling",
                     "called", "imsi", "msisdn"):
            if getattr(u, name) is not None:
                row[name] = getattr(u, name)
        usage.append(row)
    out: Data = {"usage": usage}
    if found.next_cursor is not None:
        out["next_cursor"] = found.next_cursor
    return out


# --- conversions --------------------------------------------------------------------------------

def convert(data: Data, type_: type[T]) -> T:
    """``data`` as the REST route's input struct: the same limits, the same 422 naming the
    field (as its element name) when one is broken."""
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        message, sep, where = str(exc).rpartition(" - at `")
        path = where.rstrip("`") if sep else "$"
        raise InvalidRequest(f"{path}: {message if sep else exc}", errors=[
            {"location": "body", "path": path, "message": message if sep else str(exc)}],
        ) from None


def items(wrapper: Data | None) -> list[Data]:
    """The ``item`` children of a list wrapper element (none if it is empty)."""
    return list((wrapper or {}).get("item", []))


def decimal_text(value: Decimal) -> str:
    """An xsd:decimal as the REST API's decimal string: ``+5.`` -> ``5``, ``.50`` -> ``0.50``."""
    return format(value, "f")


def timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
