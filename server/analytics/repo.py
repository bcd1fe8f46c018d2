"""All of the analytics package's SQL: the charge rollups (kept by a trigger on charges,
migration 1000) and the anomaly flags. Analytics read billing data and never write it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg

from billing_oss.server.store.pool import Connection

Db: TypeAlias = "Connection | asyncpg.Pool"

# What a report may group by: name → SQL over the rollup ``r``, the account ``a`` and the
# tariff version ``tv``. ``attrs.KEY`` (any account attribute) is bound as a parameter.
DIMENSIONS: dict[str, str] = {
    "account": "r.account_id",
    "service": "r.service",
    "zone": "r.zone",
    "currency": "rtrim(r.currency)",
    "tariff": "tv.tariff_id",
    "tariff_version": "r.tariff_version_id::text",
    "country": "a.attrs->>'country'",
    "segment": "a.attrs->>'segment'",
}
PERIODS: dict[str, str] = {
    "day": "r.day",
    "week": "date_trunc('week', r.day)::date",
    "month": "date_trunc('month', r.day)::date",
    "total": "NULL::date",
}


async def compact(db: Db, first: dt.date, last: dt.date) -> int:
    """Fold the rollup deltas of days ``first``..``last`` (inclusive; the monthly level:
    of the months holding them); rows folded away."""
    folded: int = await db.fetchval(
        "SELECT compact_charge_rollups($1, $2) + compact_charge_rollups_monthly($1, $2)",
        first, last)
    return folded


def _dimension(name: str, params: list[Any]) -> str:
    if name.startswith("attrs."):
        params.append(name.removeprefix("attrs."))
        return f"a.attrs->>${len(params)}"
    return DIMENSIONS[name]


async def totals(db: Db, *, period: str, dims: Sequence[str], start: dt.date, end: dt.date,
                 account: str | None = None, service: str | None = None) -> list[asyncpg.Record]:
    """Σ money, records, units and distinct accounts per period × dims × currency over the
    days [start, end). Money is never summed across currencies: currency is always a key.
    Dimension and period names must be keys of DIMENSIONS / PERIODS (or ``attrs.KEY``)."""
    params: list[Any] = [start, end, account, service]
    columns = [_dimension(d, params) for d in dims]
    keys = [PERIODS[period], *columns, "rtrim(r.currency)"]
    names = ["period", *(f"d{i}" for i in range(len(dims))), "currency"]
    select = ", ".join(f"{sql} AS {name}" for sql, name in zip(keys, names, strict=True))
    joins = ""
    if any(d in ("country", "segment") or d.startswith("attrs.") for d in dims):
        joins += " LEFT JOIN accounts a ON a.account_id = r.account_id"
    if "tariff" in dims:
        joins += " LEFT JOIN tariff_versions tv ON tv.tariff_version_id = r.tariff_version_id"
    group = ", ".join(str(i + 1) for i in range(len(keys)))
    # Whole months by month or in total: the monthly level answers (one row a month).
    table = ("charge_rollups_monthly" if period in ("month", "total") and start.day == 1
             and end.day == 1 else "charge_rollups")
    return await db.fetch(
        f"SELECT {select}, sum(r.amount_micros)::bigint AS amount_micros,"
        f" sum(r.records)::bigint AS records, sum(r.units) AS units,"
        f" count(DISTINCT r.account_id) AS accounts"
        f" FROM {table} r{joins}"
        f" WHERE r.day >= $1 AND r.day < $2 AND ($3::text IS NULL OR r.account_id = $3)"
        f" AND ($4::text IS NULL OR r.service = $4)"
        f" GROUP BY {group} ORDER BY {group}", *params)


async def daily_series(db: Db, start: dt.date, end: dt.date,
                       account: str | None = None) -> list[asyncpg.Record]:
    """Per account × service × day: records and money (per currency), for detection."""
    return await db.fetch(
        "SELECT account_id, coalesce(service, '') AS service, rtrim(currency) AS currency,"
        " day, sum(records)::bigint AS records, sum(amount_micros)::bigint AS amount_micros"
        " FROM charge_rollups WHERE day >= $1 AND day < $2"
        " AND ($3::text IS NULL OR account_id = $3)"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4", start, end, account)


async def daily_zones(db: Db, account: str, service: str, day: dt.date) -> list[asyncpg.Record]:
    """Records and money by zone of one account × service × day (a flag's detail)."""
    return await db.fetch(
        "SELECT coalesce(zone, '') AS zone, sum(records)::bigint AS records,"
        " sum(amount_micros)::bigint AS amount_micros FROM charge_rollups"
        " WHERE account_id = $1 AND coalesce(service, '') = $2 AND day = $3"
        " GROUP BY 1 ORDER BY 2 DESC", account, service, day)


# Subscriptions: MRR and the accounts they hold ---------------------------------------------

# The calendar months (UTC) of the array ``$1`` (see _months): the
# first day, the first instant (open) and the first instant of the next month (close). A
# subscription is active at an instant t when valid_from < t <= valid_to (no valid_to: open
# ended): at the close, active at the month's last moment.
_MONTHS = ("WITH months AS (SELECT m.month, m.month::timestamp AT TIME ZONE 'UTC' AS open,"
           " (m.month + interval '1 month') AT TIME ZONE 'UTC' AS close"
           " FROM unnest($1::date[]) AS m(month))")


def _months(start: dt.date, end: dt.date) -> list[dt.date]:
    """The first days of the months from ``start``'s to the one holding the day before
    ``end`` (passed as an array: the planner then expects a dozen rows, not a thousand)."""
    months, month = [], start.replace(day=1)
    while month < end:
        months.append(month)
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return months


async def mrr(db: Db, start: dt.date, end: dt.date) -> list[asyncpg.Record]:
    """Per month × product × currency: Σ the recurring fee (per monthly billing cycle) of
    the subscriptions active at the month's close, their count and their accounts."""
    return await db.fetch(
        f"{_MONTHS} SELECT m.month, s.product, rtrim(p.currency) AS currency,"
        " sum(p.recurring_fee_micros)::bigint AS mrr_micros, count(*) AS subscriptions,"
        " count(DISTINCT s.account_id COLLATE \"C\") AS accounts"
        " FROM months m JOIN subscriptions s ON s.valid_from < m.close"
        " AND (s.valid_to IS NULL OR s.valid_to >= m.close)"
        " JOIN products p ON p.product_id = s.product"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", _months(start, end))


async def account_movements(db: Db, start: dt.date, end: dt.date) -> list[asyncpg.Record]:
    """Per month × account currency: accounts with an active subscription at the open and
    at the close (new: only at the close; churned: only at the open), and subscribed at any
    moment of the month (the ARPU divisor)."""
    return await db.fetch(
        f"{_MONTHS}, flags AS (SELECT m.month, s.account_id COLLATE \"C\" AS account_id,"
        " bool_or(s.valid_from < m.open) AS at_open,"
        " bool_or(s.valid_to IS NULL OR s.valid_to >= m.close) AS at_close,"
        " bool_or(s.valid_to IS NULL OR s.valid_to > m.open) AS during"
        " FROM months m JOIN subscriptions s ON s.valid_from < m.close"
        " AND (s.valid_to IS NULL OR s.valid_to >= m.open) GROUP BY 1, 2)"
        " SELECT f.month, rtrim(a.currency) AS currency,"
        " count(*) FILTER (WHERE f.at_open) AS opening,"
        " count(*) FILTER (WHERE f.at_close) AS closing,"
        " count(*) FILTER (WHERE f.at_close AND NOT f.at_open) AS new,"
        " count(*) FILTER (WHERE f.at_open AND NOT f.at_close) AS churned,"
        " count(*) FILTER (WHERE f.during) AS subscribed"
        " FROM flags f JOIN accounts a ON a.account_id = f.account_id"
        " GROUP BY 1, 2 ORDER BY 1, 2", _months(start, end))


# Collections: the receivables ledger (server/collections) -------------------------------

async def collections(db: Db, start: dt.date, end: dt.date) -> list[asyncpg.Record]:
    """Per month × currency of the ledger (entry dates): invoiced (invoices and fees),
    credited (credit notes), collected (payments net of refunds and reversals), written off
    (net of reversals), each a positive figure, and the receivables at the month's close
    (Σ every entry dated before it)."""
    return await db.fetch(
        f"{_MONTHS} SELECT m.month, rtrim(c.currency) AS currency,"
        " coalesce(sum(e.amount_micros) FILTER (WHERE e.entry_date >= m.month AND"
        "  e.kind IN ('invoice', 'fee')), 0)::bigint AS invoiced,"
        " coalesce(-sum(e.amount_micros) FILTER (WHERE e.entry_date >= m.month AND"
        "  e.kind = 'credit_note'), 0)::bigint AS credited,"
        " coalesce(-sum(e.amount_micros) FILTER (WHERE e.entry_date >= m.month AND"
        "  e.kind IN ('payment', 'refund', 'reversal')), 0)::bigint AS collected,"
        " coalesce(-sum(e.amount_micros) FILTER (WHERE e.entry_date >= m.month AND"
        "  e.kind IN ('write_off', 'write_off_reversal')), 0)::bigint AS written_off,"
        " coalesce(sum(e.amount_micros), 0)::bigint AS receivables"
        " FROM months m CROSS JOIN (SELECT DISTINCT currency FROM ledger_entries) c"
        " LEFT JOIN ledger_entries e ON e.currency = c.currency"
        "  AND e.entry_date < (m.month + interval '1 month')::date"
        " GROUP BY 1, 2 ORDER BY 1, 2", _months(start, end))


# Anomaly flags ---------------------------------------------------------------------------

FLAG_COLUMNS = ("flag_id, account_id, service, metric, granularity, period_start, observed,"
                " baseline, mad, score, direction, method, explanation, state, created_at,"
                " state_changed_at, state_changed_by")


async def insert_flag(conn: Connection, flag: dict[str, Any]) -> int | None:
    """Store a flag; None when the same account × service × metric × period is flagged."""
    flag_id: int | None = await conn.fetchval(
        "INSERT INTO anomaly_flags (account_id, service, metric, granularity, period_start,"
        " observed, baseline, mad, score, direction, method, explanation)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT (account_id, service, metric, granularity, period_start) DO NOTHING"
        " RETURNING flag_id",
        flag["account_id"], flag["service"], flag["metric"], flag["granularity"],
        flag["period_start"], flag["observed"], flag["baseline"], flag["mad"], flag["score"],
        flag["direction"], flag["method"], flag["explanation"])
    return flag_id


async def find_flags(db: Db, *, state: str | None, account: str | None, after: int | None,
                     limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        f"SELECT {FLAG_COLUMNS} FROM anomaly_flags WHERE ($1::text IS NULL OR state = $1)"
        " AND ($2::text IS NULL OR account_id = $2) AND ($3::bigint IS NULL OR flag_id > $3)"
        " ORDER BY flag_id LIMIT $4", state, account, after, limit)


async def get_flag(db: Db, flag_id: int, *, lock: bool = False) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {FLAG_COLUMNS} FROM anomaly_flags WHERE flag_id = $1"
        + (" FOR UPDATE" if lock else ""), flag_id)


async def set_flag_state(conn: Connection, flag_id: int, state: str, actor: str) -> None:
    await conn.execute(
        "UPDATE anomaly_flags SET state = $2, state_changed_at = now(), state_changed_by = $3"
        " WHERE flag_id = $1", flag_id, state, actor)
