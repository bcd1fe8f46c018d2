"""Pricing simulation against the demo catalog, real usage ingested through the pipeline
and a real bill run: the faithfulness properties of issue #20, each able to fail.

- the catalog in force as the candidate changes nothing, for every account and segment,
  and the baseline equals what the bill run invoiced;
- every price × k gives k × the rated usage before rounding, and after the invoice's
  rounding differs by at most half a cent per line per unit of k;
- segments sum to the totals; a rerun is byte-identical; no table but ``simulations``
  changes (checksums of every table before and after);
- a candidate that drops a zone reports the coverage gap with the money at stake.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import numpy as np
import pytest

from billing_oss.core.money import parse_micros
from billing_oss.core.records import UsageRecord
from billing_oss.server import config, jobs
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.composition import decoders, rater_factory, read_catalog_file
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.simulation import engine, preview, report, service
from billing_oss.server.simulation import repo as simulation_repo
from billing_oss.server.simulation.service import Simulations
from billing_oss.server.store import catalog_repo
from tests.conftest import REPO
from tests.integration import billing_seed
from tests.integration.api_harness import Api, api  # noqa: F401

PERIOD = "2026-03"
DEMO = read_catalog_file(REPO / "config/demo-catalog.json")
SETTINGS = billing_seed.SETTINGS


def usage(n: int = 400) -> Iterator[UsageRecord]:
    rng = random.Random(20)
    callers = ["33611111111", "33622222222", "33140000000", "33650000001"]
    called = ["33612345678", "33145678901", "33712345678", "4930123456", "12125550100",
              "2348012345", "33891234567"]
    for i in range(n):
        day, hour, minute = rng.randint(2, 30), rng.randint(0, 23), rng.randint(0, 59)
        when = f"2026-03-{day:02d}T{hour:02d}:{minute:02d}:00Z"
        pick = rng.random()
        if pick < 0.6:
            yield UsageRecord(record_key=f"v{i}", source="sim", kind="voice", event_time=when,
                              calling=rng.choice(callers), called=rng.choice(called),
                              duration_s=rng.randint(0, 900))
        elif pick < 0.8:
            yield UsageRecord(record_key=f"s{i}", source="sim", kind="sms", event_time=when,
                              calling=rng.choice(callers), called=rng.choice(called))
        elif pick < 0.9:
            yield UsageRecord(record_key=f"d{i}", source="sim", kind="data", event_time=when,
                              imsi="882360000000001", volume_up=rng.randint(0, 5_000_000),
                              volume_down=rng.randint(0, 50_000_000))
        else:
            yield UsageRecord(record_key=f"e{i}", source="sim", kind="event", event_time=when,
                              msisdn="882360000000001", quantity=str(rng.randint(1, 5000)))


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool, tmp_path_factory: pytest.TempPathFactory) -> None:
    from billing_oss.server.composition import validate_catalog

    await catalog_repo.load_catalog(pool, DEMO, billing=validate_catalog(DEMO).billing)
    pipeline = Pipeline(pool, config.load(env={}).pipeline, rater_factory=rater_factory(),
                        decoders=decoders())
    path = tmp_path_factory.mktemp("sim") / "usage.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in usage()))
    ingested = await pipeline.ingest_file(path, source="sim", format="jsonl")
    assert ingested.counts.charged > 300, ingested
    await bill_run(pool, PERIOD, SETTINGS, actor="test")


async def simulate(pool: asyncpg.Pool, candidate: dict[str, Any], **kw: Any) -> engine.Outcome:
    request = engine.Request(candidate=candidate, period_from=PERIOD, period_to=PERIOD, **kw)
    async with pool.acquire() as conn:
        return await engine.simulate(conn, request, SETTINGS)


def scaled(document: dict[str, Any], k: int, rounding: bool = True) -> dict[str, Any]:
    """Every price of the catalog × k (tariffs, recurring fees, usage pricing)."""
    out = copy.deepcopy(document)

    def times(text: str) -> str:
        return str(Decimal(text) * k)

    for tariff in out["tariffs"]:
        for version in tariff["versions"]:
            for rate in version["rates"]:
                for key in ("connect_fee", "minimum_charge", "maximum_charge"):
                    if rate.get(key) is not None:
                        rate[key] = times(rate[key])
                for step in rate["steps"]:
                    step["price"] = times(step["price"])
                if not rounding:
                    rate.pop("rounding", None)
    for product in out["products"]:
        product["recurring_fee"] = times(product.get("recurring_fee", "0"))
        for c in product.get("usage_pricing", []):
            if "price" in c:
                c["price"] = times(c["price"])
            for tier in c.get("tiers", []):
                tier["price"] = times(tier["price"])
    return out


@pytest.mark.parametrize("reuse", [False, True], ids=["priced-twice", "unchanged-reused"])
async def test_the_current_catalog_changes_nothing(pool: asyncpg.Pool, seeded: None,
                                                   reuse: bool) -> None:
    outcome = await simulate(pool, DEMO, by=["country"], reuse_unchanged=reuse)
    result = report.build(outcome)
    assert result["manifest"]["records"]["rated_candidate"] > 300
    assert outcome.baseline.drafts.keys() == outcome.candidate.drafts.keys()
    assert len(result["accounts"]) == 4
    for a in result["accounts"]:
        assert a["change"] == "0", a
    for s in result["segments"]:
        assert s["change"] == "0", s
    for t in result["totals"]:
        assert t["change"] == {"net": "0", "tax": "0", "total": "0"}
    assert (outcome.baseline.totals.amount == outcome.candidate.totals.amount).all()
    # The baseline is what the bill run invoiced, cycle by cycle.
    check = result["baseline_check"]
    assert check["cycles_invoiced"] == 4 and check["equal"] == 4, check
    assert result["coverage"]["candidate_gaps"] == []


async def test_prices_times_k(pool: asyncpg.Pool, seeded: None) -> None:
    k = 3
    one = await simulate(pool, scaled(DEMO, 1, rounding=False), reuse_unchanged=False)
    many = await simulate(pool, scaled(DEMO, k, rounding=False))
    # Before the invoice's rounding: each record's exact amount is k times, and the kernel
    # stores it to the micro-unit (half-up), so a cell of n records is within n × (k + 1)/2
    # µ of k times; cells of whole-µ prices (SMS) are exactly k times.
    base, scaled_k = one.candidate.totals, many.candidate.totals
    assert base.amount.any() and (scaled_k.count == base.count).all()
    off = np.abs(scaled_k.amount - k * base.amount)
    assert (2 * off <= base.count * (k + 1)).all()
    sms = np.arange(len(base.amount)) % 4 == 1
    assert base.amount[sms].any() and (scaled_k.amount[sms] == k * base.amount[sms]).all()
    assert (scaled_k.amount != k * base.amount).any()  # the µ rounding is real, and bounded
    # After the invoice's rounding (once per line, to the cent): each line is within
    # k × half a cent of k times the line at k = 1, so the net within that per line.
    for key, draft in one.candidate.drafts.items():
        other = many.candidate.drafts[key]
        lines = len(draft.lines)
        assert len(other.lines) == lines
        for a, b in zip(draft.lines, other.lines, strict=True):
            assert abs(b.net_micros - k * a.net_micros) <= k * 5_000, (a, b)
        assert abs(other.totals.net_micros - k * draft.totals.net_micros) <= lines * k * 5_000


async def test_segments_sum_to_the_total_and_a_rerun_is_identical(
        pool: asyncpg.Pool, seeded: None) -> None:
    candidate = copy.deepcopy(DEMO)
    rates = candidate["tariffs"][0]["versions"][-1]["rates"]
    for rate in rates:
        for step in rate["steps"]:
            step["price"] = str(Decimal(step["price"]) * Decimal("1.1"))
    candidate["products"][0]["recurring_fee"] = "12.49"
    first = report.build(await simulate(pool, candidate, by=["country"]))
    second = report.build(await simulate(pool, candidate, by=["country"]))
    assert service.encode(first) == service.encode(second)
    totals = {t["currency"]: t for t in first["totals"]}
    assert any(t["change"]["net"] != "0" for t in totals.values())
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for s in first["segments"]:
        row = sums[s["dimension"], s["currency"]]
        for i, key in enumerate(("baseline", "candidate", "change")):
            row[i] += parse_micros(s[key])
    assert {d for d, _ in sums} == {"service", "zone", "product", "attrs.country"}
    for (_, currency), (b, c, ch) in sums.items():
        t = totals[currency]
        assert (b, c, ch) == (parse_micros(t["baseline"]["net"]),
                              parse_micros(t["candidate"]["net"]),
                              parse_micros(t["change"]["net"]))
    by_account = sum(parse_micros(a["change"]) for a in first["accounts"])
    assert by_account == sum(parse_micros(t["change"]["net"]) for t in totals.values())


async def test_a_dropped_zone_is_a_coverage_gap_with_money_at_stake(
        pool: asyncpg.Pool, seeded: None) -> None:
    candidate = copy.deepcopy(DEMO)
    for version in candidate["tariffs"][0]["versions"]:  # retail: no "world" zone
        version["zones"].pop("world")
        version["rates"] = [r for r in version["rates"] if r["zone"] != "world"]
    outcome = await simulate(pool, candidate)
    result = report.build(outcome)
    gaps = result["coverage"]["candidate_gaps"]
    stake = await pool.fetchval(
        "SELECT sum(c.amount_micros)::bigint FROM charges c JOIN usage_records u "
        "USING (account_id, event_time, usage_id) JOIN subscriptions s ON "
        "s.account_id = u.account_id WHERE s.tariff_id = 'retail' AND u.called LIKE '2%'")
    count = await pool.fetchval(
        "SELECT count(*) FROM usage_records u JOIN subscriptions s USING (account_id) "
        "WHERE s.tariff_id = 'retail' AND u.called LIKE '2%'")
    assert count > 0
    assert gaps == [{"reason": "NO_ZONE", "currency": "EUR", "records": count,
                     "at_stake": str(Decimal(stake) / 1_000_000).rstrip("0").rstrip(".")}]


async def test_moving_accounts_to_a_new_plan(pool: asyncpg.Pool, seeded: None) -> None:
    candidate = copy.deepcopy(DEMO)
    flat = copy.deepcopy(candidate["tariffs"][0])
    flat["id"] = "flat"
    for version in flat["versions"]:
        for rate in version["rates"]:
            rate.update(connect_fee="0", minimum_charge=None)
            rate["steps"] = [{"from": 0, "price": "0", "unit": 60, "increment": 1}]
    candidate["tariffs"].append(flat)
    candidate["products"].append({"id": "flat-30", "name": "Flat 30", "recurring_fee": "30"})
    candidate["accounts"] = [{"id": "A1", "tariff": "flat", "product": "flat-30"}]
    result = report.build(await simulate(pool, candidate))
    changes = {a["account_id"]: a for a in result["accounts"]}
    assert changes["A2"]["change"] == changes["B1"]["change"] == "0"
    a1 = changes["A1"]
    # Usage is free on the flat tariff: A1 pays 30.00 instead of Mobile S 9.99 (both less
    # the 10 % welcome discount on the plan) and its usage.
    assert parse_micros(a1["candidate"]) == 27_000_000
    assert a1["change"] != "0"


async def table_checksums(pool: asyncpg.Pool) -> dict[str, str]:
    tables = [r[0] for r in await pool.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1")]
    out = {}
    for name in tables:
        out[name] = await pool.fetchval(
            f'SELECT md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) '
            f'FROM "{name}" t')
    return out


async def test_the_cli_writes_nothing_but_its_result_row(
        pool: asyncpg.Pool, seeded: None, database_url: str, tmp_path: Path) -> None:
    before = await table_checksums(pool)
    rows_before = await pool.fetchval("SELECT count(*) FROM simulations")
    candidate = tmp_path / "candidate.json"
    candidate.write_text(json.dumps(scaled(DEMO, 2)))
    env = {**os.environ, "BILLING_OSS_DATABASE_URL": database_url}

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "billing_oss.server.cli", "simulate", "--catalog",
             str(candidate), "--from", PERIOD, *args], env=env, capture_output=True,
            timeout=120, check=False)

    done = cli("--format", "json", "--plot", str(tmp_path / "change.svg"))
    assert done.returncode == 0, done.stderr.decode()
    again = cli("--format", "json")
    assert done.stdout == again.stdout
    result = json.loads(done.stdout)
    assert all(parse_micros(a["change"]) > 0 for a in result["accounts"])
    assert (tmp_path / "change.svg").read_text().startswith("<?xml")
    table = cli("--pdf", str(tmp_path / "report.pdf"))
    assert table.returncode == 0 and b"baseline check: 4 of 4" in table.stdout, table.stdout
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF-")
    after = await table_checksums(pool)
    assert {k: v for k, v in after.items() if k != "simulations"} == {
        k: v for k, v in before.items() if k != "simulations"}
    assert await pool.fetchval("SELECT count(*) FROM simulations") == rows_before + 3


async def test_the_api_queues_a_simulation_and_shows_its_result(
        api: Api, pool: asyncpg.Pool, seeded: None) -> None:  # noqa: F811
    async with api.http.post(api.url + "/v1/simulations", headers=api.headers("operator"),
                             json={"candidate": scaled(DEMO, 2), "from": PERIOD}) as r:
        assert r.status == 202, await r.text()
        location = r.headers["Location"]
        queued = await r.json()
    assert queued["state"] == "queued" and location.endswith(f"/{queued['simulation_id']}")
    status, bad = await api.call("POST", "/v1/simulations", "operator",
                                 json={"candidate": {"tariffs": [{"id": "x\u0000"}]},
                                       "from": PERIOD})
    assert status == 422 and "NUL" in bad["detail"], bad
    status, _ = await api.call("POST", "/v1/simulations", "viewer",
                               json={"candidate": {}, "from": PERIOD})
    assert status == 403
    assert await jobs.run_next(pool, Simulations(pool, SETTINGS)) == queued["simulation_id"]
    status, done = await api.call("GET", location.removeprefix(api.url), "viewer")
    assert status == 200 and done["state"] == "done", done
    progress = done["progress"]
    assert progress["percent"] == "100" and progress["records_read"] > 300
    # The stored result is the CLI's document.
    again = report.build(await simulate(pool, scaled(DEMO, 2)))
    assert done["result"] == json.loads(service.encode(again))


async def test_a_simulation_reports_its_progress(pool: asyncpg.Pool, seeded: None) -> None:
    """Records read of those the rollups expect, then cycles priced under both catalogs:
    a percentage that only grows and ends just short of 100 (a finished one shows 100)."""
    seen: list[engine.Progress] = []
    request = engine.Request(candidate=scaled(DEMO, 2), period_from=PERIOD, period_to=PERIOD,
                             reuse_unchanged=False)
    async with pool.acquire() as conn:
        outcome = await engine.simulate(conn, request, SETTINGS, stages=seen.append)
    charged = await pool.fetchval(
        "SELECT count(*) FROM usage_records u WHERE event_time >= '2026-03-01'"
        " AND event_time < '2026-04-01' AND EXISTS (SELECT 1 FROM charges c"
        " WHERE c.usage_id = u.usage_id AND c.account_id = u.account_id)")
    assert seen[0].phase == "reading" and seen[0].records_read == 0
    assert seen[0].records_expected == charged and charged > 300
    assert [p.phase for p in seen].count("pricing") >= 3  # started, a batch per catalog
    percents = [p.percent for p in seen]
    assert percents == sorted(percents) and percents[0] == 0
    last = seen[-1]
    assert last.phase == "pricing" and last.cycles_priced == last.cycles
    assert last.cycles == 2 * len(outcome.accounts) and last.records_read == outcome.records
    assert last.percent == Decimal("99.9")
    reading = [p for p in seen if p.phase == "reading"][-1]
    assert 0 < reading.percent < 99  # the pricing still to come weighs in


async def test_the_api_shows_a_running_simulations_percentage(
        api: Api, pool: asyncpg.Pool, seeded: None) -> None:  # noqa: F811
    simulation_id = await simulation_repo.create(pool, "test", {"period_from": PERIOD},
                                                 "running")
    writer = service.ProgressWriter(pool, simulation_id, 0.01)
    async with writer.writing():
        writer.seen(engine.Progress(phase="reading", records_read=850,
                                    records_expected=1000, cycles_priced=0, cycles=1))
        for _ in range(100):
            _, running = await api.call("GET", f"/v1/simulations/{simulation_id}",
                                              "viewer")
            if running["progress"] is not None:
                break
            await asyncio.sleep(0.02)
    # 850 of 1000 records, one cycle worth 100 records still to price: 850 / 1100
    assert running["state"] == "running" and running["progress"] == {
        "phase": "reading", "percent": "77.2", "records_read": 850, "records_expected": 1000,
        "cycles_priced": 0, "cycles": 1}, running
    await simulation_repo.finish(pool, simulation_id, b"{}", {})
    status, done = await api.call("GET", f"/v1/simulations/{simulation_id}", "viewer")
    assert status == 200 and done["state"] == "done" and done["progress"]["percent"] == "100"


async def test_an_invoice_preview_is_the_invoiced_draft_or_the_candidates(
        pool: asyncpg.Pool, seeded: None) -> None:
    stored = await pool.fetchrow(
        "SELECT net_micros, total_micros FROM invoices WHERE account_id = 'A1' AND period = $1",
        PERIOD)
    async with pool.acquire() as conn:
        (current,) = await preview.drafts(conn, "A1", PERIOD, None, SETTINGS)
        (dearer,) = await preview.drafts(conn, "A1", PERIOD, scaled(DEMO, 2), SETTINGS)
    assert (current.totals.net_micros, current.totals.total_micros) == tuple(stored)
    assert dearer.totals.net_micros > current.totals.net_micros
    document = preview.pdf(dearer)
    assert document.startswith(b"%PDF-")
    import pikepdf

    with pikepdf.open(io.BytesIO(document)) as pdf:
        assert "PREVIEW" in str(pdf.docinfo.get("/Title", "")) or b"PREVIEW" in b"".join(
            page.Contents.read_bytes() for page in pdf.pages if "/Contents" in page)


async def test_a_segment_selects_its_accounts_only(pool: asyncpg.Pool, seeded: None) -> None:
    german = report.build(await simulate(pool, scaled(DEMO, 2), segment={"country": "DE"}))
    assert {a["account_id"] for a in german["accounts"]} == {"A2", "B1"}
    assert german["manifest"]["accounts"] == 2
    nobody = report.build(await simulate(pool, scaled(DEMO, 2), segment={"country": "XX"}))
    assert nobody["manifest"]["records"]["read"] == 0 and nobody["accounts"] == []
