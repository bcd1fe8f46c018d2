"""All of the analytics package's SQL: the charge rollups (appended by the charges' writers,
``server.store.charge_writes``) and the anomaly flags. Analytics read billing data and never
write it."""

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
# A date truncated as a timestamp (no time zone): date_trunc of a date goes through
# timestamptz and the session's zone, which took most of a year's monthly report.
PERIODS: dict[str, str] = {
    "day": "r.day",
    "week": "date_trunc('week', r.day::timestamp)::date",
    "month": "date_trunc('month', r.day::timestamp)::date",
    "total": "NULL::date",
}


async def compact(db: Db, first: dt.date, last: dt.date) -> int:
    """Fold the rollup deltas of days ``first``..``last`` (inclusive; the monthly level:
    of the months holding them); rows folded away."""
    folded: int = await db.fetchval(
        "SELECT compact_charge_rollups($1, $2) + compact_charge_rollups_monthly($1, $2)",
        first, last)
    return folded


async def fresh_rollups(db: Db) -> int:
    """The daily deltas not compacted yet (through their partial index: a plain index scan
    there also marks the entries of rows a compaction deleted, so later reads skip them)."""
    count: int = await db.fetchval("SELECT count(*) FROM charge_rollups WHERE NOT compacted")
    return count


async def analyze_rollups(db: Db) -> None:
    """Fresh statistics after a large fold: the planner then expects the few deltas left,
    and reads them by index rather than by bitmap over the rows just deleted."""
    await db.execute("ANALYZE charge_rollups")


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
    # Whole months by month or in total: the monthly level answers (one row a month), its
    # day already the month's first.
    monthly = period in ("month", "total") and start.day == 1 and end.day == 1
    keys = ["r.day" if monthly and period == "month" else PERIODS[period], *columns,
            "rtrim(r.currency)"]
    names = ["period", *(f"d{i}" for i in range(len(dims))), "currency"]
    select = ", ".join(f"{sql} AS {name}" for sql, name in zip(keys, names, strict=True))
    joins = ""
    if any(d in ("country", "segment") or d.startswith("attrs.") for d in dims):
        joins += " LEFT JOIN accounts a ON a.account_id = r.account_id"
    if "tariff" in dims:
        joins += " LEFT JOIN tariff_versions tv ON tv.tariff_version_id = r.tariff_version_id"
    group = ", ".join(str(i + 1) for i in range(len(keys)))
    table = "charge_rollups_monthly" if monthly else "charge_rollups"
    # By account, a group is one account; else the distinct count sorts the group's rows,
    # bytewise (the same count as by the collation, much cheaper).
    accounts = ("1::bigint" if "account" in dims
                else "count(DISTINCT r.account_id COLLATE \"C\")")
    return await db.fetch(
        f"SELECT {select}, sum(r.amount_micros)::bigint AS amount_micros,"
        f" sum(r.records)::bigint AS records, sum(r.units) AS units,"
        f" {accounts} AS accounts"
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


# Subscriptions are counted per month by interval arithmetic, not by joining every month
# with every subscription (a year of 100,000 subscriptions took seconds): each subscription
# becomes the span of months it counts in, a span not covered by the same account's earlier
# spans adds +1 at its first month and -1 after its last (so an account counts once), and a
# running sum over the months gives the counts. With M(t) the UTC month holding t: active at
# a month's close (the next month's first instant) for months M(valid_from) .. M(valid_to) - 1,
# at its open for M(valid_from) + 1 .. M(valid_to), at some moment of it for
# M(valid_from) .. M(valid_to - 1 µs); no valid_to: to infinity.
_SPANS_OF = ("date_trunc('month', s.valid_from AT TIME ZONE 'UTC') AS mf,"
             " coalesce(date_trunc('month', s.valid_to AT TIME ZONE 'UTC'),"
             " 'infinity') AS mt,"
             " coalesce(date_trunc('month', (s.valid_to AT TIME ZONE 'UTC')"
             " - interval '1 microsecond'), 'infinity') AS mx")
# Of spans (key, account_id, f, t): the part of each not covered by the same key and
# account's earlier spans (``pf`` .. t, empty when pf > t), and whether it starts an island
# of consecutive months (not adjacent to an earlier span).
_PIECES = ("pieces AS (SELECT *, greatest(f, coalesce(covered + interval '1 month', f)) AS pf,"
           " (covered IS NULL OR f > covered + interval '1 month') AS starts FROM ("
           " SELECT *, max(t) OVER (PARTITION BY key, account_id ORDER BY f, t"
           " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered"
           " FROM spans WHERE f <= t) c)")


async def mrr(db: Db, start: dt.date, end: dt.date) -> list[asyncpg.Record]:
    """Per month × product × currency: Σ the recurring fee (per monthly billing cycle) of
    the subscriptions active at the month's close, their count and their accounts."""
    months = _months(start, end)
    return await db.fetch(
        "WITH subs AS (SELECT s.account_id COLLATE \"C\" AS account_id, s.product,"
        " rtrim(p.currency) AS currency, p.recurring_fee_micros AS fee, " + _SPANS_OF +
        " FROM subscriptions s JOIN products p ON p.product_id = s.product"
        " WHERE s.valid_from < ($2::date + interval '1 month') AT TIME ZONE 'UTC'"
        " AND (s.valid_to IS NULL OR s.valid_to >= ($1::date + interval '1 month')"
        " AT TIME ZONE 'UTC')),"
        # active at the close of M(valid_from) .. M(valid_to) - 1, within the range
        " spans AS (SELECT product || '/' || currency AS key, product, currency, fee,"
        " account_id, greatest(mf, $1::date::timestamp) AS f,"
        " least(mt - interval '1 month', $2::date::timestamp) AS t FROM subs), "
        + _PIECES + ","
        " deltas AS (SELECT e.month, p.product, p.currency, sum(e.fee) AS fee,"
        " sum(e.n) AS n, sum(e.a) AS a FROM pieces p, LATERAL (VALUES"
        " (p.f, p.fee, 1, 0), (p.t + interval '1 month', -p.fee, -1, 0),"
        " (p.pf, 0, 0, CASE WHEN p.pf <= p.t THEN 1 ELSE 0 END),"
        " (p.t + interval '1 month', 0, 0, CASE WHEN p.pf <= p.t THEN -1 ELSE 0 END))"
        " AS e(month, fee, n, a) GROUP BY 1, 2, 3),"
        " running AS (SELECT m.month, k.product, k.currency,"
        " sum(coalesce(d.fee, 0)) OVER w AS mrr_micros, sum(coalesce(d.n, 0)) OVER w AS n,"
        " sum(coalesce(d.a, 0)) OVER w AS a"
        " FROM unnest($3::date[]) AS m(month)"
        " CROSS JOIN (SELECT DISTINCT product, currency FROM deltas) k"
        " LEFT JOIN deltas d ON d.month = m.month::timestamp AND d.product = k.product"
        " AND d.currency = k.currency"
        " WINDOW w AS (PARTITION BY k.product, k.currency ORDER BY m.month))"
        " SELECT month, product, currency, mrr_micros::bigint, n::bigint AS subscriptions,"
        " a::bigint AS accounts FROM running WHERE n > 0 ORDER BY 1, 2, 3",
        months[0], months[-1], months)


async def account_movements(db: Db, start: dt.date, end: dt.date) -> list[asyncpg.Record]:
    """Per month × account currency: accounts with an active subscription at the open and
    at the close (new: only at the close; churned: only at the open), and subscribed at any
    moment of the month (the ARPU divisor); months where an account held a subscription
    active at some instant from the open to the close."""
    months = _months(start, end)
    after = (months[-1] + dt.timedelta(days=32)).replace(day=1)
    return await db.fetch(
        "WITH subs AS (SELECT s.account_id COLLATE \"C\" AS account_id,"
        " rtrim(a.currency) AS currency, " + _SPANS_OF +
        " FROM subscriptions s JOIN accounts a ON a.account_id = s.account_id"
        " WHERE s.valid_from < ($2::date + interval '1 month') AT TIME ZONE 'UTC'"
        " AND (s.valid_to IS NULL OR s.valid_to >= $1::date AT TIME ZONE 'UTC')),"
        # o: active at the month's open; d: during it; j: at some instant open..close
        " spans AS (SELECT 'o' || currency AS key, currency, account_id,"
        " mf + interval '1 month' AS f, mt AS t FROM subs"
        " UNION ALL SELECT 'd' || currency, currency, account_id, mf, mx FROM subs"
        " UNION ALL SELECT 'j' || currency, currency, account_id, mf, mt FROM subs), "
        + _PIECES + ","
        " deltas AS (SELECT e.month, p.currency, sum(e.o) AS o, sum(e.d) AS d,"
        " sum(e.j) AS j, sum(e.s) AS s FROM pieces p, LATERAL (VALUES"
        " (greatest(p.pf, $1::date::timestamp), 1), (p.t + interval '1 month', -1))"
        " AS e0(month, step),"
        " LATERAL (SELECT e0.month, CASE left(p.key, 1) WHEN 'o' THEN e0.step ELSE 0 END AS o,"
        " CASE left(p.key, 1) WHEN 'd' THEN e0.step ELSE 0 END AS d,"
        " CASE left(p.key, 1) WHEN 'j' THEN e0.step ELSE 0 END AS j,"
        " 0 AS s) e WHERE p.pf <= p.t AND p.t >= $1::date::timestamp GROUP BY 1, 2"
        " UNION ALL SELECT p.f, p.currency, 0, 0, 0, count(*) FROM pieces p"
        " WHERE left(p.key, 1) = 'o' AND p.starts GROUP BY 1, 2),"
        " running AS (SELECT m.month, k.currency,"
        " sum(coalesce(x.o, 0)) OVER w AS opening, sum(coalesce(x.d, 0)) OVER w AS during,"
        " sum(coalesce(x.j, 0)) OVER w AS touched, coalesce(x.s, 0) AS starts"
        " FROM unnest($3::date[]) AS m(month)"
        " CROSS JOIN (SELECT DISTINCT currency FROM subs) k"
        " LEFT JOIN (SELECT month, currency, sum(o) AS o, sum(d) AS d, sum(j) AS j,"
        " sum(s) AS s FROM deltas GROUP BY 1, 2) x"
        " ON x.month = m.month::timestamp AND x.currency = k.currency"
        " WINDOW w AS (PARTITION BY k.currency ORDER BY m.month)),"
        " paired AS (SELECT month, currency, opening, during, touched,"
        " lead(opening) OVER n AS closing, lead(starts) OVER n AS new"
        " FROM running WINDOW n AS (PARTITION BY currency ORDER BY month))"
        " SELECT month, currency, opening::bigint, closing::bigint, new::bigint,"
        " (new - (closing - opening))::bigint AS churned, during::bigint AS subscribed"
        " FROM paired WHERE month <= $2 AND touched > 0 ORDER BY 1, 2",
        months[0], months[-1], [*months, after])


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
