"""The rollup levels control: every level reports, the console and the totals read, recomputed
from the charges and compared exactly, to the micro-unit and the count.

- ``rollups.levels``: over a window of days (the last ``rollup_days`` UTC days up to the
  as-of time; ``rollup_days = 0``: every day whose charges are still in the database; the
  week and month levels over the whole weeks and months inside the window, so a short window
  reads a few days of charges, not a week or a month: the control costs what the window's
  charges cost, ~28 µs each, and the hourly run's default of two days stays a fraction of
  the run at 10 M charges a month while a nightly ``rollup_days = 0`` reads them all), what
  the charges make (their sums per account × day × service × zone × currency × tariff version,
  ``charge_level_days``, migration 1542; per hour × currency, ``charge_level_hours``)
  against what each level holds with the deltas not folded yet added, as readers add them:

  ``charge_rollups`` (daily per account) and ``charge_rollups_monthly``: kept rows + deltas;
  ``charge_hour_totals``: kept rows + deltas; ``charge_totals`` (daily, account-less): its
  rows + the daily deltas; ``charge_day_totals``, ``charge_week_totals``,
  ``charge_month_totals`` (per grouping, with distinct accounts): their rows + the deltas'
  sums + the accounts of a delta the period's kept rows of its group do not hold;
  ``charge_account_months``: its rows + the monthly deltas; ``charge_account_days`` and
  ``charge_account_presence``: their bits of the window's days (months), or-ed with those of
  the deltas.

  An offender names the level and its key (account, day or hour, service, zone, currency,
  tariff version; grouping) and the values expected and found; at stake, the money between
  them. Read-only, in one statement (one snapshot: a writer commits charges and deltas
  together), after the compaction's lock is taken shared (as totals across accounts read),
  so that on Citus no compaction commits between the nodes it reads. A week straddling the
  first month still stored is left out (its earlier days' charges are archived). A finding is
  repaired by ``billing-oss report rebuild`` over its days.
"""

from __future__ import annotations

from collections.abc import Sequence

from billing_oss.server.assurance.sql_control import SqlControl
from billing_oss.server.store import compaction_lock

_GROUPING = """CASE GROUPING({a}.service, {a}.zone, {a}.tariff_version_id, {a}.tariff_id)
        WHEN 15 THEN '' WHEN 7 THEN 'service' WHEN 11 THEN 'zone'
        WHEN 13 THEN 'tariff_version' WHEN 14 THEN 'tariff'
        WHEN 3 THEN 'service,zone' WHEN 5 THEN 'service,tariff_version'
        WHEN 6 THEN 'service,tariff' END"""
_SETS = """GROUPING SETS ((), ({a}.service), ({a}.zone), ({a}.tariff_version_id),
        ({a}.tariff_id), ({a}.service, {a}.zone), ({a}.service, {a}.tariff_version_id),
        ({a}.service, {a}.tariff_id))"""
_GROUP_KEYS = ("grouping", "service", "zone", "tariff_version_id", "tariff_id", "currency")


def _grouped(source: str, by: str, sums: str) -> str:
    """``source``'s rows (aliased ``a``) summed per ``by`` × currency and each grouping set
    of the levels."""
    return (f"SELECT {by}, {_GROUPING.format(a='a')} AS grouping, a.service, a.zone,"
            f" a.tariff_version_id, a.tariff_id, a.currency, {sums} FROM {source}"
            f" GROUP BY {by}, a.currency, {_SETS.format(a='a')}")


def _compare(level: str, keys: Sequence[str], values: Sequence[str], expected: str,
             found: str, money: bool = True) -> str:
    """Offenders of one level: the rows of ``expected`` and ``found`` (``keys`` and
    ``values`` columns; ``found`` may hold several rows per key, summed) whose values differ,
    or that one side lacks."""
    cols = ", ".join(keys)
    vals = ", ".join(values)
    as_numeric = ", ".join(f"{v}::numeric AS {v}" for v in values)
    summed = ", ".join(f"sum({v})::numeric AS {v}" for v in values)
    key = " || ' ' || ".join(f"'{k}=' || coalesce(rtrim({k}::text), 'none')" for k in keys)
    currency = "rtrim(currency)" if "currency" in keys else "NULL::text"
    stake = "abs(coalesce(e[1], 0) - coalesce(fo[1], 0))::bigint" if money else "NULL::bigint"
    # The rows of either side not on the other (EXCEPT: NULL keys match, a hashed set of one
    # side's rows, not an aggregate state per key), then per key what each side holds.
    return f"""
SELECT '{level}:' || key AS object, currency, {stake} AS at_stake_micros,
       format('%s %s: expected ({vals}) %s, found %s', '{level}', key,
              coalesce(e::text, 'no row'), coalesce(fo::text, 'no row')) AS detail
FROM (WITH x AS MATERIALIZED (SELECT {cols}, {as_numeric} FROM ({expected}) x),
           y AS MATERIALIZED (SELECT {cols}, {summed} FROM ({found}) y GROUP BY {cols}),
           d AS (SELECT true AS side, * FROM (SELECT * FROM x EXCEPT SELECT * FROM y) a
                 UNION ALL
                 SELECT false, * FROM (SELECT * FROM y EXCEPT SELECT * FROM x) b)
      SELECT {key} AS key, {currency} AS currency,
             max(ARRAY[{vals}]) FILTER (WHERE side) AS e,
             max(ARRAY[{vals}]) FILTER (WHERE NOT side) AS fo
      FROM d GROUP BY {cols}) c"""


def _bits(level: str, keys: Sequence[str], expected: str, found: str, unit: str) -> str:
    """Offenders of a bits level: per key and year, the bits (column ``bits``, bit varying,
    leftmost the year's first day or month) of ``expected`` and of ``found`` (several rows
    per key or-ed) that differ."""
    cols = ", ".join(keys)
    key = " || ' ' || ".join(f"'{k}=' || coalesce(rtrim({k}::text), 'none')" for k in keys)
    width = 366 if unit == "day" else 12
    zeros = f"repeat('0', {width})::varbit"
    first = ("make_date(year, 1, 1) + position('1' IN diff) - 1" if unit == "day"
             else "make_date(year, position('1' IN diff), 1)")
    return f"""
SELECT '{level}:' || key || ' year=' || year AS object, rtrim(currency) AS currency,
       NULL::bigint AS at_stake_micros,
       format('%s %s year=%s: %s {unit}s differ, the first %s: expected %s, found %s',
              '{level}', key, year, length(replace(diff, '0', '')), {first},
              CASE WHEN substr(e, position('1' IN diff), 1) = '1' THEN 'set' ELSE 'clear' END,
              CASE WHEN substr(fo, position('1' IN diff), 1) = '1' THEN 'set' ELSE 'clear' END)
FROM (SELECT {key} AS key, currency, year, e::text AS e, fo::text AS fo,
             (e # fo)::text AS diff
      FROM (SELECT {cols}, year,
                   coalesce(bit_or(bits) FILTER (WHERE side), {zeros}) AS e,
                   coalesce(bit_or(bits) FILTER (WHERE NOT side), {zeros}) AS fo
            FROM (SELECT {cols}, year, true AS side, bits FROM ({expected}) x
                  UNION ALL SELECT {cols}, year, false, bits FROM ({found}) y) z
            GROUP BY {cols}, year) w
      WHERE e <> fo) c"""


_ROLLUP_SUMS = ("amount_micros", "records", "units", "reversals", "reversed_micros")
_ROLLUP_KEYS = ("account_id", "day", "service", "zone", "currency", "tariff_version_id")
_LEVEL_SUMS = ("amount_micros", "records", "units", "accounts")
_SUMS = ("sum(amount_micros) AS amount_micros, sum(records) AS records, sum(units) AS units,"
         " sum(reversals) AS reversals, sum(reversed_micros) AS reversed_micros")
_DELTA_SUMS = ("sum(amount_micros) FILTER (WHERE NOT compacted) AS amount_micros,"
               " sum(records) FILTER (WHERE NOT compacted) AS records,"
               " sum(units) FILTER (WHERE NOT compacted) AS units,"
               " bool_or(compacted) AS kept, bool_or(NOT compacted) AS fresh")
_LEVEL_COLS = "amount_micros, records, units, accounts"
_GROUP_COLS = "grouping, service, zone, tariff_version_id, tariff_id, currency"

# The window, the charges' sums and the levels' rows read once (MATERIALIZED) for all levels.
_WITH = f"""
WITH live AS MATERIALIZED (
    SELECT s.since, s.until, ($2::jsonb->>'rollup_days')::int AS n,
           ($1::timestamptz AT TIME ZONE 'UTC')::date AS today
    FROM charges_live_span() s),
window_days AS MATERIALIZED (
    SELECT since, until, CASE WHEN n > 0 THEN today - (n - 1) ELSE since END AS first,
           CASE WHEN n > 0 THEN today ELSE until - 1 END AS last
    FROM live),
span AS MATERIALIZED (  -- the window's days whose charges are still stored
    SELECT greatest(since, first) AS lo, least(until, last + 1) AS hi FROM window_days),
months AS MATERIALIZED (  -- the months wholly in the span
    SELECT m::date AS month FROM span,
           generate_series(date_trunc('month', lo::timestamp), hi::timestamp, '1 month') m
    WHERE m >= lo AND m + interval '1 month' <= hi),
masks AS MATERIALIZED (  -- per year: the span's days, its whole months
    SELECT extract(year FROM d)::int AS year,
           bit_or(set_bit(0::bit(366), extract(doy FROM d)::int - 1, 1)) AS days,
           bit_or(CASE WHEN m.month IS NULL THEN 0
                       ELSE 1 << (extract(month FROM d)::int - 1) END) AS months
    FROM span
    CROSS JOIN generate_series(lo::timestamp, hi::timestamp - interval '1 day', '1 day') d
    LEFT JOIN months m ON m.month = date_trunc('month', d)::date
    GROUP BY 1),
f AS MATERIALIZED (  -- what the charges make, per account and day
    SELECT f.*, tv.tariff_id FROM span, charge_level_days(span.lo, span.hi) f
    LEFT JOIN tariff_versions tv ON tv.tariff_version_id = f.tariff_version_id),
fm AS MATERIALIZED (  -- per account and whole month
    SELECT account_id, date_trunc('month', day::timestamp)::date AS day, service, zone,
           currency, tariff_version_id, tariff_id, {_SUMS}
    FROM f WHERE date_trunc('month', day::timestamp)::date IN (SELECT month FROM months)
    GROUP BY 1, 2, 3, 4, 5, 6, 7),
r AS MATERIALIZED (  -- the daily rollups of the span, kept and deltas
    SELECT r.*, tv.tariff_id FROM span, charge_rollups r
    LEFT JOIN tariff_versions tv ON tv.tariff_version_id = r.tariff_version_id
    WHERE r.day >= span.lo AND r.day < span.hi),
mr AS MATERIALIZED (  -- the monthly rollups of the whole months, kept and deltas
    SELECT r.*, tv.tariff_id FROM charge_rollups_monthly r
    LEFT JOIN tariff_versions tv ON tv.tariff_version_id = r.tariff_version_id
    WHERE r.day IN (SELECT month FROM months)),
rd AS MATERIALIZED (  -- the daily rows of the accounts with deltas, per account × day × group
    {_grouped("r a WHERE a.account_id IN (SELECT account_id FROM r WHERE NOT compacted)",
              "a.account_id, a.day", _DELTA_SUMS)}),
rw AS MATERIALIZED (
    SELECT account_id, date_trunc('week', day::timestamp)::date AS day, {_GROUP_COLS},
           sum(amount_micros) AS amount_micros, sum(records) AS records, sum(units) AS units,
           bool_or(kept) AS kept
    FROM rd GROUP BY 1, 2, 3, 4, 5, 6, 7, 8),
md AS MATERIALIZED (  -- the same of the monthly rows
    {_grouped("mr a WHERE a.account_id IN (SELECT account_id FROM mr WHERE NOT compacted)",
              "a.account_id, a.day", _DELTA_SUMS)})"""

_DAILY = _compare(
    "charge_rollups", _ROLLUP_KEYS, _ROLLUP_SUMS, "SELECT * FROM f",
    f"SELECT {', '.join(_ROLLUP_KEYS)}, {_SUMS} FROM r GROUP BY 1, 2, 3, 4, 5, 6")
_MONTHLY = _compare(
    "charge_rollups_monthly", _ROLLUP_KEYS, _ROLLUP_SUMS, "SELECT * FROM fm",
    f"SELECT {', '.join(_ROLLUP_KEYS)}, {_SUMS} FROM mr GROUP BY 1, 2, 3, 4, 5, 6")
_HOUR = """to_char(t.hour AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:00"Z"')"""
_HOURLY = _compare(
    "charge_hour_totals", ("hour", "currency"),
    ("charges", "reversals", "charged_micros", "reversed_micros"),
    f"SELECT {_HOUR} AS hour, currency, charges, reversals, charged_micros, reversed_micros"
    " FROM span, charge_level_hours(span.lo, span.hi) t",
    f"SELECT {_HOUR} AS hour, currency, charges, reversals, charged_micros, reversed_micros"
    " FROM span, charge_hour_totals t WHERE t.hour >= span.lo::timestamp AT TIME ZONE 'UTC'"
    " AND t.hour < span.hi::timestamp AT TIME ZONE 'UTC'").replace(
        "abs(coalesce(e[1], 0) - coalesce(fo[1], 0))",
        "abs(coalesce(e[3] + e[4], 0) - coalesce(fo[3] + fo[4], 0))")
_TOTALS = _compare(
    "charge_totals", _ROLLUP_KEYS[1:], _ROLLUP_SUMS,
    f"SELECT {', '.join(_ROLLUP_KEYS[1:])}, {_SUMS} FROM f GROUP BY 1, 2, 3, 4, 5",
    f"SELECT {', '.join(_ROLLUP_KEYS[1:])}, {', '.join(_ROLLUP_SUMS)}"
    " FROM span, charge_totals WHERE day >= span.lo AND day < span.hi"
    f" UNION ALL SELECT {', '.join(_ROLLUP_KEYS[1:])}, {', '.join(_ROLLUP_SUMS)}"
    " FROM r WHERE NOT compacted")


def _group_level(level: str, expected: str, deltas_from: str, where: str) -> str:
    """A level per period × group with distinct accounts: its rows plus, per group, the
    deltas' sums and the accounts of a delta the period's kept rows of the group lack
    (``deltas_from`` holds a row per account × period × group), against ``expected``."""
    keys = ("day", *_GROUP_KEYS)
    return _compare(
        level, keys, _LEVEL_SUMS, expected,
        f"SELECT day, {_GROUP_COLS}, {_LEVEL_COLS} FROM span, {level} WHERE {where}"
        f" UNION ALL SELECT day, {_GROUP_COLS}, coalesce(sum(amount_micros), 0),"
        " coalesce(sum(records), 0), coalesce(sum(units), 0),"
        " count(*) FILTER (WHERE NOT kept)"
        f" FROM span, {deltas_from} WHERE {where} GROUP BY 1, 2, 3, 4, 5, 6, 7")


_ACCOUNTS = ("sum(amount_micros) AS amount_micros, sum(records) AS records,"
             " sum(units) AS units, count(DISTINCT account_id) AS accounts")
_DAY_TOTALS = _group_level(
    "charge_day_totals", _grouped("f a", "a.day", _ACCOUNTS), "rd",
    "day >= span.lo AND day < span.hi")
_WEEK_TOTALS = _group_level(
    "charge_week_totals",
    f"SELECT week AS day, {_GROUP_COLS}, {_LEVEL_COLS} FROM span, (" + _grouped(
        "(SELECT f.*, date_trunc('week', f.day::timestamp)::date AS week FROM f) a",
        "a.week", _ACCOUNTS) + ") w WHERE week >= span.lo AND week + 7 <= span.hi",
    "rw", "day >= span.lo AND day + 7 <= span.hi")
_MONTH_TOTALS = _group_level(
    "charge_month_totals", _grouped("fm a", "a.day", _ACCOUNTS), "md",
    "day IN (SELECT month FROM months)")
_ACCOUNT_MONTHS = _compare(
    "charge_account_months", ("account_id", "day", "currency"),
    ("amount_micros", "records", "units"),
    "SELECT account_id, day, currency, sum(amount_micros) AS amount_micros,"
    " sum(records) AS records, sum(units) AS units FROM fm GROUP BY 1, 2, 3",
    "SELECT account_id, day, currency, amount_micros, records, units"
    " FROM charge_account_months WHERE day IN (SELECT month FROM months)"
    " UNION ALL SELECT account_id, day, currency, amount_micros, records, units"
    " FROM mr WHERE NOT compacted")
_BIT_KEYS = ("account_id", *_GROUP_KEYS)
_DAY_BIT = "set_bit(0::bit(366), extract(doy FROM day)::int - 1, 1)::varbit"
_MONTH_BIT = "reverse((1 << (extract(month FROM day)::int - 1))::bit(12)::text)::varbit"
_YEAR_BITS = "(SELECT {t}.*, extract(year FROM day)::int AS year, {bit} AS bit FROM {t}) a"
_DAY_BITS = _bits(
    "charge_account_days", _BIT_KEYS,
    _grouped(_YEAR_BITS.format(t="f", bit=_DAY_BIT), "a.account_id, a.year",
             "bit_or(a.bit) AS bits"),
    f"SELECT {', '.join('p.' + k for k in _BIT_KEYS)}, p.year, (p.days & m.days)::varbit AS bits"
    " FROM charge_account_days p JOIN masks m ON m.year = p.year"
    " AND p.days & m.days <> 0::bit(366)"
    f" UNION ALL SELECT {', '.join(_BIT_KEYS)}, extract(year FROM day)::int, {_DAY_BIT}"
    " FROM rd WHERE fresh", "day")
_MONTH_BITS = _bits(
    "charge_account_presence", _BIT_KEYS,
    _grouped(_YEAR_BITS.format(t="fm", bit=_MONTH_BIT), "a.account_id, a.year",
             "bit_or(a.bit) AS bits"),
    f"SELECT {', '.join('p.' + k for k in _BIT_KEYS)}, p.year,"
    " reverse((p.months & m.months)::bit(12)::text)::varbit AS bits"
    " FROM charge_account_presence p JOIN masks m ON m.year = p.year"
    " AND p.months & m.months <> 0"
    f" UNION ALL SELECT {', '.join(_BIT_KEYS)}, extract(year FROM day)::int, {_MONTH_BIT}"
    " FROM md WHERE fresh", "month")

LEVELS = SqlControl(
    name="rollups.levels", version=1, family="rollups",
    title="every rollup level (kept rows + deltas) equals what the charges make",
    sql=_WITH + "\n" + "\nUNION ALL".join((
        _DAILY, _MONTHLY, _HOURLY, _TOTALS, _DAY_TOTALS, _WEEK_TOTALS, _MONTH_TOTALS,
        _ACCOUNT_MONTHS, _DAY_BITS, _MONTH_BITS)),
    lock_shared=compaction_lock.LOCK,
)

CONTROLS = (LEVELS,)
