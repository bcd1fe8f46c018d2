"""Rating controls: is every stored amount the one the catalog gives?

- ``rating.rerate_sample``: a random sample (``rerate_sample``) of live charges is rated
  again with the catalog in force (the tariff version effective at each event time, on the
  plan of the subscription then); each must reproduce the stored amount, currency and tariff
  version exactly. At stake: |stored − rerated|. A tariff price edited under stored charges,
  or a version published retroactively without a rerate, fails here.
- ``rating.zero_amount``: zero-amount charges of usage with a positive quantity, rated again
  (up to ``rerate_sample`` of them): the tariff must indeed give zero.
  Both leave out usage whose numbers are pseudonymised (``server.retention``): without the
  numbers there is no account or zone to rate it with.
- ``rating.sign``: charges are never negative and reversals never positive.
- ``rating.unsubscribed_usage``: usage of an account that had no subscription in force at
  the event time. At stake: what that usage was charged.
- ``rating.suspense_aging``: records in suspense for more than ``suspense_age_days``; each is
  priced by rating it with today's catalog where that succeeds (else it counts as unpriced).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from billing_oss.core.ports import Charge, Rater
from billing_oss.core.records import UsageRecord
from billing_oss.server.assurance.model import Context, Offender, Outcome, bind, decimal_text
from billing_oss.server.assurance.sql_control import SqlControl
from billing_oss.server.pipeline.raters import load_rater
from billing_oss.server.retention.repo import pseudonymised
from billing_oss.server.store.pool import Connection

_USAGE_FIELDS = ("record_key", "source", "kind", "duration_s", "volume_up", "volume_down",
                 "quantity", "unit", "calling", "called", "imsi", "msisdn", "charge",
                 "partial_seq")
_SELECT = ("SELECT c.account_id, c.charge_id, c.amount_micros, trim(c.currency) AS currency,"
           " c.tariff_version_id, u.event_time, u.attrs::text AS attrs, "
           + ", ".join(f"u.{f}" for f in _USAGE_FIELDS))
# Roaming usage of our subscribers is priced by the partner's charge plus markup
# (server/settlement/roaming.py), not by the catalog: re-rating it would find a difference
# that is none. Pseudonymised usage no longer resolves to its account's plan.
_LIVE = ("c.kind = 'charge' AND c.created_at <= $1 AND NOT EXISTS (SELECT 1 FROM charges r"
         " WHERE r.account_id = c.account_id AND r.event_time = c.event_time"
         " AND r.reverses_charge_id = c.charge_id) AND u.source NOT LIKE 'roaming:%'"
         " AND NOT " + pseudonymised("u"))


class RerateControl(msgspec.Struct, frozen=True, kw_only=True):
    """Rate the charges ``sql`` selects again; an offender is one that comes out different."""

    name: str
    version: int
    family: str
    title: str
    sql: str  # $1 as-of, $2 settings, $3 how many rows at most, $4 sample percentage

    async def evaluate(self, conn: Connection, ctx: Context) -> Outcome:
        limit = ctx.settings.rerate_sample
        percent = await _sample_percent(conn, limit)
        rows = await conn.fetch(self.sql, ctx.as_of, json.dumps(ctx.settings.params()),
                                limit, percent)
        offenders = await _differences(conn, rows) if rows else []
        stake: dict[str, int] = {}
        for o in offenders:
            if o.currency is not None and o.at_stake_micros is not None:
                stake[o.currency] = stake.get(o.currency, 0) + o.at_stake_micros
        offenders.sort(key=lambda o: o.object)
        query = bind(self.sql, ctx.as_of, ctx.settings).replace("$3", str(limit)).replace(
            "$4", str(percent))
        return Outcome(checked=len(rows), offending=len(offenders), unpriced=0,
                       at_stake_micros=stake, evidence=offenders[:ctx.settings.evidence_limit],
                       query=query)


async def _sample_percent(conn: Connection, want: int) -> float:
    """TABLESAMPLE percentage that yields about twice ``want`` rows (100 for small tables)."""
    estimate = await conn.fetchval(
        "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'charges'::regclass")
    if not estimate or estimate <= want * 20:
        return 100.0
    return round(min(100.0, 200.0 * want / float(estimate)), 4)


async def current_rater(conn: Connection) -> Rater:
    return await load_rater(conn)


async def _differences(conn: Connection, rows: Sequence[asyncpg.Record]) -> list[Offender]:
    rater = await current_rater(conn)
    records = [usage_record(r) for r in rows]
    outcomes = await asyncio.to_thread(rater.rate, records)
    found = []
    for row, outcome in zip(rows, outcomes, strict=True):
        stored = (row["amount_micros"], row["currency"], row["tariff_version_id"])
        obj = f"charge:{row['account_id']}/{row['charge_id']}"
        if not isinstance(outcome, Charge):
            found.append(Offender(
                object=obj, currency=row["currency"], at_stake_micros=abs(row["amount_micros"]),
                detail=f"stored {decimal_text(row['amount_micros'])} {row['currency']}, but the"
                       f" catalog no longer rates it: {outcome.reason.value} {outcome.detail}"))
            continue
        again = (outcome.amount_micros, outcome.currency, outcome.tariff_version_id)
        if again == stored:
            continue
        at_stake = abs(outcome.amount_micros - row["amount_micros"]) \
            if outcome.currency == row["currency"] else abs(row["amount_micros"])
        found.append(Offender(
            object=obj, currency=row["currency"], at_stake_micros=at_stake,
            detail=f"stored {decimal_text(row['amount_micros'])} {row['currency']} (tariff"
                   f" version {row['tariff_version_id']}), the catalog in force gives"
                   f" {decimal_text(outcome.amount_micros)} {outcome.currency} (tariff"
                   f" version {outcome.tariff_version_id})"))
    return found


def usage_record(row: Any) -> UsageRecord:
    values = {k: row[k] for k in _USAGE_FIELDS if row[k] is not None}
    if "quantity" in values:
        values["quantity"] = str(values["quantity"])
    if "charge" in values:
        values["charge"] = str(values["charge"])
    values["event_time"] = row["event_time"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    values["attrs"] = json.loads(row["attrs"]) if row["attrs"] else {}
    return UsageRecord(**values)


RERATE_SAMPLE = RerateControl(
    name="rating.rerate_sample", version=3, family="rating",
    title="a random sample of charges re-rated with the catalog in force reproduces them",
    sql=_SELECT + """
FROM charges c TABLESAMPLE SYSTEM ($4)
JOIN usage_records u ON u.account_id = c.account_id AND u.event_time = c.event_time
     AND u.usage_id = c.usage_id
WHERE """ + _LIVE + """ AND $2::jsonb IS NOT NULL
ORDER BY random() LIMIT $3""",
)

ZERO_AMOUNT = RerateControl(
    name="rating.zero_amount", version=3, family="rating",
    title="zero-amount charges are zero by the tariff",
    sql=_SELECT + """
FROM charges c JOIN usage_records u ON u.account_id = c.account_id
     AND u.event_time = c.event_time AND u.usage_id = c.usage_id
WHERE c.amount_micros = 0 AND """ + _LIVE + """
  AND (u.kind IN ('sms', 'event') OR coalesce(u.duration_s, 0) + coalesce(u.volume_up, 0)
       + coalesce(u.volume_down, 0) + coalesce(u.quantity, 0) > 0)
  AND $2::jsonb IS NOT NULL AND $4::float8 > 0
ORDER BY c.charge_id LIMIT $3""",
)

SIGN = SqlControl(
    name="rating.sign", version=1, family="rating",
    title="charges are never negative, reversals never positive",
    sql="""
SELECT format('charge:%s/%s', account_id, charge_id) AS object, trim(currency) AS currency,
       abs(amount_micros) AS at_stake_micros,
       format('a %s of %s at %s', kind, amount_micros, event_time) AS detail
FROM charges
WHERE ((kind = 'charge' AND amount_micros < 0) OR (kind = 'reversal' AND amount_micros > 0))
  AND created_at <= $1 AND $2::jsonb IS NOT NULL""",
)

# Subscriptions live on the coordinator (a local table on Citus) and usage is distributed:
# the subscriptions are read once (an intermediate result Citus sends to the workers) and
# usage is matched against them there; only the unsubscribed usage's charges are summed.
UNSUBSCRIBED_USAGE = SqlControl(
    name="rating.unsubscribed_usage", version=2, family="rating",
    title="usage belongs to an account with a subscription in force at the event time",
    sql="""
WITH subs AS MATERIALIZED (
    SELECT account_id, valid_from, valid_to FROM subscriptions),
unsubscribed AS MATERIALIZED (
    SELECT u.account_id, u.usage_id, u.event_time, u.kind, u.source, u.record_key
    FROM usage_records u
    LEFT JOIN subs s ON s.account_id = u.account_id AND s.valid_from <= u.event_time
         AND (s.valid_to IS NULL OR u.event_time < s.valid_to)
    WHERE u.ingested_at <= $1 AND $2::jsonb IS NOT NULL AND s.account_id IS NULL),
charged AS MATERIALIZED (
    SELECT ch.account_id, ch.event_time, ch.usage_id, trim(ch.currency) AS currency,
           sum(ch.amount_micros)::bigint AS micros
    FROM charges ch JOIN unsubscribed u ON ch.account_id = u.account_id
         AND ch.event_time = u.event_time AND ch.usage_id = u.usage_id
    GROUP BY ch.account_id, ch.event_time, ch.usage_id, trim(ch.currency))
SELECT format('usage:%s/%s', u.account_id, u.usage_id) AS object, c.currency,
       coalesce(c.micros, 0) AS at_stake_micros,
       format('%s at %s (record %s/%s): no subscription of %s in force', u.kind, u.event_time,
              u.source, u.record_key, u.account_id) AS detail
FROM unsubscribed u LEFT JOIN charged c ON c.account_id = u.account_id
     AND c.event_time = u.event_time AND c.usage_id = u.usage_id""",
)


class SuspenseAging(msgspec.Struct, frozen=True, kw_only=True):
    name: str = "rating.suspense_aging"
    version: int = 1
    family: str = "rating"
    title: str = "no record stays in suspense longer than suspense_age_days"
    sql: str = """
SELECT suspense_id, source, record_key, nullif(account_id, '') AS account_id, reason, detail,
       created_at, record::text AS record
FROM suspense
WHERE state = 'open'
  AND created_at <= $1::timestamptz - make_interval(days => ($2::jsonb->>'suspense_age_days')::int)
ORDER BY suspense_id"""

    async def evaluate(self, conn: Connection, ctx: Context) -> Outcome:
        rows = await conn.fetch(self.sql, ctx.as_of, json.dumps(ctx.settings.params()))
        prices: list[Charge | None] = [None] * len(rows)
        records = [(i, _suspended(r["record"])) for i, r in enumerate(rows)]
        rateable = [(i, rec) for i, rec in records if rec is not None]
        if rateable:
            rater = await current_rater(conn)
            outcomes = await asyncio.to_thread(rater.rate, [rec for _, rec in rateable])
            for (i, _), outcome in zip(rateable, outcomes, strict=True):
                prices[i] = outcome if isinstance(outcome, Charge) else None
        offenders: list[Offender] = []
        stake: dict[str, int] = {}
        for row, price in zip(rows, prices, strict=True):
            age = (ctx.as_of - row["created_at"]).days
            offenders.append(Offender(
                object=f"suspense:{row['suspense_id']}",
                currency=price.currency if price else None,
                at_stake_micros=price.amount_micros if price else None,
                detail=f"{row['reason']} for {age} days ({row['source']}/{row['record_key']}):"
                       f" {row['detail']}"))
            if price is not None:
                stake[price.currency] = stake.get(price.currency, 0) + price.amount_micros
        offenders.sort(key=lambda o: o.object)
        return Outcome(checked=None, offending=len(offenders),
                       unpriced=sum(1 for p in prices if p is None), at_stake_micros=stake,
                       evidence=offenders[:ctx.settings.evidence_limit],
                       query=bind(self.sql, ctx.as_of, ctx.settings))


def _suspended(text: str | None) -> UsageRecord | None:
    if not text:
        return None
    try:
        return msgspec.convert(json.loads(text), UsageRecord)
    except (msgspec.ValidationError, ValueError):
        return None


CONTROLS = (RERATE_SAMPLE, ZERO_AMOUNT, SIGN, UNSUBSCRIBED_USAGE, SuspenseAging())
