"""Anomaly flags from the daily rollups: the robust seasonal baseline (``detect``) per
account × service, on the records charged and on the money, each flag explained in words
with its numbers, stored with its state (new → confirmed | dismissed) and emitted as an
outbox event in the same transaction.

Records are also watched by a sequential drop test (``detect.drop_cusum``): a fall that
lasts adds up its evidence day by day, and its flag tells the run it summed ("9 voice
records over the 3 days to …, 28 % of the expected 32.4"). A day both tests flag carries the
count score's flag.

Hourly scoring needs hourly series, which the daily rollups do not keep: it is measured in
``perf/eval_analytics.py`` on synthetic data, not run here.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import numpy as np

from billing_oss.core.errors import Conflict, NotFound
from billing_oss.core.money import format_micros
from billing_oss.server.analytics import detect, repo, reports
from billing_oss.server.integrations import outbox
from billing_oss.server.integrations.events import AnomalyFlagged, AnomalyReviewed
from billing_oss.server.store.pool import Connection

WEEKS = 6  # same-weekday history the baseline reads
THRESHOLD = detect.THRESHOLD  # |count score| that flags records
AMOUNT_THRESHOLD = 5.0  # |robust score| that flags money (no count model for micro-units)
MIN_SCALE = 0.1  # a 10 % change of money is at most one unit of score (log scale)
MIN_HISTORY = 3  # same weekdays that must be known
METHOD = (f"seasonal baseline: the same weekday over the last {WEEKS} weeks (daily rollups); "
          "records: the negative-binomial tail probability of the day and of the last two days "
          "summed around the expected count: the level of all weekdays' trimmed means times "
          "the weekday profile shrunk toward the shapes all series share (at the last two "
          f"weeks' level after a level shift), as a normal quantile, |score| ≥ {THRESHOLD:g} "
          f"and at least {detect.MATERIAL:g}× or at most 1/{detect.MATERIAL:g} of the expected "
          "count; and a sequential drop test: a CUSUM of each day's negative-binomial "
          f"log-likelihood ratio of a fall to {detect.DROP_DEPTH * 100:.0f} % of the expected "
          f"count, flagged at ≥ {detect.DROP_THRESHOLD:g} (then from 0 again), its score the "
          "run's sum against its expected sum (both measured on a synthetic operator, "
          "perf/eval_analytics.py: 0.025 false alarms per 1,000 account-days, recall 0.98 on "
          "spikes and 0.84 on drops); money: log(1 + value) against the median and MAD, "
          f"|score| ≥ {AMOUNT_THRESHOLD:g}")
STATES = ("new", "confirmed", "dismissed")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class Flag(msgspec.Struct, frozen=True, kw_only=True):
    flag_id: int
    account_id: str
    service: str
    metric: str
    granularity: str
    period_start: dt.datetime
    observed: str
    baseline: str
    mad: str
    score: float
    direction: str
    method: str
    explanation: str
    state: str
    created_at: dt.datetime
    state_changed_at: dt.datetime | None
    state_changed_by: str | None


def flag_of(row: asyncpg.Record) -> Flag:
    values = dict(row)
    for name in ("observed", "baseline", "mad"):
        values[name] = _text(values[name])
    return Flag(**values)


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


async def run(pool: asyncpg.Pool, *, first: dt.date, last: dt.date,
              threshold: float = THRESHOLD,
              amount_threshold: float = AMOUNT_THRESHOLD) -> list[Flag]:
    """Score the days ``first``..``last`` of every account × service (records, and money
    per currency) and store the new flags; flags already stored are left as they are."""
    reports.check_days(first, last + dt.timedelta(days=1))
    start = first - dt.timedelta(weeks=WEEKS)
    rows = await repo.daily_series(pool, start, last + dt.timedelta(days=1))
    days = (last - start).days + 1
    series: dict[tuple[str, str, str, str], np.ndarray] = {}
    for r in rows:
        for metric in ("records", "amount"):
            key = (r["account_id"], r["service"], metric, r["currency"])
            values = series.setdefault(key, np.zeros(days))
            values[(r["day"] - start).days] += (r["records"] if metric == "records"
                                                else max(r["amount_micros"], 0))
    if not series:
        return []
    found: list[Flag] = []
    offset = (first - start).days
    for metric, limit in (("records", threshold), ("amount", amount_threshold)):
        keys = [k for k in series if k[2] == metric]
        if not keys:
            continue
        matrix = np.stack([series[k] for k in keys])
        drops: detect.DropRun | None = None
        if metric == "records":  # counts: the tail probability the evaluation measures
            # one expectation for both tests of the counts
            expectation = detect.expected_counts(matrix, 7, WEEKS, MIN_HISTORY)
            scores, base = detect.count_scores(matrix, 7, WEEKS, MIN_HISTORY,
                                               expected=expectation)
            drops = detect.drop_cusum(matrix, 7, WEEKS, MIN_HISTORY, expected=expectation)
            run_scores = drops.run_scores()
        else:
            scores, base = detect.robust_scores(matrix, 7, WEEKS, MIN_HISTORY, log=True,
                                                min_scale=MIN_SCALE)
        for i, key in enumerate(keys):
            for t in range(offset, days):
                score = scores[i, t]
                day = start + dt.timedelta(days=t)
                if not np.isnan(score) and abs(score) >= limit:
                    flag = await _store(pool, key, day, float(score), matrix[i, t],
                                        float(base.median[i, t]), float(base.mad[i, t]))
                elif drops is not None and drops.alarm[i, t]:
                    run_days = int(drops.days[i, t])
                    observed, expected = drops.observed[i, t], float(drops.expected[i, t])
                    flag = await _store(
                        pool, key, day, float(run_scores[i, t]), observed, expected,
                        float(base.mad[i, t]),
                        _explain_drop(key[1], day, run_days, int(observed), expected,
                                      float(drops.statistic[i, t]),
                                      float(run_scores[i, t])))
                else:
                    continue
                if flag is not None:
                    found.append(flag)
    return found


async def _store(pool: asyncpg.Pool, key: tuple[str, str, str, str], day: dt.date,
                 score: float, observed: float, median: float, mad_log: float,
                 explanation: str | None = None) -> Flag | None:
    account, service, metric, currency = key
    direction = "spike" if score > 0 else "drop"
    observed_d = Decimal(int(observed))
    median_d = Decimal(str(round(median, 1)))
    if explanation is None:
        zones = await repo.daily_zones(pool, account, service, day)
        explanation = _explain(metric, service, currency, day, int(observed), median, score,
                               zones)
    if metric == "amount":  # money as decimal strings of the currency
        observed_text, median_text = format_micros(int(observed)), format_micros(round(median))
    else:
        observed_text, median_text = str(observed_d), str(median_d)
    row = {"account_id": account, "service": service, "metric": metric, "granularity": "day",
           "period_start": dt.datetime.combine(day, dt.time(), dt.UTC),
           "observed": Decimal(observed_text), "baseline": Decimal(median_text),
           "mad": Decimal(str(round(mad_log, 4))), "score": round(score, 2),
           "direction": direction, "method": METHOD, "explanation": explanation}
    async with pool.acquire() as conn, conn.transaction():
        flag_id = await repo.insert_flag(conn, row)
        if flag_id is None:
            return None
        await outbox.emit(conn, AnomalyFlagged(
            flag_id=flag_id, service=service, metric=metric, granularity="day",
            period_start=f"{day.isoformat()}T00:00:00Z",
            direction=direction, observed=observed_text, baseline=median_text,
            score=f"{score:.2f}", method=METHOD, explanation=explanation), account_id=account)
        stored = await repo.get_flag(conn, flag_id)
    assert stored is not None
    return flag_of(stored)


def _explain(metric: str, service: str, currency: str, day: dt.date, observed: int,
             median: float, score: float, zones: list[Any]) -> str:
    weekday = _WEEKDAYS[day.weekday()]
    ratio = (observed / median) if median > 0 else float("inf")
    times = f"{ratio:.1f}×" if ratio != float("inf") else "above a zero"
    if metric == "amount":
        what = f"{format_micros(observed)} {currency} charged for {service or 'usage'}"
        usual = f"the {WEEKS}-week median of {format_micros(round(median))} {currency}"
    else:
        what = f"{observed} {service or 'usage'} records"
        usual = f"the expected {median:.1f}"
    top = ""
    if zones and metric == "records" and score > 0 and zones[0]["records"] > 0:
        top = f", most to zone {zones[0]['zone'] or '(none)'} ({zones[0]['records']})"
    usual_for = f"{usual} for {weekday}s" + ("" if metric == "amount" else f" from {WEEKS} weeks")
    return f"{what} on {weekday} {day}{top}: {times} {usual_for} (score {score:+.1f})"


def _explain_drop(service: str, day: dt.date, days: int, observed: int, expected: float,
                  statistic: float, score: float) -> str:
    """A drop-test flag in words: the run it summed, its share of the expected count, and
    how much likelier the fall it looks for made those counts than no fall did."""
    weekday = _WEEKDAYS[day.weekday()]
    span = (f"on {weekday} {day}" if days == 1
            else f"over the {days} days to {weekday} {day}")
    share = observed / expected * 100 if expected > 0 else 0.0
    likelier = math.exp(min(statistic, 700.0))
    depth = detect.DROP_DEPTH * 100
    return (f"{observed} {service or 'usage'} records {span}: {share:.0f} % of the expected "
            f"{expected:.1f}; a fall to {depth:.0f} % makes them {likelier:,.0f} times likelier "
            f"than none (drop test, score {score:+.1f})")


async def review(pool: asyncpg.Pool, flag_id: int, state: str, actor: str) -> Flag:
    """An operator's verdict on a new flag (confirmed or dismissed), emitted as an event.
    The same verdict again changes nothing; another one on a reviewed flag is a conflict."""
    async with pool.acquire() as conn, conn.transaction():
        row = await repo.get_flag(conn, flag_id, lock=True)
        if row is None:
            raise NotFound(f"no anomaly flag {flag_id}")
        if row["state"] == state:
            return flag_of(row)
        if row["state"] != "new":
            raise Conflict(f"anomaly flag {flag_id} is already {row['state']}")
        await repo.set_flag_state(conn, flag_id, state, actor)
        await _emit_review(conn, row["account_id"], flag_id, state, actor)
        stored = await repo.get_flag(conn, flag_id)
    assert stored is not None
    return flag_of(stored)


async def _emit_review(conn: Connection, account: str, flag_id: int, state: str,
                       actor: str) -> None:
    await outbox.emit(conn, AnomalyReviewed(flag_id=flag_id, state=state, by=actor),
                      account_id=account)


async def find(db: repo.Db, *, state: str | None = None, account: str | None = None,
               after: int | None = None, limit: int = 50) -> list[Flag]:
    return [flag_of(r) for r in await repo.find_flags(db, state=state, account=account,
                                                      after=after, limit=limit)]
