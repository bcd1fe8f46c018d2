"""What a bill run reads for a batch of accounts, in the batch's transaction.

Unbilled charges (not linked to any invoice line) with an event time before the account's
cycle end are copied once into a temporary table: the lines are summed from it and linked
from it, so a charge arriving meanwhile is either in both or in neither.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import msgspec

from billing_oss.server.billing import tariff_prices
from billing_oss.server.billing.model import (
    Account,
    Adjustment,
    Discount,
    Subscription,
    UsageGroup,
)
from billing_oss.server.billing.periods import Cycle, after, cycle
from billing_oss.server.catalog.pricing import Product, VolumeTier, parse_components
from billing_oss.server.catalog.tax import TaxRate
from billing_oss.server.store.pool import Connection

# Base quantity of a usage record per service: seconds, bytes, messages, event quantity.
_QUANTITY = """CASE u.kind WHEN 'voice' THEN coalesce(u.duration_s, 0)
    WHEN 'data' THEN coalesce(u.volume_up, 0) + coalesce(u.volume_down, 0)
    WHEN 'event' THEN coalesce(u.quantity, 1) ELSE 1 END"""

COLLECT = f"""
CREATE TEMP TABLE run_charges ON COMMIT DROP AS
SELECT c.account_id, c.charge_id, c.currency, c.amount_micros,
       coalesce(u.kind, 'other') AS service, coalesce(c.zone, '') AS zone, u.unit,
       c.tariff_version_id, coalesce(c.band, '') AS band,
       CASE WHEN c.kind = 'reversal' THEN -({_QUANTITY}) ELSE {_QUANTITY} END AS quantity
FROM unnest($1::text[], $2::timestamptz[]) AS a(account_id, period_end)
JOIN charges c ON c.account_id = a.account_id AND c.event_time < a.period_end
LEFT JOIN usage_records u ON u.account_id = c.account_id AND u.event_time = c.event_time
    AND u.usage_id = c.usage_id
WHERE NOT EXISTS (SELECT 1 FROM invoice_line_charges l
                  WHERE l.account_id = c.account_id AND l.charge_id = c.charge_id)
"""

# Usage quantities per service already billed on the period's finalised invoices: periodic
# pricing (allowances, tiers) prices the cycle's total, less what those invoices priced.
BILLED = f"""
SELECT c.account_id, c.currency, coalesce(u.kind, 'other') AS service,
       sum(CASE WHEN c.kind = 'reversal' THEN -({_QUANTITY}) ELSE {_QUANTITY} END) AS quantity
FROM unnest($1::text[], $2::timestamptz[]) AS a(account_id, period_end)
JOIN invoices i ON i.account_id = a.account_id AND i.period = $3 AND i.status = 'finalised'
JOIN invoice_line_charges l ON l.account_id = i.account_id AND l.invoice_id = i.invoice_id
JOIN charges c ON c.account_id = l.account_id AND c.charge_id = l.charge_id
    AND c.event_time < a.period_end
LEFT JOIN usage_records u ON u.account_id = c.account_id AND u.event_time = c.event_time
    AND u.usage_id = c.usage_id
GROUP BY 1, 2, 3
"""

GROUPS = """
SELECT account_id, currency, service, zone, count(*) AS charges,
       sum(amount_micros)::bigint AS amount, sum(quantity) AS quantity,
       CASE WHEN service = 'event' AND count(unit) = count(*) AND min(unit) = max(unit)
           THEN min(unit) ELSE '' END AS unit
FROM run_charges GROUP BY account_id, currency, service, zone
"""

# The tariff versions and time bands that rated each group: the prices its line prints.
RATED = """
SELECT DISTINCT account_id, currency, service, zone, tariff_version_id, band
FROM run_charges WHERE tariff_version_id IS NOT NULL
"""


class BatchInputs(msgspec.Struct):
    accounts: dict[str, Account]
    cycles: dict[str, Cycle]
    usage: dict[tuple[str, str], list[UsageGroup]]
    subscriptions: dict[str, list[Subscription]]
    adjustments: dict[str, list[Adjustment]]
    discounts: dict[str | None, list[Discount]]
    finalised: set[tuple[str, str]]  # (account, currency) whose cycle fees are already billed
    # (account, currency) → service → base quantity already on the period's final invoices
    billed: dict[tuple[str, str], dict[str, Decimal]] = {}
    charges: int = 0
    frozen: int = 0  # accounts skipped: their draft's grace period is over


async def account_ids(conn: Connection, only: list[str] | None) -> list[str]:
    rows = await conn.fetch(
        "SELECT account_id FROM accounts WHERE status <> 'closed' "
        "AND ($1::text[] IS NULL OR account_id = ANY($1)) ORDER BY account_id", only)
    return [r["account_id"] for r in rows]


async def tax_rates(conn: Connection) -> tuple[TaxRate, ...]:
    rows = await conn.fetch("SELECT jurisdiction, tax_class, category, rate, valid_from, valid_to "
                            "FROM tax_rates ORDER BY jurisdiction, tax_class, valid_from")
    return tuple(TaxRate(**dict(r)) for r in rows)


async def read_batch(conn: Connection, ids: list[str], period: str,
                     frozen_before: dt.datetime | None = None) -> BatchInputs:
    """Lock the batch's accounts and their drafts, drop the drafts' lines for recomputation,
    read inputs.

    An account whose draft of the period ended before ``frozen_before`` (its grace period
    is over) is left out: the draft stays as it is until finalised, and charges arriving
    now wait for a later invoice.
    """
    rows = await conn.fetch(
        "SELECT account_id, name, currency, timezone, billing_day, attrs FROM accounts "
        "WHERE account_id = ANY($1) ORDER BY account_id FOR UPDATE", ids)
    frozen: set[str] = set()
    if frozen_before is not None:
        frozen = {r["account_id"] for r in await conn.fetch(
            "SELECT DISTINCT account_id FROM invoices WHERE account_id = ANY($1) "
            "AND period = $2 AND status = 'draft' AND period_end <= $3",
            ids, period, frozen_before)}
        rows = [r for r in rows if r["account_id"] not in frozen]
        ids = [r["account_id"] for r in rows]
    accounts = {r["account_id"]: Account(
        account_id=r["account_id"], name=r["name"], currency=r["currency"].strip(),
        timezone=r["timezone"], billing_day=r["billing_day"], attrs=json.loads(r["attrs"]),
    ) for r in rows}
    cycles = await _cycles(conn, accounts, period)
    # The drafts too: a finaliser locks only its invoice, so a draft being finalised now is
    # waited for, and then (no longer a draft) left out of the recomputation below.
    await conn.fetch("SELECT lock_draft_invoices($1, $2)", ids, period)
    await conn.execute(
        "DELETE FROM invoice_line_charges l USING invoices i WHERE i.account_id = ANY($1) "
        "AND i.period = $2 AND i.status = 'draft' "
        "AND l.account_id = i.account_id AND l.invoice_id = i.invoice_id", ids, period)
    await conn.execute(
        "DELETE FROM invoice_lines l USING invoices i WHERE i.account_id = ANY($1) "
        "AND i.period = $2 AND i.status = 'draft' "
        "AND l.account_id = i.account_id AND l.invoice_id = i.invoice_id", ids, period)
    await conn.execute(
        "DELETE FROM invoice_allowances l USING invoices i WHERE i.account_id = ANY($1) "
        "AND i.period = $2 AND i.status = 'draft' "
        "AND l.account_id = i.account_id AND l.invoice_id = i.invoice_id", ids, period)
    await conn.execute(
        "DELETE FROM taxes l USING invoices i WHERE i.account_id = ANY($1) "
        "AND i.period = $2 AND i.status = 'draft' "
        "AND l.account_id = i.account_id AND l.invoice_id = i.invoice_id", ids, period)
    ends = [cycles[a].end for a in accounts]
    await conn.execute(COLLECT, list(accounts), ends)
    usage: dict[tuple[str, str], list[UsageGroup]] = defaultdict(list)
    billed: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(dict)
    for r in await conn.fetch(BILLED, list(accounts), ends, period):
        billed[r["account_id"], r["currency"].strip()][r["service"]] = Decimal(r["quantity"])
    charges = 0
    rated: dict[tuple[str, str, str, str], list[tuple[int, str]]] = defaultdict(list)
    for r in await conn.fetch(RATED):
        rated[r["account_id"], r["currency"], r["service"], r["zone"]].append(
            (r["tariff_version_id"], r["band"]))
    definitions = await _definitions(conn, {v for pairs in rated.values() for v, _ in pairs})
    for r in await conn.fetch(GROUPS):
        currency = r["currency"].strip()
        usage[r["account_id"], currency].append(UsageGroup(
            currency=currency, service=r["service"], zone=r["zone"], charges=r["charges"],
            amount_micros=r["amount"], quantity=Decimal(r["quantity"]), unit=r["unit"],
            prices=tuple(tariff_prices.prices(
                definitions, r["service"], r["zone"],
                rated.get((r["account_id"], r["currency"], r["service"], r["zone"]), [])))))
        charges += r["charges"]
    return BatchInputs(
        accounts=accounts, cycles=cycles, usage=dict(usage),
        subscriptions=await _subscriptions(conn, cycles),
        adjustments=await _adjustments(conn, cycles),
        discounts=await _discounts(conn, list(accounts)),
        finalised={(r["account_id"], r["currency"].strip()) for r in await conn.fetch(
            "SELECT account_id, currency FROM invoices WHERE account_id = ANY($1) "
            "AND period = $2 AND status = 'finalised'", ids, period)},
        billed=dict(billed), charges=charges, frozen=len(frozen),
    )


async def _definitions(conn: Connection, version_ids: set[int]) -> dict[int, dict[str, Any]]:
    """The rates of the tariff versions that rated the batch's charges, by id (only the
    rates: a version's zones may hold millions of prefixes)."""
    rows = await conn.fetch("SELECT tariff_version_id, (definition->'rates')::text AS rates "
                            "FROM tariff_versions WHERE tariff_version_id = ANY($1)",
                            sorted(version_ids))
    return {r["tariff_version_id"]: {"rates": json.loads(r["rates"] or "[]")} for r in rows}


# The end of each account's latest finalised invoice of an earlier period that ends within
# a month before this cycle's normal start or runs into the cycle (its billing day changed
# since): the cycle starts there, so no day is billed twice (it ran into the cycle) or never
# (it ended before). Any currency: a cycle is the account's, its invoices in every currency
# share it. An invoice that ended longer ago is no neighbour: nothing is reached back for.
INVOICED_END = """
SELECT i.account_id, max(i.period_end) AS period_end
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS a(account_id, s, e)
JOIN invoices i ON i.account_id = a.account_id AND i.status = 'finalised' AND i.period < $4
    AND i.period_end > a.s - interval '1 month' AND i.period_start < a.e
GROUP BY i.account_id
"""


async def _cycles(conn: Connection, accounts: dict[str, Account],
                  period: str) -> dict[str, Cycle]:
    normal = {a.account_id: cycle(period, a.billing_day, a.timezone) for a in accounts.values()}
    rows = await conn.fetch(INVOICED_END, list(normal), [c.start for c in normal.values()],
                            [c.end for c in normal.values()], period)
    ends = {r["account_id"]: r["period_end"] for r in rows}
    return {account_id: after(c, ends[account_id], accounts[account_id].timezone)
            if account_id in ends else c for account_id, c in normal.items()}


async def _subscriptions(conn: Connection,
                         cycles: dict[str, Cycle]) -> dict[str, list[Subscription]]:
    rows = await conn.fetch(
        "SELECT s.account_id, s.subscription_id, s.valid_from, s.valid_to, p.product_id, p.name, "
        "p.currency, p.recurring_fee_micros, p.tax_class, p.usage_pricing "
        "FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS a(account_id, s, e) "
        "JOIN subscriptions s ON s.account_id = a.account_id AND s.valid_from < a.e "
        "AND (s.valid_to IS NULL OR s.valid_to > a.s) "
        "JOIN products p ON p.product_id = s.product",
        list(cycles), [c.start for c in cycles.values()], [c.end for c in cycles.values()])
    out: dict[str, list[Subscription]] = defaultdict(list)
    products: dict[str, Product] = {}
    for r in rows:
        product = products.get(r["product_id"])
        if product is None:
            product = products[r["product_id"]] = Product(
                product_id=r["product_id"], name=r["name"], currency=r["currency"].strip(),
                recurring_fee_micros=r["recurring_fee_micros"], tax_class=r["tax_class"],
                usage_pricing=tuple(parse_components(json.loads(r["usage_pricing"]))))
        out[r["account_id"]].append(Subscription(
            subscription_id=r["subscription_id"], product=product, valid_from=r["valid_from"],
            valid_to=r["valid_to"]))
    return dict(out)


async def _adjustments(conn: Connection, cycles: dict[str, Cycle]) -> dict[str, list[Adjustment]]:
    rows = await conn.fetch(
        "SELECT j.account_id, j.adjustment_id, j.amount_micros, j.currency, j.description, "
        "j.tax_class FROM unnest($1::text[], $2::timestamptz[]) AS a(account_id, e) "
        "JOIN adjustments j ON j.account_id = a.account_id AND j.created_at < a.e "
        "WHERE NOT EXISTS (SELECT 1 FROM invoice_lines l WHERE l.account_id = j.account_id "
        "AND l.adjustment_id = j.adjustment_id) ORDER BY j.adjustment_id",
        list(cycles), [c.end for c in cycles.values()])
    out: dict[str, list[Adjustment]] = defaultdict(list)
    for r in rows:
        out[r["account_id"]].append(Adjustment(
            adjustment_id=r["adjustment_id"], amount_micros=r["amount_micros"],
            currency=r["currency"].strip(), description=r["description"],
            tax_class=r["tax_class"]))
    return dict(out)


async def _discounts(conn: Connection, ids: list[str]) -> dict[str | None, list[Discount]]:
    rows = await conn.fetch(
        "SELECT * FROM discounts WHERE (account_id IS NULL OR account_id = ANY($1)) "
        "ORDER BY discount_id", ids)
    out: dict[str | None, list[Discount]] = defaultdict(list)
    for r in rows:
        out[r["account_id"]].append(_discount(r))
    return dict(out)


def _discount(r: Any) -> Discount:
    tiers = json.loads(r["tiers"]) if r["tiers"] else []
    return Discount(
        discount_id=r["discount_id"], kind=r["kind"], scope=r["scope"], service=r["service"],
        percent=r["percent"], amount_micros=r["amount_micros"],
        currency=r["currency"].strip() if r["currency"] else None,
        tiers=tuple(msgspec.convert(tiers, list[VolumeTier])), description=r["description"],
        valid_from=r["valid_from"], valid_to=r["valid_to"],
    )


def discounts_on(batch: BatchInputs, account_id: str, day: dt.date) -> tuple[Discount, ...]:
    found = [*batch.discounts.get(None, []), *batch.discounts.get(account_id, [])]
    return tuple(d for d in found if d.valid_from <= day and (d.valid_to is None
                                                              or day < d.valid_to))
