"""The console over HTTP: no page or fragment without a session, CSRF on every POST, roles as
in the API, actions audited as the API's, HTML in record fields escaped on every page."""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from billing_oss.server.analytics import repo as analytics_repo
from billing_oss.server.console import home
from billing_oss.server.console.web import labelled
from billing_oss.server.store import api_keys, audit
from tests.integration import billing_seed
from tests.integration.api_harness import Api, api, seed_usage  # noqa: F401
from tests.integration.console_harness import Console

XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
PAGES = ["/console/", "/console/suspense", "/console/accounts", "/console/accounts/acme",
         "/console/invoices", "/console/jobs", "/console/files", "/console/settlement",
         "/console/integrations", "/console/audit"]
FRAGMENTS = ["/console/fragments/audit/verify"]
POSTS = ["/console/suspense/actions", "/console/simulations", "/console/integrations/replay",
         "/console/sign-out", "/console/suspense/1/correct"]


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool) -> list[int]:
    await billing_seed.finalised_invoice(pool, "acme", fee=9_990_000)
    await billing_seed.finalised_invoice(pool, "rival", fee=19_990_000)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    await seed_usage(pool, "acme", now.isoformat(), amount_micros=1_230_000, called=XSS)
    ids = []
    for i in range(3):
        ids.append(await pool.fetchval(
            "INSERT INTO suspense (source, record_key, reason, detail, record, raw)"
            " VALUES ('mqtt', $1, 'UNKNOWN_ACCOUNT', $2, $3::jsonb, $4) RETURNING suspense_id",
            f"x{i}", f"calling {XSS} matches no account",
            json.dumps({"record_key": f"x{i}", "kind": "voice", "called": XSS}),
            XSS.encode()))
    return ids


@pytest.fixture
async def console(api: Api) -> AsyncIterator[Console]:  # noqa: F811
    client = Console(api)
    try:
        yield client
    finally:
        await client.close()


async def test_nothing_renders_without_a_session(console: Console, seeded: list[int]) -> None:
    for path in PAGES:
        status, location = await console.get(path)
        assert status == 302 and location.startswith("/console/sign-in?next="), (path, status)
    for path in [*FRAGMENTS, f"/console/fragments/suspense/{seeded[0]}"]:
        status, body = await console.get(path)
        assert status == 401, (path, status, body)
        assert XSS not in body and "alert" not in body
    for path in POSTS:
        status, _ = await console.post(path, {"id": str(seeded[0]), "action": "retry"})
        assert status == 401, (path, status)
    status, _ = await console.get("/console/", headers={"HX-Request": "true"})
    assert status == 401


async def test_sign_in_refuses_unknown_keys_ingest_keys_and_forged_forms(
        api: Api, console: Console) -> None:  # noqa: F811
    assert await console.sign_in("bok_0000_nothing") == 401
    assert await console.sign_in(api.tokens["ingest"]) == 403
    status, _ = await console.post("/console/sign-in", {"api_key": api.tokens["admin"]},
                                   csrf=False)
    assert status == 403
    status, _ = await console.get("/console/")
    assert status == 302


async def test_every_page_renders_for_a_viewer_and_escapes_record_fields(
        api: Api, console: Console, pool: asyncpg.Pool,  # noqa: F811
        seeded: list[int]) -> None:
    assert await console.sign_in(api.tokens["viewer"]) == 302
    for path in [*PAGES, f"/console/fragments/suspense/{seeded[0]}", *FRAGMENTS]:
        status, body = await console.get(path)
        assert status == 200, (path, status, body[:500])
        assert XSS not in body, path
    for path in ("/console/suspense", f"/console/fragments/suspense/{seeded[0]}",
                 "/console/accounts/acme"):
        _, body = await console.get(path)
        assert ESCAPED in body, path
    _, body = await console.get("/console/accounts/acme")
    assert "1.23 EUR" in body  # money with its currency, through core.money
    month = await pool.fetchval(
        "SELECT sum(amount_micros) FROM charges"
        " WHERE event_time >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'")
    _, body = await console.get("/console/")
    assert f"<td class=\"n\">{labelled(month, 'EUR')}</td>" in body  # revenue month to date


async def test_a_viewer_may_not_act(api: Api, console: Console, pool: asyncpg.Pool,  # noqa: F811
                                    seeded: list[int]) -> None:
    assert await console.sign_in(api.tokens["viewer"]) == 302
    status, body = await console.post("/console/suspense/actions",
                                      {"id": str(seeded[0]), "action": "discard",
                                       "reason": "lab"})
    assert status == 403 and "needs operator" in body
    assert await pool.fetchval("SELECT state FROM suspense WHERE suspense_id = $1",
                               seeded[0]) == "open"


async def test_a_post_without_its_csrf_token_is_refused(
        api: Api, console: Console, pool: asyncpg.Pool, seeded: list[int]) -> None:  # noqa: F811
    assert await console.sign_in(api.tokens["operator"]) == 302
    form = {"id": str(seeded[1]), "action": "discard", "reason": "lab traffic"}
    status, _ = await console.post("/console/suspense/actions", form, csrf=False)
    assert status == 403
    status, _ = await console.post("/console/suspense/actions",
                                   {**form, "csrf": "forged"}, csrf=False)
    assert status == 403
    status, _ = await console.post("/console/suspense/actions", form, csrf=False,
                                   headers={"X-CSRF-Token": "forged"})
    assert status == 403
    assert await pool.fetchval("SELECT state FROM suspense WHERE suspense_id = $1",
                               seeded[1]) == "open"
    # The htmx header carries the token as well as the form field does.
    status, body = await console.post("/console/suspense/actions", form, csrf=False,
                                      headers={"X-CSRF-Token": console.csrf,
                                               "HX-Request": "true"})
    assert status == 200 and "discarded" in body, body
    [entry] = await audit.entries(pool, f"suspense:{seeded[1]}")
    key_id = api_keys.parse_token(api.tokens["operator"])
    assert key_id is not None and entry.actor == f"key:{key_id[0]}"
    assert entry.after["state"] == "discarded"


async def test_an_operator_corrects_a_record_as_the_api_does(
        api: Api, console: Console, pool: asyncpg.Pool) -> None:  # noqa: F811
    record = {"record_key": "fix-1", "source": "mqtt", "kind": "voice",
              "event_time": "2026-01-10T09:00:00Z", "duration_s": 42, "called": XSS}
    sid = await pool.fetchval(
        "INSERT INTO suspense (source, record_key, reason, detail, record)"
        " VALUES ('mqtt', 'fix-1', 'NO_ZONE', 'no zone', $1::jsonb) RETURNING suspense_id",
        json.dumps(record))
    path = f"/console/suspense/{sid}/correct"
    assert await console.sign_in(api.tokens["viewer"]) == 302
    status, body = await console.post(path, {"called": "33612345678", "reason": "typo"})
    assert status == 403 and "needs operator" in body
    assert await console.sign_in(api.tokens["operator"]) == 302
    status, body = await console.get(f"/console/fragments/suspense/{sid}")
    assert status == 200 and 'name="duration_s" value="42"' in body
    assert ESCAPED in body and XSS not in body
    status, body = await console.post(path, {"called": XSS, "reason": "typo"}, csrf=False)
    assert status == 403
    status, body = await console.post(path, {"called": XSS, "reason": "typo"})
    assert status == 200 and "Change at least one field." in body
    status, body = await console.post(path, {"duration_s": "forty", "reason": "typo"})
    assert status == 200 and "is not a usage record" in body
    status, body = await console.post(path, {"called": "33612345678", "duration_s": "42",
                                             "reason": "the switch sent markup"})
    assert status == 200 and "Corrected called: retry" in body, body
    entry = (await audit.entries(pool, f"suspense:{sid}"))[-1]
    key_id = api_keys.parse_token(api.tokens["operator"])
    assert key_id is not None and entry.actor == f"key:{key_id[0]}"
    assert (entry.action, entry.before, entry.after) == (
        "suspense.correct", {"record": {"called": XSS}},
        {"record": {"called": "33612345678"}, "reason": "the switch sent markup"})


async def test_sign_out_and_expiry_end_the_session(
        api: Api, console: Console, pool: asyncpg.Pool) -> None:  # noqa: F811
    assert await console.sign_in(api.tokens["viewer"]) == 302
    status, location = await console.post("/console/sign-out", {})
    assert (status, location) == (302, "/console/sign-in")
    assert (await console.get("/console/"))[0] == 302
    assert await console.sign_in(api.tokens["viewer"]) == 302
    await pool.execute("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
    assert (await console.get("/console/jobs"))[0] == 302
    assert await console.sign_in(api.tokens["viewer"]) == 302
    cookie = next(c for c in console.http.cookie_jar if c.key == "console_session")
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    assert await pool.fetchval("SELECT count(*) FROM console_sessions WHERE"
                               " session_sha256 = sha256($1::text::bytea)", cookie.value) == 1


async def test_a_customer_key_sees_its_own_account_only(
        api: Api, console: Console, pool: asyncpg.Pool, seeded: list[int]) -> None:  # noqa: F811
    token = (await api_keys.create(pool, "customer", "acme portal", account_id="acme")).token
    status, _ = await console.post("/console/sign-in", {"api_key": token}, csrf=False)
    assert status == 403  # the sign-in form's own token is still required
    assert await console.sign_in(token) == 302
    status, body = await console.get("/console/portal")
    assert status == 200 and "Customer acme" in body and "rival" not in body
    assert ESCAPED in body and XSS not in body
    assert "1.23 EUR" in body
    own, other = [await pool.fetchval("SELECT invoice_id FROM invoices WHERE account_id = $1",
                                      a) for a in ("acme", "rival")]
    for ext, magic in (("pdf", "%PDF"), ("xml", "<?xml")):
        async with console.http.get(f"{console.url}/console/portal/invoices/{own}.{ext}") as r:
            assert r.status == 200 and (await r.text(errors="replace")).startswith(magic)
        status, body = await console.get(f"/console/portal/invoices/{other}.{ext}")
        assert status == 403 and "not your account" in body
        # an id that does not exist answers alike: which ids exist stays unknown
        missing, missing_body = await console.get(f"/console/portal/invoices/987654321.{ext}")
        assert (missing, missing_body.replace("987654321", str(other))) == (status, body)
    # The operator's pages and documents are not a customer's.
    for path in ("/console/", "/console/accounts/rival", f"/console/invoices/{other}.pdf",
                 "/console/suspense"):
        status, _ = await console.get(path)
        assert status == 403, path
    status, csv_text = await console.get("/console/portal/usage.csv?service=voice")
    lines = csv_text.strip().splitlines()
    # the API's export (/v1/accounts/{id}/usage.csv): the same columns and cells
    assert status == 200 and lines[0].startswith("usage_id,event_time,service,calling,called")
    assert len(lines) == 2 and XSS in lines[1] and lines[1].endswith(",1.230000,EUR")
    status, body = await console.get("/console/portal?service=sms")
    assert status == 200 and "No usage matches." in body


async def test_job_lists_page_by_cursor(api: Api, console: Console,  # noqa: F811
                                        pool: asyncpg.Pool) -> None:
    ids = [await pool.fetchval("INSERT INTO bill_runs (period, state, requested_by)"
                               " VALUES ('2025-12', 'done', 'test') RETURNING bill_run_id")
           for _ in range(25)]
    assert await console.sign_in(api.tokens["viewer"]) == 302
    seen: list[int] = []
    path: str | None = "/console/jobs"
    while path:
        status, body = await console.get(path)
        assert status == 200
        section = body.split("<h2>Bill runs</h2>")[1].split("</section>")[0]
        seen += [int(i) for i in re.findall(r"<tr><td>(\d+)</td><td>2025-12", section)]
        found = re.search(r'href="(/console/jobs\?bill_runs_cursor=[^"]+)"', section)
        path = found[1].replace("&amp;", "&") if found else None
    assert seen == sorted(ids, reverse=True)


async def test_the_portal_shows_times_in_the_accounts_timezone(
        api: Api, console: Console, pool: asyncpg.Pool) -> None:  # noqa: F811
    """The operator reads UTC (``console.timezone``); a customer in Tokyo reads its calls at
    Tokyo's time, as its invoice lists them."""
    async with pool.acquire() as conn:
        await billing_seed.account(conn, "tokyo", timezone="Asia/Tokyo")
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).replace(
        hour=23, minute=15, second=7, microsecond=0)
    await seed_usage(pool, "tokyo", when.isoformat(), amount_micros=1_000_000)
    tokyo = when.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S")
    operator = when.strftime("%Y-%m-%d %H:%M:%S")
    token = (await api_keys.create(pool, "customer", "tokyo portal", account_id="tokyo")).token
    assert await console.sign_in(token) == 302
    status, body = await console.get("/console/portal")
    assert status == 200 and f"<td>{tokyo}</td>" in body and operator not in body
    assert "When (Asia/Tokyo)" in body and "· Asia/Tokyo</span>" in body
    await console.close()
    operator_console = Console(api)
    try:
        assert await operator_console.sign_in(api.tokens["viewer"]) == 302
        status, body = await operator_console.get("/console/accounts/tokyo")
        assert status == 200 and f"<td>{operator}</td>" in body
    finally:
        await operator_console.close()


async def test_revenue_month_to_date_adds_the_deltas_to_the_folded_month(
        pool: asyncpg.Pool, seeded: list[int]) -> None:
    """The home page's revenue from the account-less month level: the same before a
    compaction folds the charges into it and after, and deltas written after it added."""
    now = dt.datetime.now(dt.UTC)
    month = now.date().replace(day=1)

    async def chf() -> tuple[int, int, int]:
        rows = [r for r in await home.month_to_date(pool, now) if r["currency"] == "CHF"]
        assert len(rows) == 1, rows
        return rows[0]["net"], rows[0]["charges"], rows[0]["projected"]

    for amount in (2_000_000, 3_500_000):
        await seed_usage(pool, "acme", now.isoformat(), amount_micros=amount, currency="CHF")
    before = await chf()
    assert before[:2] == (5_500_000, 2)
    days = calendar.monthrange(now.year, now.month)[1]
    elapsed = max((now - dt.datetime.combine(month, dt.time(), dt.UTC))
                  / dt.timedelta(days=1), 1 / 24)
    assert before[2] == round(5_500_000 * days / elapsed)
    assert await analytics_repo.compact(pool, month, now.date()) > 0
    assert await pool.fetchval("SELECT count(*) FROM charge_rollups_monthly"
                               " WHERE currency = 'CHF' AND NOT compacted") == 0
    assert await chf() == before
    await seed_usage(pool, "rival", now.isoformat(), amount_micros=250_000, currency="CHF")
    assert (await chf())[:2] == (5_750_000, 3)
