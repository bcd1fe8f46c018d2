"""All of the analytics package's SQL: the charge rollups (appended by the charges' writers,
``server.store.charge_writes``) and the anomaly flags. Analytics read billing data and never
write it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg

from billing_oss.server.analytics import report_spans
from billing_oss.server.store import compaction_lock
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


# The dimensions the account-less levels by day and month (charge_day_totals,
# charge_month_totals, migration 1500) keep a distinct-account count for, in the order their
# ``grouping`` names them; the sets they hold; and their column for each (currency is a key
# of every row).
GROUP_LEVEL: dict[str, str] = {
    "service": "r.service",
    "zone": "r.zone",
    "tariff_version": "r.tariff_version_id::text",
    "tariff": "r.tariff_id",
    "currency": "rtrim(r.currency)",
}
GROUPINGS = frozenset({"", "service", "zone", "tariff_version", "tariff", "service,zone",
                             "service,tariff_version", "service,tariff"})
# How a delta row and a compacted row of the same month and account are in the same group.
_SAME = {"service": "c.service IS NOT DISTINCT FROM r.service",
         "zone": "c.zone IS NOT DISTINCT FROM r.zone",
         "tariff_version": "c.tariff_version_id IS NOT DISTINCT FROM r.tariff_version_id",
         "tariff": "ctv.tariff_id IS NOT DISTINCT FROM tv.tariff_id"}


# By account or its attributes over whole months, and by nothing the account-less levels
# answer: one row per account and month (charge_account_months, migration 1500) and the
# monthly deltas not folded yet, instead of one per service × zone × tariff version. An
# account's rows and deltas live together (one shard on Citus), so no lock is needed.
_ACCOUNT_MONTHS = (
    "(SELECT account_id, day, currency, NULL::text AS service, amount_micros, records, units"
    " FROM charge_account_months WHERE day >= $1 AND day < $2 AND ($3::text IS NULL"
    " OR account_id = $3) UNION ALL SELECT account_id, day, currency, service,"
    " amount_micros, records, units FROM charge_rollups_monthly WHERE NOT compacted"
    " AND day >= $1 AND day < $2 AND ($3::text IS NULL OR account_id = $3))")


async def compact(db: Db, first: dt.date, last: dt.date) -> int:
    """Fold the rollup deltas of days ``first``..``last`` (inclusive; the monthly level:
    of the months holding them), and every hour's deltas of the account-less hourly level
    (migration 1512: a row per batch × hour, whatever the days); rows folded away."""
    folded: int = await db.fetchval(
        "SELECT compact_charge_rollups($1, $2) + compact_charge_rollups_monthly($1, $2)"
        " + compact_charge_hour_totals()", first, last)
    return folded


async def rebuild(conn: Connection, first: dt.date, last: dt.date,
                  levels: Sequence[str]) -> dict[str, int]:
    """The rollup levels ``levels`` (daily, monthly, hourly: each with the levels counted
    from it) of the days ``first``..``last`` recomputed from the charges, in the caller's
    transaction, under the compaction's lock (migration 1542); rows written per level."""
    rows = await conn.fetch("SELECT level, rows_written FROM rebuild_charge_levels($1, $2, $3)",
                            first, last, list(levels))
    return {r["level"]: r["rows_written"] for r in rows}


async def fresh_rollups(db: Db) -> int:
    """The daily deltas not compacted yet (their partition, migration 1511)."""
    count: int = await db.fetchval("SELECT count(*) FROM charge_rollups WHERE NOT compacted")
    return count


async def analyze_rollups(db: Db) -> None:
    """After a large fold: the deltas' partitions vacuumed, so the index readers find the
    deltas left by holds no entry of the rows just folded away (a reader visiting them all
    paid 0.5 s after 600 k deltas were folded), and fresh statistics, so the planner expects
    the few deltas left and reads them by index rather than by bitmap. Outside a
    transaction: VACUUM runs in none."""
    await db.execute("VACUUM (ANALYZE) charge_rollups_deltas, charge_rollups_monthly_deltas,"
                     " charge_hour_totals_deltas")
    await db.execute("ANALYZE charge_rollups, charge_rollups_monthly, charge_hour_totals")


def _dimension(name: str, params: list[Any]) -> str:
    if name.startswith("attrs."):
        params.append(name.removeprefix("attrs."))
        return f"a.attrs->>${len(params)}"
    return DIMENSIONS[name]


async def totals(db: Db, *, period: str, dims: Sequence[str], start: dt.date, end: dt.date,
                 account: str | None = None, service: str | None = None) -> list[asyncpg.Record]:
    """Σ money, records, units and distinct accounts per period × dims × currency over the
    days [start, end). Money is never summed across currencies: currency is always a key.
    Dimension and period names must be keys of DIMENSIONS / PERIODS (or ``attrs.KEY``).
    Read, where one answers, from a level compaction keeps (migrations 1500, 1502) and the
    deltas not folded yet; else from the per-account rollups."""
    grouping = _grouping(dims, service) if account is None else None
    if grouping is not None:
        pieces = report_spans.split(period, start, end)
        if pieces is None:  # a total of several periods: whole months inside, if any
            months = report_spans.split("month", start, end)
            whole = [p for p in months or [] if p.level == "month"]
            first, after = (whole[0].start, whole[0].end) if whole else (start, start)
            return await _span_totals(db, grouping, dims, start, end, first, after, service,
                                      None)
        found: list[asyncpg.Record] = []
        for piece in pieces:
            if piece.level is None:  # partial periods at an end: their days' accounts
                for part in report_spans.periods(period, piece.start, piece.end):
                    found += await _span_totals(db, grouping, dims, part.start, part.end,
                                                part.start, part.start, service,
                                                report_spans.period_start(period, part.start))
            else:
                found += await _group_totals(db, grouping, piece.level, piece.total, dims,
                                             piece.start, piece.end, service)
        return found
    return await _account_totals(db, period, dims, start, end, account, service)


async def _account_totals(db: Db, period: str, dims: Sequence[str], start: dt.date,
                          end: dt.date, account: str | None,
                          service: str | None) -> list[asyncpg.Record]:
    """repo.totals from the per-account levels: the monthly ones over whole months, else the
    daily rollups."""
    # Whole months by month or in total: the monthly level answers (one row a month), its
    # day already the month's first.
    monthly = period in ("month", "total") and start.day == 1 and end.day == 1
    params: list[Any] = [start, end, account, service]
    columns = [_dimension(d, params) for d in dims]
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
    if monthly and service is None and not set(dims) & set(_SAME):
        table = _ACCOUNT_MONTHS
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


def _grouping(dims: Sequence[str], service: str | None) -> str | None:
    """The grouping of the account-less levels that answers ``dims`` (None: none does). A
    service filter is a key of the grouping (its accounts are those of that service), and
    is left out of the answer's keys."""
    keyed = [*dims, "service"] if service is not None and "service" not in dims else dims
    if len(set(dims)) != len(dims) or not set(keyed) <= set(GROUP_LEVEL):
        return None
    grouping = ",".join(d for d in GROUP_LEVEL if d in keyed and d != "currency")
    return grouping if grouping in GROUPINGS else None


# The account-less level of each granularity, the per-account rollups its deltas are in, and
# the first day of the period holding a delta's day.
_LEVELS = {"day": ("charge_day_totals", "charge_rollups", "r.day"),
           "week": ("charge_week_totals", "charge_rollups", PERIODS["week"]),
           "month": ("charge_month_totals", "charge_rollups_monthly", "r.day")}


async def _group_totals(db: Db, grouping: str, level: str, total: bool, dims: Sequence[str],
                        start: dt.date, end: dt.date,
                        service: str | None) -> list[asyncpg.Record]:
    """repo.totals over the whole days, weeks or months (``level``) of [start, end), by each
    or in ``total`` over the one period it holds, from the account-less level and the deltas
    not folded yet of the same granularity. A delta's account counts only where its group
    (with the service filtered on) has no compacted row of that account in the same period:
    the level counted it then."""
    level_table, rollups, period_of = _LEVELS[level]
    names = ["period", *(f"d{i}" for i in range(len(dims))), "currency"]
    level_cols = ["NULL::date" if total else "r.day",
                  *(GROUP_LEVEL[d] for d in dims), "rtrim(r.currency)"]
    delta = ["NULL::date" if total else period_of,
             *(DIMENSIONS[d] for d in dims), "rtrim(r.currency)"]
    tariff = "tariff" in dims
    join = (" LEFT JOIN tariff_versions tv ON tv.tariff_version_id = r.tariff_version_id"
            if tariff else "")
    cjoin = (" LEFT JOIN tariff_versions ctv ON ctv.tariff_version_id = c.tariff_version_id"
             if tariff else "")
    keyed = {*dims, "service"} if service is not None else set(dims)
    same = "".join(f" AND {_SAME[d]}" for d in _SAME if d in keyed)
    in_period = ("c.day = r.day" if level != "week" else
                 f"c.day >= {period_of} AND c.day < {period_of} + 7")
    where = " WHERE r.day >= $1 AND r.day < $2 AND ($3::text IS NULL OR r.service = $3)"
    keys = ", ".join(str(i + 1) for i in range(len(names)))

    def cols(sql: Sequence[str]) -> str:
        return ", ".join(f"{e} AS {n}" for e, n in zip(sql, names, strict=True))

    sql = (f"SELECT {', '.join(names)}, sum(amount_micros)::bigint AS amount_micros,"
           " sum(records)::bigint AS records, sum(units) AS units,"
           " sum(accounts)::bigint AS accounts FROM ("
           f" SELECT {cols(level_cols)}, r.amount_micros, r.records, r.units, r.accounts"
           f" FROM {level_table} r{where} AND r.grouping = $4"
           f" UNION ALL SELECT {cols(delta)}, r.amount_micros, r.records, r.units, 0"
           f" FROM {rollups} r{join}{where} AND NOT r.compacted"
           f" UNION ALL SELECT {cols(delta)}, 0, 0, 0,"
           " count(DISTINCT r.account_id COLLATE \"C\")"
           f" FROM {rollups} r{join}{where} AND NOT r.compacted"
           f" AND NOT EXISTS (SELECT 1 FROM {rollups} c{cjoin}"
           f" WHERE {in_period} AND c.account_id = r.account_id AND c.compacted"
           f" AND c.currency = r.currency{same}) GROUP BY {keys}) t"
           f" GROUP BY {keys} ORDER BY {keys}")
    return await compaction_lock.fetch_between_compactions(
        db, sql, [start, end, service, grouping])


async def _span_totals(db: Db, grouping: str, dims: Sequence[str], start: dt.date,
                       end: dt.date, first: dt.date, after: dt.date, service: str | None,
                       period: dt.date | None) -> list[asyncpg.Record]:
    """repo.totals over [start, end) as one row per dims × currency (its ``period``: a
    partial week or month's first day, None in total), where [first, after) are the whole
    months inside it (none when equal): their sums from the account-less month level and
    its deltas, those of the days at the ends from the day level and its; the distinct
    accounts as the union of the accounts whose months (charge_account_presence, migration
    1503) meet [first, after), whose days (charge_account_days, 1540) meet the days at the
    ends, and those of the deltas not folded yet of either. Each part reads one row per
    account and value a year, whatever the days, months and keys it combines."""
    names = [*(f"d{i}" for i in range(len(dims))), "currency"]
    level = [*(GROUP_LEVEL[d] for d in dims), "rtrim(r.currency)"]
    delta = [*(DIMENSIONS[d] for d in dims), "rtrim(r.currency)"]
    join = (" LEFT JOIN tariff_versions tv ON tv.tariff_version_id = r.tariff_version_id"
            if "tariff" in dims else "")
    service_is = " AND ($3::text IS NULL OR r.service = $3)"
    inside = f" WHERE r.day >= $4 AND r.day < $5{service_is}"
    ends = f" WHERE (r.day >= $1 AND r.day < $4 OR r.day >= $5 AND r.day < $2){service_is}"
    keys = ", ".join(names)
    month_years, month_masks = _month_masks(first, after)
    day_years, day_masks = _day_masks(start, end, first, after)

    def cols(sql: Sequence[str]) -> str:
        return ", ".join(f"{e} AS {n}" for e, n in zip(sql, names, strict=True))

    sums = "r.amount_micros, r.records, r.units, 0 AS accounts"
    sql = (f"SELECT $11::date AS period, {', '.join(names)},"
           " sum(amount_micros)::bigint AS amount_micros, sum(records)::bigint AS records,"
           " sum(units) AS units, sum(accounts)::bigint AS accounts FROM ("
           f" SELECT {cols(level)}, {sums} FROM charge_month_totals r{inside}"
           " AND r.grouping = $6"
           f" UNION ALL SELECT {cols(delta)}, {sums} FROM charge_rollups_monthly r{join}"
           f"{inside} AND NOT r.compacted"
           f" UNION ALL SELECT {cols(level)}, {sums} FROM charge_day_totals r{ends}"
           " AND r.grouping = $6"
           f" UNION ALL SELECT {cols(delta)}, {sums} FROM charge_rollups r{join}{ends}"
           " AND NOT r.compacted"
           f" UNION ALL SELECT {', '.join(names)}, 0, 0, 0,"
           " count(DISTINCT account_id COLLATE \"C\") FROM ("
           f" SELECT r.account_id, {cols(level)} FROM charge_account_presence r"
           " WHERE r.grouping = $6 AND r.year >= $7 AND r.year < $7 + cardinality($8::int[])"
           f" AND r.months & ($8::int[])[r.year - $7 + 1] <> 0{service_is}"
           f" UNION ALL SELECT r.account_id, {cols(level)} FROM charge_account_days r"
           " WHERE r.grouping = $6 AND r.year >= $9 AND r.year < $9 + cardinality($10::text[])"
           " AND r.days & ($10::text[])[r.year - $9 + 1]::bit(366) <> 0::bit(366)"
           f"{service_is}"
           f" UNION ALL SELECT r.account_id, {cols(delta)} FROM charge_rollups_monthly r{join}"
           f"{inside} AND NOT r.compacted"
           f" UNION ALL SELECT r.account_id, {cols(delta)} FROM charge_rollups r{join}{ends}"
           " AND NOT r.compacted"
           f") a GROUP BY {keys}) t GROUP BY {keys} ORDER BY {keys}")
    return await compaction_lock.fetch_between_compactions(
        db, sql, [start, end, service, first, after, grouping, month_years, month_masks,
                  day_years, day_masks, period])


def _month_masks(first: dt.date, after: dt.date) -> tuple[int, list[int]]:
    """The months [first, after) (first days) as charge_account_presence's bits: the first
    year, and the mask of each year from it (none when the span is empty)."""
    if first >= after:
        return first.year, []
    years = range(first.year, (after - dt.timedelta(days=1)).year + 1)
    return first.year, [sum(1 << (m - 1) for m in range(1, 13)
                            if first <= dt.date(y, m, 1) < after) for y in years]


def _day_masks(start: dt.date, end: dt.date, first: dt.date,
               after: dt.date) -> tuple[int, list[str]]:
    """The days of [start, end) outside [first, after) as charge_account_days' bits (bit
    doy − 1 from the left, as text for ``::bit(366)``): the first year, and the mask of each
    year from it (none when there are no such days)."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days)]
    days = [d for d in days if not first <= d < after]
    if not days:
        return start.year, []
    masks = [["0"] * 366 for _ in range(days[-1].year - days[0].year + 1)]
    for d in days:
        masks[d.year - days[0].year][d.timetuple().tm_yday - 1] = "1"
    return days[0].year, ["".join(m) for m in masks]


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


# Subscriptions are counted per month from the steps migration 1501 keeps per account (its
# triggers rewrite an account's steps when its subscriptions change): +n at the first month a
# count holds, −n after its last, an account counted once per union of its spans. A month's
# count is the sum of the steps up to it: steps before the range are added to its first month,
# a running sum over the range's months does the rest. Fees and currencies are joined as they
# are now, as the report always did.


async def mrr(db: Db, start: dt.date, end: dt.date) -> list[asyncpg.Record]:
    """Per month × product × currency: Σ the recurring fee (per monthly billing cycle) of
    the subscriptions active at the month's close, their count and their accounts."""
    months = _months(start, end)
    return await db.fetch(
        "WITH steps AS (SELECT greatest(s.month, $1) AS month, s.product,"
        " sum(s.subscriptions) AS n, sum(s.accounts) AS a FROM subscription_product_steps s"
        " WHERE s.month <= $2 GROUP BY 1, 2),"
        " running AS (SELECT m.month, k.product, sum(coalesce(d.n, 0)) OVER w AS n,"
        " sum(coalesce(d.a, 0)) OVER w AS a FROM unnest($3::date[]) AS m(month)"
        " CROSS JOIN (SELECT DISTINCT product FROM steps) k"
        " LEFT JOIN steps d ON d.month = m.month AND d.product = k.product"
        " WINDOW w AS (PARTITION BY k.product ORDER BY m.month))"
        " SELECT r.month, r.product, rtrim(p.currency) AS currency,"
        " (r.n * p.recurring_fee_micros)::bigint AS mrr_micros, r.n::bigint AS subscriptions,"
        " r.a::bigint AS accounts FROM running r JOIN products p ON p.product_id = r.product"
        " WHERE r.n > 0 ORDER BY 1, 2, 3",
        months[0], months[-1], months)


async def account_movements(db: Db, start: dt.date, end: dt.date) -> list[asyncpg.Record]:
    """Per month × account currency: accounts with an active subscription at the open and
    at the close (new: only at the close; churned: only at the open), and subscribed at any
    moment of the month (the ARPU divisor); months where an account held a subscription
    active at some instant from the open to the close."""
    months = _months(start, end)
    after = (months[-1] + dt.timedelta(days=32)).replace(day=1)
    return await db.fetch(
        # a run's start is read at its own month only (the next month's new): one before
        # the range, moved to its first month, is never read
        "WITH steps AS (SELECT greatest(s.month, $1) AS month, rtrim(a.currency) AS currency,"
        " sum(s.opening) AS o, sum(s.during) AS d, sum(s.touched) AS j, sum(s.starts) AS s"
        " FROM subscription_account_steps s JOIN accounts a ON a.account_id = s.account_id"
        " WHERE s.month <= $3 GROUP BY 1, 2),"
        " running AS (SELECT m.month, k.currency,"
        " sum(coalesce(x.o, 0)) OVER w AS opening, sum(coalesce(x.d, 0)) OVER w AS during,"
        " sum(coalesce(x.j, 0)) OVER w AS touched, coalesce(x.s, 0) AS starts"
        " FROM unnest($4::date[]) AS m(month)"
        " CROSS JOIN (SELECT DISTINCT currency FROM steps) k"
        " LEFT JOIN steps x ON x.month = m.month AND x.currency = k.currency"
        " WINDOW w AS (PARTITION BY k.currency ORDER BY m.month)),"
        " paired AS (SELECT month, currency, opening, during, touched,"
        " lead(opening) OVER n AS closing, lead(starts) OVER n AS new"
        " FROM running WINDOW n AS (PARTITION BY currency ORDER BY month))"
        " SELECT month, currency, opening::bigint, closing::bigint, new::bigint,"
        " (new - (closing - opening))::bigint AS churned, during::bigint AS subscribed"
        " FROM paired WHERE month <= $2 AND touched > 0 ORDER BY 1, 2",
        months[0], months[-1], after, [*months, after])


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
