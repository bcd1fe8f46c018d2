"""Rerating through the API with the production rater (server.rating from the stored
catalog): a corrected tariff version, a rerate job, exact differences, and a finalised
invoice that stays exactly as it was (corrections go to the next one)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from billing_oss.server.billing import issuing
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.pipeline.raters import build_rater
from tests.conftest import REPO
from tests.integration import billing_seed
from tests.integration.api_harness import Api, live_api, seed_usage


def version(effective_from: str, price: str) -> dict[str, Any]:
    return {"effective_from": effective_from, "timezone": "UTC", "zones": {"fr": ["33"]},
            "rates": [{"kind": "voice", "zone": "fr", "band": "*",
                       "steps": [{"from": 0, "price": price, "unit": 60, "increment": 1}]}]}


@pytest.fixture(scope="module")
async def rapi(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[Api]:
    async with live_api(pool, database_url, rater_factory=build_rater) as client:
        yield client


async def wait_done(api: Api, job_id: int) -> dict[str, Any]:
    for _ in range(200):
        status, job = await api.call("GET", f"/v1/rerate-jobs/{job_id}", "viewer")
        assert status == 200
        if job["state"] in ("done", "failed"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"rerate job {job_id} did not finish: {job}")


async def invoice_rows(pool: asyncpg.Pool, invoice_id: int) -> list[Any]:
    return [
        [dict(r) for r in await pool.fetch(f"SELECT * FROM {table} WHERE invoice_id = $1"
                                           f" ORDER BY 1, 2, 3", invoice_id)]
        for table in ("invoices", "invoice_lines", "invoice_line_charges", "taxes")
    ]


async def totals(api: Api, account: str) -> dict[str, Any]:
    status, body = await api.call("GET", "/v1/charges/totals", params={
        "account_id": account, "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"})
    assert status == 200
    [eur] = body["items"]
    return eur  # type: ignore[no-any-return]


async def test_rerate_corrects_by_the_exact_difference(rapi: Api, pool: asyncpg.Pool) -> None:
    api = rapi
    async with pool.acquire() as conn:
        await billing_seed.base(conn)
    await api.call("POST", "/v1/tariffs", json={"tariffs": [
        {"id": "RR", "versions": [version("2026-01-01T00:00:00Z", "0.60")]}]})
    status, _ = await api.call("POST", "/v1/accounts", json={
        "account_id": "RR-1", "attrs": {"country": "FR"},
        "identifiers": [{"identifier": "33677700001"}]})
    assert status == 201
    await api.call("POST", "/v1/subscriptions", json={
        "account_id": "RR-1", "tariff_id": "RR", "valid_from": "2026-01-01T00:00:00Z"})
    v1 = (await api.call("GET", "/v1/tariffs/RR"))[1]["versions"][0]["tariff_version_id"]
    for day in range(5, 15):  # ten 60 s calls, charged under v1: 0.600000 each
        await seed_usage(pool, "RR-1", f"2026-01-{day:02d}T12:00:00Z", amount_micros=600_000,
                         tariff_version_id=v1, duration_s=60)
    await pool.execute("UPDATE usage_records SET calling = '33677700001'"
                       " WHERE account_id = 'RR-1'")
    await seed_usage(pool, "RR-1", "2026-02-02T12:00:00Z", amount_micros=600_000,
                     tariff_version_id=v1)  # outside the rerated period

    run = await bill_run(pool, "2026-01", billing_seed.SETTINGS, accounts=["RR-1"], actor="test")
    async with pool.acquire() as conn:
        await issuing.finalise(conn, run.invoice_ids, "RR", dt.date(2026, 2, 3), 30, actor="test")
    [invoice_id] = run.invoice_ids
    frozen = await invoice_rows(pool, invoice_id)
    charges_before = [dict(r) for r in await pool.fetch("SELECT * FROM charges ORDER BY charge_id")]
    before = await totals(api, "RR-1")
    assert before["net"]["amount"] == "6.000000"

    # The price was wrong from the 10th: publish a correction, then rerate January.
    status, _ = await api.call("POST", "/v1/tariffs/RR/versions",
                               json=version("2026-01-10T00:00:00Z", "0.90"))
    assert status == 201
    status, job = await api.call("POST", "/v1/rerate-jobs", "operator", json={
        "account_id": "RR-1", "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"})
    assert status == 202 and job["state"] in ("queued", "running", "done")
    job = await wait_done(api, job["rerate_job_id"])
    assert job["state"] == "done", job
    assert job["progress"] == {"usage_total": 10, "usage_done": 10, "usage_changed": 5,
                               "usage_failed": 0}
    assert job["accounts"] == [{
        "account_id": "RR-1", "usage_count": 10, "usage_changed": 5,
        "before": {"amount": "6.000000", "currency": "EUR"},
        "after": {"amount": "7.500000", "currency": "EUR"},
        "difference": {"amount": "1.500000", "currency": "EUR"}}]

    after = await totals(api, "RR-1")
    assert after["net"]["amount"] == "7.500000"  # exactly 5 × (0.90 − 0.60) more
    assert (after["charges"], after["reversals"]) == (15, 5)
    assert after["reversed"]["amount"] == "-3.000000"

    # Append-only: every charge row that existed is still there, unchanged.
    rows_now = {r["charge_id"]: dict(r) for r in await pool.fetch("SELECT * FROM charges")}
    assert all(rows_now[c["charge_id"]] == c for c in charges_before)
    pages = await api.pages("/v1/charges", {"rerate_job_id": job["rerate_job_id"]})
    reversals = [c for c in pages[0] if c["kind"] == "reversal"]
    assert len(reversals) == 5 and all(c["reverses_charge_id"] for c in reversals)

    # The finalised invoice is untouched; the corrections bill on the next document.
    assert await invoice_rows(pool, invoice_id) == frozen
    rerun = await bill_run(pool, "2026-01", billing_seed.SETTINGS, accounts=["RR-1"], actor="test")
    assert rerun.invoice_ids and rerun.invoice_ids != [invoice_id]
    assert rerun.charges == 10  # five reversals and five new charges
    async with pool.acquire() as conn:
        nxt = await issuing.load(conn, rerun.invoice_ids[0])
    assert nxt.content.totals.net_micros == 1_500_000

    # Rerating again under the same catalog changes nothing.
    status, again = await api.call("POST", "/v1/rerate-jobs", json={
        "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"})
    again = await wait_done(api, again["rerate_job_id"])
    assert again["progress"]["usage_changed"] == 0
    assert again["accounts"][0]["difference"]["amount"] == "0.000000"
    assert (await totals(api, "RR-1"))["net"]["amount"] == "7.500000"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "billing_oss", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


async def test_rerate_verb_reports_per_account(rapi: Api, database_url: str) -> None:
    out = await asyncio.to_thread(cli, "rerate", "--from", "2026-01-01T00:00:00Z",
                                  "--to", "2026-02-01T00:00:00Z", "--account", "RR-1",
                                  "--json", "--database-url", database_url)
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert (job["state"], job["usage_done"], job["usage_changed"]) == ("done", 10, 0)
    assert job["accounts"][0]["after_micros"] == 7_500_000
    status, seen = await rapi.call("GET", f"/v1/rerate-jobs/{job['rerate_job_id']}")
    assert status == 200 and seen["requested_by"] == "cli"
    bad = await asyncio.to_thread(cli, "rerate", "--from", "2026-02-01", "--to", "2026-01-01Z",
                                  "--database-url", database_url)
    assert bad.returncode == 2 and "--from" in bad.stderr


async def test_rerate_validation_and_listing(rapi: Api) -> None:
    api = rapi
    status, problem = await api.call("POST", "/v1/rerate-jobs", json={
        "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"})
    assert status == 422 and problem["errors"][0]["path"] == "$.to"
    status, problem = await api.call("POST", "/v1/rerate-jobs", json={
        "account_id": "NOPE", "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"})
    assert status == 404
    status, problem = await api.call("POST", "/v1/rerate-jobs", json={"from": "2026-01-01"})
    assert status == 422
    pages = await api.pages("/v1/rerate-jobs", {"limit": 1})
    assert [len(p) for p in pages] == [1, 1, 1]
    status, _ = await api.call("GET", "/v1/rerate-jobs/987654")
    assert status == 404
