"""Reports from the rollups against the raw charges, to the micro-unit, for every dimension
and period; the same through the CLI (table, JSON, CSV, plots) and the HTTP API; losing
segments with drivers that add up to the change."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
from collections import defaultdict
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from billing_oss.adapters.formats.items import FormatDecoder
from billing_oss.core.money import format_micros
from billing_oss.server import config
from billing_oss.server.analytics import repo, reports
from billing_oss.server.composition import read_catalog_file
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.pipeline.raters import build_rater
from billing_oss.server.store import catalog_repo
from tests.conftest import REPO
from tests.integration.api_harness import Api, live_api, seed_usage
from tests.integration.test_analytics_rollups import records, write_jsonl

START, END = dt.date(2026, 1, 1), dt.date(2026, 3, 1)
DIMENSIONS = [*repo.DIMENSIONS, "attrs.city"]


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool, tmp_path_factory: pytest.TempPathFactory) -> asyncpg.Pool:
    await catalog_repo.load_catalog(pool, read_catalog_file(REPO / "config/demo-catalog.json"))
    await pool.execute("UPDATE accounts SET attrs = attrs || '{\"segment\": \"consumer\"}'"
                       " WHERE account_id LIKE 'A%'")
    cfg = msgspec.structs.replace(config.load(env={}).pipeline, batch_size=17)
    pipeline = Pipeline(pool, cfg, rater_factory=build_rater,
                        decoders={"jsonl": FormatDecoder("jsonl")})
    path = write_jsonl(tmp_path_factory.mktemp("cdr") / "r.jsonl", records(500, 5))
    await pipeline.ingest_file(path, source="msc1", format="jsonl")
    # A second currency: money in USD is never added to EUR.
    await pool.execute("INSERT INTO accounts (account_id, currency) VALUES ('U1', 'USD')")
    for day in (3, 4, 4):
        await seed_usage(pool, "U1", f"2026-02-{day:02d}T23:30:00Z", amount_micros=1_234_567,
                         currency="USD")
    return pool


async def expected_revenue(pool: asyncpg.Pool, period: str, dim: str) -> dict[Any, list[Any]]:
    """(period, value, currency) → [micros, records] straight from the charges."""
    rows = await pool.fetch(
        "SELECT c.account_id, c.event_time, u.kind AS service, c.zone, rtrim(c.currency) AS"
        " currency, c.tariff_version_id, tv.tariff_id, a.attrs::text AS attrs, c.kind,"
        " c.amount_micros FROM charges c"
        " LEFT JOIN usage_records u USING (account_id, event_time, usage_id)"
        " LEFT JOIN tariff_versions tv USING (tariff_version_id)"
        " LEFT JOIN accounts a USING (account_id)")
    out: dict[Any, list[Any]] = defaultdict(lambda: [0, 0])
    for r in rows:
        day = r["event_time"].astimezone(dt.UTC).date()
        if not START <= day < END:
            continue
        attrs = json.loads(r["attrs"])
        value = {"account": r["account_id"], "service": r["service"], "zone": r["zone"],
                 "currency": r["currency"], "tariff": r["tariff_id"],
                 "tariff_version": None if r["tariff_version_id"] is None
                 else str(r["tariff_version_id"]),
                 "country": attrs.get("country"), "segment": attrs.get("segment"),
                 "attrs.city": attrs.get("city")}[dim]
        start = {"day": day, "month": day.replace(day=1), "total": None,
                 "week": day - dt.timedelta(days=day.weekday())}[period]
        acc = out[start.isoformat() if start else None, value, r["currency"]]
        acc[0] += r["amount_micros"]
        acc[1] += -1 if r["kind"] == "reversal" else 1
    return out


@pytest.mark.parametrize("period", ["day", "week", "month", "total"])
async def test_revenue_equals_raw_charges_for_every_dimension(
    seeded: asyncpg.Pool, period: str
) -> None:
    for dim in DIMENSIONS:
        report = await reports.build(seeded, "revenue", by=[dim], period=period,
                                     start=START, end=END)
        got = {(r.period, r.key[dim], r.currency): [r.amount, r.records] for r in report.rows}
        want = {k: [format_micros(v[0]), v[1]]
                for k, v in (await expected_revenue(seeded, period, dim)).items()}
        assert got == want, dim
        assert {r.currency for r in report.rows} == {"EUR", "USD"}


async def test_usage_and_top(seeded: asyncpg.Pool) -> None:
    usage = await reports.build(seeded, "usage", by=["account"], period="total",
                                start=START, end=END)
    assert usage.by == ["account", "service"]
    seconds = await seeded.fetchval(
        "SELECT sum(duration_s) FROM usage_records WHERE kind = 'voice' AND account_id = 'A1'")
    [row] = [r for r in usage.rows if r.key == {"account": "A1", "service": "voice"}]
    assert Decimal(row.units) == seconds
    top = await reports.build(seeded, "top", by=[], period="total", start=START, end=END,
                              top=2)
    eur = [r for r in top.rows if r.currency == "EUR"]
    assert len(eur) == 2 and Decimal(eur[0].amount) >= Decimal(eur[1].amount)
    assert [r.key["account"] for r in top.rows if r.currency == "USD"] == ["U1"]


async def test_segments_rank_losses_and_drivers_add_up(seeded: asyncpg.Pool) -> None:
    # February against January: the records span 27 Jan to 6 Feb, so every EUR segment
    # differs; whichever lost money is listed with three effects summing to its delta.
    report = await reports.build(seeded, "segments", by=["country"], period="total",
                                 start=dt.date(2026, 2, 1), end=dt.date(2026, 2, 6))
    assert report.segments, "some country lost revenue"
    deltas = [Decimal(d.delta) for d in report.segments]
    assert deltas == sorted(deltas) and all(x < 0 for x in deltas)
    for d in report.segments:
        assert (Decimal(d.accounts_effect) + Decimal(d.usage_effect)
                + Decimal(d.price_effect)) == Decimal(d.delta)
        assert Decimal(d.revenue) - Decimal(d.previous) == Decimal(d.delta)


async def test_unknown_dimension_is_refused(seeded: asyncpg.Pool) -> None:
    with pytest.raises(Exception, match="unknown dimension 'planet'"):
        await reports.build(seeded, "revenue", by=["planet"], period="day", start=START,
                            end=END)
    with pytest.raises(Exception, match="unknown dimension"):
        await reports.build(seeded, "revenue", by=["attrs.x'; drop"], period="day",
                            start=START, end=END)


async def cli(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "BILLING_OSS_DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        str(REPO / ".venv/bin/python") if (REPO / ".venv/bin/python").exists() else "python3",
        "-m", "billing_oss", "report", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_formats_and_plots(seeded: asyncpg.Pool, database_url: str,
                                     tmp_path: Path) -> None:
    span = ("--from", str(START), "--to", str(END))
    status, out, _ = await cli(database_url, "revenue", "--by", "zone", "--period", "total",
                               "--format", "csv", *span)
    assert status == 0
    got = {(r["zone"], r["currency"]): r["amount"] for r in csv.DictReader(io.StringIO(out))}
    want = await expected_revenue(seeded, "total", "zone")
    assert got == {(k[1] or "", k[2]): format_micros(v[0]) for k, v in want.items()}

    status, out, _ = await cli(database_url, "usage", "--by", "account", "--format", "json",
                               "--plot", str(tmp_path / "usage.png"), *span)
    assert status == 0 and json.loads(out)["report"] == "usage"
    assert (tmp_path / "usage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    status, out, _ = await cli(database_url, "revenue", "--by", "service", "--period", "day",
                               "--plot", str(tmp_path / "revenue.svg"), *span)
    assert status == 0 and out.splitlines()[0].split()[:3] == ["period", "service", "currency"]
    svg = (tmp_path / "revenue.svg").read_text()
    assert "Revenue (EUR) by day and service" in svg and "revenue (EUR)" in svg

    status, out, err = await cli(database_url, "revenue", "--by", "planet", *span)
    assert status == 1 and not out and err.count("\n") == 1 and "planet" in err
    status, _, err = await cli(database_url, "top", "--plot", str(tmp_path / "x.gif"))
    assert status == 1 and ".svg or .png" in err


@pytest.fixture(scope="module")
async def api(seeded: asyncpg.Pool, database_url: str) -> AsyncIterator[Api]:
    async with live_api(seeded, database_url) as client:
        yield client


async def test_http_report_and_problem(api: Api, seeded: asyncpg.Pool) -> None:
    status, body = await api.call("GET", "/v1/reports/revenue", "viewer", params={
        "by": "tariff", "period": "month", "from": str(START), "to": str(END)})
    assert status == 200, body
    want = await expected_revenue(seeded, "month", "tariff")
    assert {(r["period"], r["key"]["tariff"], r["currency"]): r["amount"]
            for r in body["rows"]} == {k: format_micros(v[0]) for k, v in want.items()}
    assert "charge_rollups" in body["method"]
    status, body = await api.call("GET", "/v1/reports/revenue", "viewer",
                                  params={"by": "planet"})
    assert status == 422 and "planet" in body["detail"]
    status, _ = await api.call("GET", "/v1/reports/nonsense", "viewer")
    assert status in (404, 422)


async def test_ranges_outside_the_calendar_are_refused(api: Api) -> None:
    for params in ({"from": "0001-01-01", "to": "2026-01-01"},
                   {"from": "2026-01-02", "to": "2026-01-01"},
                   {"from": "2000-01-01", "to": "2026-01-01"}):
        for report in ("revenue", "segments", "forecast"):
            status, body = await api.call("GET", f"/v1/reports/{report}", "viewer",
                                          params=params)
            assert status == 422, (report, params, body)
    status, _ = await api.call("POST", "/v1/anomalies/detect", "operator",
                               json={"from": "0001-01-01", "to": "0001-01-02"})
    assert status == 422


async def test_segments_against_their_forecast_from_the_raw_charges(
    seeded: asyncpg.Pool,
) -> None:
    start, end = dt.date(2026, 2, 1), dt.date(2026, 2, 6)
    report = await reports.build(seeded, "segments", by=["country"], period="total",
                                 start=start, end=end)
    history = 56  # max(56, 4 × 5 days)
    first = start - dt.timedelta(days=history)
    rows = await seeded.fetch(
        "SELECT c.event_time, rtrim(c.currency) AS currency, a.attrs->>'country' AS country,"
        " c.amount_micros FROM charges c LEFT JOIN accounts a USING (account_id)")
    series: dict[tuple[str | None, str], list[int]] = defaultdict(lambda: [0] * history)
    for r in rows:
        day = r["event_time"].astimezone(dt.UTC).date()
        if first <= day < start:
            series[r["country"], r["currency"]][(day - first).days] += r["amount_micros"]
    assert report.segments
    for d in report.segments:
        found = reports.segment_forecast(series[d.key["country"], d.currency], 5)
        assert found is not None, d
        predicted, method = found
        assert d.forecast == format_micros(predicted) and d.forecast_method == method
        gap = Decimal(d.revenue) - Decimal(d.forecast)
        assert Decimal(d.forecast_delta or "x") == gap and d.below_forecast == (gap < 0)
    assert "against the previous" in report.method and "Forecast:" in report.method
    # A quarter is the longest period compared with a forecast.
    long = await reports.build(seeded, "segments", by=["country"], period="total",
                               start=dt.date(2025, 11, 1), end=dt.date(2026, 2, 6))
    assert all(d.forecast is None and d.below_forecast is None for d in long.segments)


async def test_a_fall_the_forecast_expected_is_not_below_it(seeded: asyncpg.Pool, api: Api,
                                                             database_url: str) -> None:
    # ZZ: seven days of history (too short for ETS: seasonal naive, the first five of the
    # last seven days = 1 + 1 + 3 × 100), then 80 a day: down from 500, above 302.
    await seeded.execute("INSERT INTO accounts (account_id, attrs)"
                         " VALUES ('Z1', '{\"country\": \"ZZ\"}')")
    for day, amount in ((25, 1), (26, 1), *((d, 100) for d in range(27, 32))):
        await seed_usage(seeded, "Z1", f"2026-01-{day}T10:00:00Z", amount_micros=amount * 10**6)
    for day in range(1, 6):
        await seed_usage(seeded, "Z1", f"2026-02-0{day}T10:00:00Z", amount_micros=80 * 10**6)
    start, end = dt.date(2026, 2, 1), dt.date(2026, 2, 6)
    report = await reports.build(seeded, "segments", by=["country"], period="total",
                                 start=start, end=end)
    [zz] = [d for d in report.segments if d.key == {"country": "ZZ"}]
    assert (zz.revenue, zz.previous, zz.forecast, zz.forecast_delta, zz.below_forecast) == (
        "400", "500", "302", "98", False)
    both = await reports.build(seeded, "segments", by=["country"], period="total",
                               start=start, end=end, below_forecast=True)
    assert both.segments == [d for d in report.segments if d.below_forecast]
    status, body = await api.call("GET", "/v1/reports/segments", "viewer", params={
        "by": "country", "from": "2026-02-01", "to": "2026-02-06", "below_forecast": "true"})
    assert status == 200, body
    assert [s["key"]["country"] for s in body["segments"]] == [
        d.key["country"] for d in both.segments]
    assert "ZZ" not in [s["key"]["country"] for s in body["segments"]]
    status, out, err = await cli(database_url, "segments", "--by", "country", "--from",
                                 "2026-02-01", "--to", "2026-02-06", "--below-forecast",
                                 "--format", "csv")
    assert status == 0, err
    assert [r["country"] for r in csv.DictReader(io.StringIO(out))] == [
        d.key["country"] for d in both.segments]
