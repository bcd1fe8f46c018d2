"""The console in a real browser: every page loads with no console error, failed request or
dialog; the operator's workflows end to end — sign in, triage and retry a suspense record,
launch a simulation and read its result, look an account up and open an invoice. Each page
is screenshotted into the test's output folder."""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import re
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest

from billing_oss.core.records import UsageRecord
from billing_oss.server import config
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.composition import (
    decoders,
    rater_factory,
    read_catalog_file,
    validate_catalog,
)
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.store import api_keys, catalog_repo
from tests.browser.conftest import Watched
from tests.conftest import REPO
from tests.integration import billing_seed
from tests.integration.api_harness import Api, live_api, seed_usage

DEMO = read_catalog_file(REPO / "config/demo-catalog.json")
XSS = "<script>alert(1)</script>"
TODAY = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
LAST_MONTH = (TODAY.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
PAGES = {"home": "/console/", "suspense": "/console/suspense", "accounts": "/console/accounts",
         "account": "/console/accounts/A1", "invoices": "/console/invoices",
         "jobs": "/console/jobs", "files": "/console/files", "settlement": "/console/settlement",
         "integrations": "/console/integrations", "audit": "/console/audit"}


def usage(days: int = 80) -> Iterator[UsageRecord]:
    """A few calls, messages and sessions a day for ``days``, a spike on one day."""
    rng = random.Random(22)
    callers = ["33611111111", "33622222222", "33140000000", "33650000001"]
    called = ["33612345678", "33145678901", "4930123456", "12125550100"]
    for day in range(days, 0, -1):
        base = TODAY - dt.timedelta(days=day)
        for i in range(40 if day == 9 else rng.randint(4, 8)):
            when = (base + dt.timedelta(minutes=rng.randint(0, 600))).isoformat()
            key = f"{day}-{i}"
            if rng.random() < 0.7:
                yield UsageRecord(record_key=f"v{key}", source="network", kind="voice",
                                  event_time=when, calling=rng.choice(callers),
                                  called=rng.choice(called), duration_s=rng.randint(5, 900))
            else:
                yield UsageRecord(record_key=f"s{key}", source="network", kind="sms",
                                  event_time=when, calling=rng.choice(callers),
                                  called=rng.choice(called))


def doubled(document: dict[str, Any]) -> dict[str, Any]:
    """The catalog with every tariff step price doubled."""
    out = copy.deepcopy(document)
    for tariff in out["tariffs"]:
        for version in tariff["versions"]:
            for rate in version["rates"]:
                for step in rate["steps"]:
                    step["price"] = str(Decimal(step["price"]) * 2)
    return {"tariffs": out["tariffs"]}


@pytest.fixture(scope="module")
async def site(pool: asyncpg.Pool, database_url: str,
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    await catalog_repo.load_catalog(pool, DEMO, billing=validate_catalog(DEMO).billing)
    pipeline = Pipeline(pool, config.load(env={}).pipeline, rater_factory=rater_factory(),
                        decoders=decoders())
    path = tmp_path_factory.mktemp("usage") / "network-0001.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in usage()))
    outcome = await pipeline.ingest_file(path, source="network", format="jsonl",
                                         sequence_no=1)
    assert outcome.counts.charged > 300, outcome
    await bill_run(pool, LAST_MONTH, billing_seed.SETTINGS, actor="test", finalize=True)
    # HTML in a record's field, in usage and in suspense.
    await seed_usage(pool, "A1", (TODAY - dt.timedelta(days=1)).isoformat(),
                     amount_micros=150_000, called=XSS, source="network")
    when = (TODAY - dt.timedelta(hours=3)).isoformat()
    late = {"record_key": "late-1", "source": "mqtt", "kind": "voice", "event_time": when,
            "duration_s": 42, "calling": "33611111111", "called": "33612345678"}
    await pool.execute(
        "INSERT INTO suspense (source, record_key, reason, detail, record, raw)"
        " VALUES ('mqtt', 'late-1', 'UNKNOWN_ACCOUNT', 'no account had 33611111111 yet',"
        " $1::jsonb, $2)", json.dumps(late), json.dumps(late).encode())
    await pool.execute("INSERT INTO usage_keys (source, record_key, event_time)"
                       " VALUES ('mqtt', 'late-1', $1::text::timestamptz)", when)
    # A calling number with a letter O for a zero: corrected in the console, then retried.
    typo = {**late, "record_key": "typo-1", "calling": "3361111111O"}
    await pool.execute(
        "INSERT INTO suspense (source, record_key, reason, detail, record, raw)"
        " VALUES ('mqtt', 'typo-1', 'UNKNOWN_ACCOUNT', 'no account has 3361111111O',"
        " $1::jsonb, $2)", json.dumps(typo), json.dumps(typo).encode())
    await pool.execute("INSERT INTO usage_keys (source, record_key, event_time)"
                       " VALUES ('mqtt', 'typo-1', $1::text::timestamptz)", when)
    await pool.execute(
        "INSERT INTO suspense (source, record_key, reason, detail, record, raw)"
        " VALUES ('mqtt', 'odd-1', 'NO_ZONE', $1, $2::jsonb, $3)",
        f"called {XSS} is in no zone",
        json.dumps({"record_key": "odd-1", "kind": "voice", "called": XSS}), XSS.encode())
    async with live_api(pool, database_url, rater_factory(), simulations=True) as api:
        yield api


async def sign_in(w: Watched, api: Api, role: str = "operator") -> None:
    await w.page.goto(api.url + "/console/")
    assert "/console/sign-in" in w.page.url
    await w.page.fill("input[name=api_key]", api.tokens[role])
    await w.page.click("button[type=submit]")
    await w.page.wait_for_url(api.url + "/console/")
    assert await w.page.inner_text("h1") == "Today"


async def test_every_page_loads_clean(watched: Watched, site: Api) -> None:
    await sign_in(watched, site, "viewer")
    await watched.shot("sign-in-done")
    for name, path in PAGES.items():
        response = await watched.page.goto(site.url + path)
        assert response is not None and response.status == 200, (path, response)
        await watched.page.wait_for_load_state("networkidle")
        assert XSS not in await watched.page.content()
        await watched.shot(name)
        watched.clean()
    # The account's chart was drawn, its band included.
    await watched.page.goto(site.url + "/console/accounts/A1")
    await watched.page.wait_for_selector(".chart .uplot canvas")
    assert XSS in await watched.page.inner_text("main")  # shown as text, never run
    watched.clean()


async def test_triage_and_retry_a_suspense_record(watched: Watched, site: Api,
                                                  pool: asyncpg.Pool) -> None:
    await sign_in(watched, site)
    page = watched.page
    await page.goto(site.url + "/console/suspense")
    await page.select_option("select[name=reason]", "UNKNOWN_ACCOUNT")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url(re.compile(r".*reason=UNKNOWN_ACCOUNT.*"))
    sid = await pool.fetchval("SELECT suspense_id FROM suspense WHERE record_key = 'late-1'")
    await page.click(f"a.inspect[href$='/{sid}']")
    await page.wait_for_selector("#detail pre.hex")
    assert "UNKNOWN_ACCOUNT" in await page.inner_text("#detail")
    await watched.shot("suspense-inspect")
    await page.check(f"input[name=id][value='{sid}']")
    await page.click("button[value=retry]")
    await page.wait_for_selector("#outcomes table")
    outcome = await page.inner_text("#outcomes")
    assert "charged" in outcome and "EUR" in outcome, outcome
    await watched.shot("suspense-retried")
    watched.clean()
    assert await pool.fetchval("SELECT state FROM suspense WHERE suspense_id = $1",
                               sid) == "retried"
    actors = await pool.fetch("SELECT actor FROM audit_log WHERE entity = $1",
                              f"suspense:{sid}")
    assert [r["actor"].startswith("key:") for r in actors] == [True]


async def test_a_refused_triage_action_shows_its_reason(watched: Watched, site: Api) -> None:
    await sign_in(watched, site)
    page = watched.page
    await page.goto(site.url + "/console/suspense")
    await page.click("button[value=retry]")  # nothing selected: 422 with its reason
    await page.wait_for_selector("#outcomes .flash.bad")
    assert "Select at least one record." in await page.inner_text("#outcomes")
    await watched.shot("suspense-refused")
    # The refusal itself is the only problem: its status, and the browser's note of it.
    assert sorted(watched.problems) == [
        f"422 {site.url}/console/suspense/actions",
        "console error: Failed to load resource: the server responded with a status of 422"
        " (Unprocessable Entity)"]
    watched.problems.clear()
    watched.clean()


async def test_correct_a_suspense_record_then_retry_it(watched: Watched, site: Api,
                                                      pool: asyncpg.Pool) -> None:
    await sign_in(watched, site)
    page = watched.page
    await page.goto(site.url + "/console/suspense?reason=UNKNOWN_ACCOUNT")
    sid = await pool.fetchval("SELECT suspense_id FROM suspense WHERE record_key = 'typo-1'")
    await page.click(f"a.inspect[href$='/{sid}']")
    await page.wait_for_selector("#detail form.correct")
    assert await page.input_value("#detail input[name=calling]") == "3361111111O"
    await page.fill("#detail input[name=calling]", "33611111111")
    await page.fill("#detail input[name=reason]", "letter O typed for a zero")
    await page.click("#detail form.correct button[type=submit]")
    await page.wait_for_selector("#detail .flash.ok")
    assert '"calling": "33611111111"' in await page.inner_text("#detail pre.record")
    await watched.shot("suspense-corrected")
    await page.check(f"input[name=id][value='{sid}']")
    await page.click("button[value=retry]")
    await page.wait_for_selector("#outcomes table")
    outcome = await page.inner_text("#outcomes")
    assert "charged" in outcome and "EUR" in outcome, outcome
    watched.clean()
    assert await pool.fetchval("SELECT state FROM suspense WHERE suspense_id = $1",
                               sid) == "retried"
    entries = await pool.fetch("SELECT actor, action, after FROM audit_log WHERE entity = $1"
                               " ORDER BY seq", f"suspense:{sid}")
    assert [e["action"] for e in entries] == ["suspense.correct", "suspense.retry.charged"]
    assert all(e["actor"].startswith("key:") for e in entries)
    assert json.loads(entries[0]["after"])["reason"] == "letter O typed for a zero"


async def test_launch_a_simulation_and_read_its_result(watched: Watched, site: Api) -> None:
    await sign_in(watched, site)
    page = watched.page
    await page.goto(site.url + "/console/jobs")
    await page.fill("input[name=from]", LAST_MONTH)
    await page.fill("textarea[name=candidate]", json.dumps(doubled(DEMO)))
    await page.click("form.launch button[type=submit]")
    await page.wait_for_url(re.compile(r".*/console/simulations/\d+$"))
    await page.wait_for_selector("#simulation-state[data-state=done]", timeout=180_000)
    await page.wait_for_selector(".chart .uplot canvas")
    text = await page.inner_text("main")
    assert "Winners and losers, EUR" in text and "Largest increases" in text
    assert re.search(r"\d+\.\d\d EUR", text), text
    await watched.shot("simulation")
    watched.clean()


async def test_look_up_an_account_and_open_an_invoice(watched: Watched, site: Api) -> None:
    await sign_in(watched, site, "viewer")
    page = watched.page
    await page.goto(site.url + "/console/accounts")
    await page.fill("input[name=q]", "33622222222")  # a number, not the account id
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url(site.url + "/console/accounts/A2")
    await page.wait_for_selector(".chart .uplot canvas")
    await page.click("section:has(h2:text('Invoices')) a[href^='/console/invoices/']")
    await page.wait_for_url(re.compile(r".*/console/invoices/\d+$"))
    assert (await page.inner_text("h1")).startswith("Invoice ")
    pdf = await page.request.get(site.url + (await page.get_attribute("iframe.pdf", "src") or ""))
    assert pdf.status == 200 and (await pdf.body()).startswith(b"%PDF")
    assert pdf.headers["content-disposition"].startswith("inline")
    await watched.shot("invoice")
    watched.clean()


async def test_a_customer_sees_its_usage_and_not_another_accounts(
        watched: Watched, site: Api, pool: asyncpg.Pool) -> None:
    token = (await api_keys.create(pool, "customer", "A1 portal", account_id="A1")).token
    page = watched.page
    await page.goto(site.url + "/console/sign-in")
    await page.fill("input[name=api_key]", token)
    await page.click("button[type=submit]")
    await page.wait_for_url(site.url + "/console/portal")
    assert (await page.inner_text("h1")).startswith("Alice Martin")
    await page.select_option("select[name=service]", "voice")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url(re.compile(r".*service=voice.*"))
    rows = await page.locator("section:has(h2:text('Usage, record by record')) tbody tr")\
        .all_inner_texts()
    assert rows and all("\tvoice\t" in r for r in rows), rows
    assert any(XSS in r for r in rows)  # shown as text, never run
    await watched.shot("portal")
    watched.clean()
    own = await pool.fetchval("SELECT invoice_id FROM invoices WHERE account_id = 'A1'")
    other = await pool.fetchval("SELECT invoice_id FROM invoices WHERE account_id = 'A2'")
    mine = await page.request.get(f"{site.url}/console/portal/invoices/{own}.pdf")
    assert mine.status == 200 and (await mine.body()).startswith(b"%PDF")
    theirs = await page.request.get(f"{site.url}/console/portal/invoices/{other}.pdf")
    assert theirs.status == 403
    operator_page = await page.request.get(f"{site.url}/console/accounts/A2")
    assert operator_page.status == 403
