"""What a simulation reads, all inside one read-only REPEATABLE READ transaction.

The catalog in force (tariff versions, subscriptions, products, tax rates, discounts), the
accounts, what was invoiced for the simulated periods (to check the baseline against), and
the usage itself, streamed as binary COPY (``usage.COPY_COLUMNS``) so no Python object is
built per record. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec

from billing_oss.native import rating as kernel
from billing_oss.server.billing.inputs_repo import _discount as discount_row
from billing_oss.server.billing.model import Account, Adjustment, Discount
from billing_oss.server.catalog.pricing import Product, parse_components
from billing_oss.server.catalog.tax import TaxRate
from billing_oss.server.store.pool import Connection


class SubscriptionRow(msgspec.Struct, frozen=True):
    account_id: str
    subscription_id: int
    tariff_id: str
    product: str
    valid_from: dt.datetime
    valid_to: dt.datetime | None


class TariffRow(msgspec.Struct, frozen=True):
    tariff_id: str
    currency: str
    versions: list[dict[str, Any]]  # definitions, ascending effective_from


class Invoiced(msgspec.Struct, frozen=True):
    """What the stored invoices of one account, period and currency add up to."""

    invoices: int
    net_micros: int
    total_micros: int


class Snapshot(msgspec.Struct):
    taken_at: dt.datetime
    snapshot: str  # pg_current_snapshot(): which transactions the reads saw
    accounts: list[Account]  # ordered by account_id: their index is the usage's account number
    closed: set[str]  # accounts a bill run leaves out
    tariffs: list[TariffRow]
    subscriptions: list[SubscriptionRow]
    products: dict[str, Product]
    tax_rates: tuple[TaxRate, ...]
    discounts: list[tuple[str, Discount]]  # (code, discount) in discount_id order
    discount_accounts: dict[int, str | None]  # discount_id -> account (None: every account)
    adjustments: dict[str, list[tuple[Adjustment, dt.datetime, str | None]]]
    invoiced: dict[tuple[str, str, str], Invoiced]  # (account, period, currency)
    fingerprint: str  # sha256 of the catalog in force, as read


async def begin(conn: Connection) -> None:
    await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")


async def read(conn: Connection, periods: list[str]) -> Snapshot:
    """Call inside ``begin``: the catalog in force, the accounts and what was invoiced."""
    head = await conn.fetchrow("SELECT now() AS at, pg_current_snapshot()::text AS snap")
    assert head is not None
    rows = await conn.fetch("SELECT account_id, name, currency, timezone, billing_day, "
                            "attrs::text AS attrs, status FROM accounts ORDER BY account_id")
    accounts = [Account(account_id=r["account_id"], name=r["name"],
                        currency=r["currency"].strip(), timezone=r["timezone"],
                        billing_day=r["billing_day"], attrs=json.loads(r["attrs"]))
                for r in rows]
    tariffs: dict[str, TariffRow] = {}
    digest = hashlib.sha256()
    for r in await conn.fetch(
            "SELECT v.tariff_id, t.currency, v.definition::text AS definition, v.sha256 "
            "FROM tariff_versions v JOIN tariffs t USING (tariff_id) "
            "ORDER BY v.tariff_id, v.effective_from"):
        row = tariffs.setdefault(r["tariff_id"], TariffRow(r["tariff_id"],
                                                           r["currency"].strip(), []))
        row.versions.append(json.loads(r["definition"]))
        digest.update(f"tariff {r['tariff_id']} {r['sha256']}\n".encode())
    subscriptions = [SubscriptionRow(*r) for r in await conn.fetch(
        "SELECT account_id, subscription_id, tariff_id, product, valid_from, valid_to "
        "FROM subscriptions ORDER BY account_id, valid_from, subscription_id")]
    products = {r["product_id"]: Product(
        product_id=r["product_id"], name=r["name"], currency=r["currency"].strip(),
        recurring_fee_micros=r["recurring_fee_micros"], tax_class=r["tax_class"],
        usage_pricing=tuple(parse_components(json.loads(r["usage_pricing"]))))
        for r in await conn.fetch(
            "SELECT product_id, name, currency, recurring_fee_micros, tax_class, "
            "usage_pricing::text AS usage_pricing FROM products ORDER BY product_id")}
    tax_rates = tuple(TaxRate(**dict(r)) for r in await conn.fetch(
        "SELECT jurisdiction, tax_class, category, rate, valid_from, valid_to "
        "FROM tax_rates ORDER BY jurisdiction, tax_class, valid_from"))
    discount_rows = await conn.fetch("SELECT * FROM discounts ORDER BY discount_id")
    discounts = [(r["code"], discount_row(r)) for r in discount_rows]
    for part in (subscriptions, list(products.values()), list(tax_rates), discounts):
        digest.update(msgspec.json.encode(part))
    return Snapshot(
        taken_at=head["at"], snapshot=head["snap"], accounts=accounts,
        closed={r["account_id"] for r in rows if r["status"] == "closed"},
        tariffs=list(tariffs.values()), subscriptions=subscriptions, products=products,
        tax_rates=tax_rates, discounts=discounts,
        discount_accounts={r["discount_id"]: r["account_id"] for r in discount_rows},
        adjustments=await _adjustments(conn, periods), invoiced=await _invoiced(conn, periods),
        fingerprint=digest.hexdigest(),
    )


async def _adjustments(conn: Connection, periods: list[str],
                       ) -> dict[str, list[tuple[Adjustment, dt.datetime, str | None]]]:
    """Each account's adjustments with their creation time and the period of the invoice
    that billed them (None: not billed yet)."""
    out: dict[str, list[tuple[Adjustment, dt.datetime, str | None]]] = defaultdict(list)
    for r in await conn.fetch(
            "SELECT j.account_id, j.adjustment_id, j.amount_micros, j.currency, j.description, "
            "j.tax_class, j.created_at, i.period FROM adjustments j "
            "LEFT JOIN invoice_lines l ON l.account_id = j.account_id "
            "AND l.adjustment_id = j.adjustment_id "
            "LEFT JOIN invoices i ON i.account_id = l.account_id AND i.invoice_id = l.invoice_id "
            "ORDER BY j.account_id, j.adjustment_id"):
        out[r["account_id"]].append((Adjustment(
            adjustment_id=r["adjustment_id"], amount_micros=r["amount_micros"],
            currency=r["currency"].strip(), description=r["description"],
            tax_class=r["tax_class"]), r["created_at"], r["period"]))
    return dict(out)


async def _invoiced(conn: Connection, periods: list[str]) -> dict[tuple[str, str, str], Invoiced]:
    rows = await conn.fetch(
        "SELECT account_id, period, currency, count(*) AS n, sum(net_micros)::bigint AS net, "
        "sum(total_micros)::bigint AS total FROM invoices WHERE period = ANY($1) "
        "GROUP BY account_id, period, currency", periods)
    return {(r["account_id"], r["period"], r["currency"].strip()):
            Invoiced(r["n"], r["net"], r["total"]) for r in rows}


async def expected_records(conn: Connection, start: dt.datetime, end: dt.datetime,
                           accounts: Sequence[str] | None) -> int:
    """About how many usage records [start, end) holds (of ``accounts`` or all): the charged
    records of the UTC days it touches, from the daily rollups (an index range, not a scan
    of the usage), for a running simulation's percentage."""
    value = await conn.fetchval(
        "SELECT coalesce(sum(records), 0)::bigint FROM charge_rollups"
        " WHERE day >= $1::date AND day <= $2::date"
        " AND ($3::text[] IS NULL OR account_id = ANY($3))",
        start.astimezone(dt.UTC).date(),
        (end.astimezone(dt.UTC) - dt.timedelta(microseconds=1)).date(),
        None if accounts is None else list(accounts))
    return int(value or 0)


WIDTH = kernel.CALLED_WIDTH
PAD = 1  # the byte PostgreSQL pads ``called`` with; a kernel reads NUL as "past the end"


def copy_query(start_utc: str, end_utc: str, accounts: Sequence[str] | None) -> str:
    """The query whose binary COPY gives the usage in [start, end) (UTC, RFC 3339), of
    ``accounts`` or all, each row as ``ROW``; account numbers index the account ids in
    ``accounts_query``'s order.
    Usage is what ``server.rating.fields.usage_of`` reads; ``quantity`` is an event's
    quantity in micro-units (a bill run's base quantity of events)."""
    pad = "\\x" + f"{PAD:02x}" * WIDTH
    return f"""SELECT a.n::int4,
    u.event_time,
    (CASE u.kind WHEN 'voice' THEN 0 WHEN 'sms' THEN 1 WHEN 'data' THEN 2 ELSE 3 END)::int2,
    (CASE u.kind WHEN 'voice' THEN coalesce(u.duration_s, 0)
        WHEN 'data' THEN coalesce(u.volume_up, 0) + coalesce(u.volume_down, 0)
        ELSE 1 END)::int8,
    substring(convert_to(coalesce(u.called, ''), 'UTF8') || '{pad}'::bytea from 1 for {WIDTH}),
    (CASE WHEN u.kind = 'event' THEN round(coalesce(u.quantity, 1) * 1000000)
        ELSE 0 END)::int8
FROM usage_records u JOIN ({accounts_query(accounts)}) a USING (account_id)
WHERE u.event_time >= {_literal(start_utc)}::timestamptz
  AND u.event_time < {_literal(end_utc)}::timestamptz"""


def accounts_query(accounts: Sequence[str] | None) -> str:
    where = "" if accounts is None else (
        f" WHERE account_id = ANY({_literal(_array(accounts))}::text[])")
    return ("SELECT account_id, (row_number() OVER (ORDER BY account_id) - 1) AS n "
            f"FROM accounts{where}")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _array(items: Sequence[str]) -> str:
    quoted = ('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in items)
    return "{" + ",".join(quoted) + "}"
