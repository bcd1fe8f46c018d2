"""Anomaly flags from the rollups: a spike and a silence found and explained with their
numbers, a drop too shallow for any one or two days found by the sequential drop test over
its three days, a steady account left alone, flags stored once with outbox events, reviewed by an
operator through the API."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from billing_oss.core.errors import Conflict
from billing_oss.server.analytics import anomalies, plots, reports
from tests.charge_seed import insert_charges
from tests.integration.api_harness import Api, live_api

FIRST = dt.date(2026, 1, 5)  # a Monday; seven weeks of history before the scored day
SCORED = dt.date(2026, 2, 23)  # a Monday


async def charge_day(pool: asyncpg.Pool, account: str, day: dt.date, n: int,
                     zone: str = "national", amount: int = 100_000) -> None:
    """``n`` voice calls of ``account`` on ``day``, each charged ``amount`` in ``zone``."""
    async with pool.acquire() as conn, conn.transaction():
        for table in ("usage_records", "charges"):
            await conn.execute("SELECT ensure_month_partition($1::regclass, $2)", table, day)
        ids = [await conn.fetchval("SELECT nextval('usage_id_seq')") for _ in range(n)]
        times = [dt.datetime.combine(day, dt.time(9), dt.UTC) + dt.timedelta(minutes=i)
                 for i in range(n)]
        await conn.executemany(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind, duration_s) VALUES ($1, $2, $3, 'test', $4, 'voice', 60)",
            [(account, u, t, f"{account}-{u}") for u, t in zip(ids, times, strict=True)])
        await insert_charges(conn, ("account_id", "event_time", "usage_id", "kind",
                                    "amount_micros", "currency", "zone"),
                             [(account, t, u, "charge", amount, "EUR", zone)
                              for u, t in zip(ids, times, strict=True)])


@pytest.fixture(scope="module")
async def history(pool: asyncpg.Pool) -> asyncpg.Pool:
    day = FIRST
    while day < SCORED:
        weekend = day.weekday() >= 5
        await charge_day(pool, "SPIKY", day, 4 if weekend else 10)
        await charge_day(pool, "QUIET", day, 20)
        await charge_day(pool, "STEADY", day, 30 + day.day % 3)
        # 12 a day, then 4 on each of the scored day's last three days
        await charge_day(pool, "FADING", day, 4 if (SCORED - day).days < 3 else 12)
        day += dt.timedelta(days=1)
    await charge_day(pool, "SPIKY", SCORED, 10)
    await charge_day(pool, "SPIKY", SCORED, 50, zone="premium")  # the night's IRSF burst
    await charge_day(pool, "STEADY", SCORED, 31)  # QUIET sends nothing: a broken feed
    await charge_day(pool, "FADING", SCORED, 4)
    return pool


async def test_flags_explain_themselves_and_are_stored_once(history: asyncpg.Pool) -> None:
    flags = await anomalies.run(history, first=SCORED, last=SCORED)
    found = {(f.account_id, f.metric, f.direction) for f in flags}
    assert found == {("SPIKY", "records", "spike"), ("SPIKY", "amount", "spike"),
                     ("QUIET", "records", "drop"), ("QUIET", "amount", "drop"),
                     ("FADING", "records", "drop"), ("FADING", "amount", "drop")}
    spike = next(f for f in flags if f.account_id == "SPIKY" and f.metric == "records")
    assert spike.explanation.startswith(
        "60 voice records on Monday 2026-02-23, most to zone premium (50): 6.0× the expected "
        "10.0 for Mondays from 6 weeks (score +"), spike.explanation
    money = next(f for f in flags if f.account_id == "SPIKY" and f.metric == "amount")
    assert "6 EUR charged for voice" in money.explanation and money.observed == "6"
    quiet = next(f for f in flags if f.account_id == "QUIET" and f.metric == "records")
    assert quiet.explanation.startswith("0 voice records on Monday 2026-02-23: 0.0× the")
    assert quiet.score < 0 and all(f.state == "new" for f in flags)
    # money at a third of a steady amount is the money score's; the records' three days
    # are the drop test's
    fading = next(f for f in flags if f.account_id == "FADING" and f.metric == "records")
    assert fading.explanation.startswith(
        "12 voice records over the 3 days to Monday 2026-02-23: 33 % of the expected 36.0; a "
        "fall to 25 % makes them "), fading.explanation
    assert (fading.observed, fading.baseline) == ("12", "36") and fading.score < 0
    events = await history.fetch(
        "SELECT stream, payload FROM outbox_events WHERE type = 'anomaly.flagged'")
    assert sorted(e["stream"] for e in events) == ["acct:FADING", "acct:FADING", "acct:QUIET",
                                                  "acct:QUIET", "acct:SPIKY", "acct:SPIKY"]
    # Scoring the day again adds nothing.
    assert await anomalies.run(history, first=SCORED, last=SCORED) == []
    assert await history.fetchval("SELECT count(*) FROM anomaly_flags") == 6
    assert await history.fetchval("SELECT count(*) FROM outbox_events") == 6


async def test_review_once(history: asyncpg.Pool) -> None:
    [flag] = [f for f in await anomalies.find(history, account="QUIET")
              if f.metric == "records"]
    done = await anomalies.review(history, flag.flag_id, "confirmed", "test:ops")
    assert done.state == "confirmed" and done.state_changed_by == "test:ops"
    again = await anomalies.review(history, flag.flag_id, "confirmed", "test:ops")
    assert again == done
    with pytest.raises(Conflict):
        await anomalies.review(history, flag.flag_id, "dismissed", "test:ops")
    assert await history.fetchval(
        "SELECT count(*) FROM outbox_events WHERE type = 'anomaly.reviewed'") == 1


@pytest.fixture(scope="module")
async def api(history: asyncpg.Pool, database_url: str) -> AsyncIterator[Api]:
    async with live_api(history, database_url) as client:
        yield client


async def test_http_list_detect_review(api: Api, history: asyncpg.Pool) -> None:
    status, body = await api.call("POST", "/v1/anomalies/detect", "operator",
                                  json={"from": "2026-02-23", "to": "2026-02-24"})
    assert status == 200 and body["flagged"] == [] and "median and MAD" in body["method"]
    status, body = await api.call("GET", "/v1/anomalies", "viewer",
                                  params={"state": "new", "limit": "1"})
    assert status == 200 and len(body["items"]) == 1 and body["next_cursor"]
    flag_id = body["items"][0]["flag_id"]
    status, body = await api.call("POST", f"/v1/anomalies/{flag_id}/review", "operator",
                                  json={"state": "dismissed"})
    assert status == 200 and body["state"] == "dismissed"
    status, body = await api.call("POST", f"/v1/anomalies/{flag_id}/review", "operator",
                                  json={"state": "confirmed"})
    assert status == 409
    status, _ = await api.call("POST", "/v1/anomalies/999999/review", "operator",
                               json={"state": "confirmed"})
    assert status == 404
    status, _ = await api.call("POST", "/v1/anomalies/detect", "viewer",
                               json={"from": "2026-02-23", "to": "2026-02-24"})
    assert status == 403


async def test_forecast_from_the_rollups_with_intervals_and_backtest(
    history: asyncpg.Pool, api: Api, tmp_path: Path
) -> None:
    report = await reports.build(history, "forecast", by=["account"], period="day",
                                 start=FIRST, end=SCORED, horizon=7)
    steady = [p for p in report.forecast if p.key == {"account": "STEADY"}]
    assert [p.day for p in steady] == [SCORED + dt.timedelta(days=i) for i in range(7)]
    for p in steady:  # 30-32 calls a day at 0.10 EUR
        assert Decimal("2.8") < Decimal(p.mean) < Decimal("3.4")
        assert (Decimal(p.low95) <= Decimal(p.low80) <= Decimal(p.mean) <= Decimal(p.high80)
                <= Decimal(p.high95))
    [test] = [b for b in report.backtests if b.key == {"account": "STEADY"}]
    assert test.days == 7 and test.wape is not None and test.wape < 0.1
    assert "ETS" in report.method and "WAPE" in report.method
    plots.save(report, tmp_path / "forecast.png")
    assert (tmp_path / "forecast.png").stat().st_size > 10_000
    status, body = await api.call("GET", "/v1/reports/forecast", "viewer", params={
        "from": str(FIRST), "to": str(SCORED), "horizon": "3"})
    assert status == 200 and len(body["forecast"]) == 3 and body["backtests"][0]["days"] == 3
