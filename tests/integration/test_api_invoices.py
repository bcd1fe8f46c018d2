"""The invoicing routes held to the admin API's standard: validation (422 naming the field),
int64-bounded ids, opaque cursors, 401/403 per role, and every billing write audited in its
own transaction, from HTTP (``key:<id>``) and from the CLI (``cli:<user>``)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import getpass
import json
import sys

import asyncpg
import pytest

from billing_oss.server.store import audit
from tests.conftest import REPO
from tests.integration import billing_seed as seed
from tests.integration.api_harness import ROLES, Api, api  # noqa: F401
from tests.integration.test_api_audit import verify_cli

UTC = dt.UTC

# Each invoicing route and the least role it needs (admin ⊃ operator ⊃ viewer; ingest: none).
ROUTES = [
    ("POST", "/v1/bill-runs", "operator", {"period": "2026-03", "dry_run": True}),
    ("GET", "/v1/bill-runs", "viewer", None),
    ("GET", "/v1/bill-runs/999999", "viewer", None),
    ("GET", "/v1/invoices", "viewer", None),
    ("GET", "/v1/invoices/999999", "viewer", None),
    ("GET", "/v1/invoices/999999.pdf", "viewer", None),
    ("GET", "/v1/invoices/999999.xml", "viewer", None),
    ("POST", "/v1/invoices/999999/finalize", "operator", None),
    ("POST", "/v1/credit-notes", "operator", {"invoice_id": 999999, "reason": "x"}),
    ("GET", "/v1/credit-notes", "viewer", None),
    ("GET", "/v1/credit-notes/999999", "viewer", None),
    ("GET", "/v1/credit-notes/999999.pdf", "viewer", None),
    ("GET", "/v1/credit-notes/999999.xml", "viewer", None),
]
ALLOWED = {"viewer": {"viewer", "operator", "admin"}, "operator": {"operator", "admin"}}


async def seed_accounts(pool: asyncpg.Pool, prefix: str, n: int) -> list[str]:
    names = [f"{prefix}{i}" for i in range(n)]
    async with pool.acquire() as conn:
        await seed.base(conn)
        for name in names:
            await seed.account(conn, name)
            await seed.charge(conn, name, dt.datetime(2026, 1, 6, tzinfo=UTC), 3_000_000)
    return names


async def entries(pool: asyncpg.Pool, action: str) -> list[asyncpg.Record]:
    return list(await pool.fetch(
        "SELECT actor, entity, before, after FROM audit_log WHERE action = $1 ORDER BY seq",
        action))


@pytest.mark.parametrize(("method", "path", "least", "body"), ROUTES)
async def test_invoicing_routes_need_a_key_and_the_role(
        api: Api, method: str, path: str, least: str, body: object) -> None:  # noqa: F811
    for header in ({}, {"Authorization": "Bearer bok_0000000000000000_x"}):
        async with api.http.request(method, api.url + path, headers=header, json=body) as r:
            assert r.status == 401 and r.content_type == "application/problem+json"
    for role in ROLES:
        status, problem = await api.call(method, path, role=role, json=body)
        if role in ALLOWED[least]:
            assert status not in (401, 403), (role, method, path, problem)
        else:
            assert status == 403 and problem["code"] == "FORBIDDEN", (role, method, path)


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "9999999999"}, "limit"),
    ({"cursor": "-100169182552726225049242419318489088"}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"[99999999999999999999]").decode().rstrip("=")},
     "cursor"),
    ({"status": "void"}, "status"), ({"period": "2026-13"}, "period"),
    ({"status": "draft", "period": "null"}, "period"), ({"account_id": "a b"}, "account_id"),
])
async def test_invoice_list_validates_its_query(api: Api, params: dict[str, str],  # noqa: F811
                                                field: str) -> None:
    status, problem = await api.call("GET", "/v1/invoices", "viewer", params=params)
    assert status == 422, problem
    assert problem["errors"][0]["path"] == field


async def test_repeated_query_parameter_is_refused(api: Api) -> None:  # noqa: F811
    async with api.http.get(api.url + "/v1/invoices?limit=1&limit=2",
                            headers=api.headers("viewer")) as r:
        assert r.status == 422
        assert (await r.json())["errors"][0]["path"] == "limit"


@pytest.mark.parametrize(("body", "path"), [
    ({"invoice_id": 19131899402356813824, "reason": "x"}, "$.invoice_id"),
    ({"invoice_id": 0, "reason": "x"}, "$.invoice_id"),
    ({"invoice_id": 1, "reason": "   "}, "$.reason"),
    ({"invoice_id": 1, "reason": "x", "lines": []}, "$.lines"),
    ({"invoice_id": 1, "reason": "x", "lines": [{"line_no": 1, "amount": "-1"}]},
     "$.lines[0].amount"),
    ({"invoice_id": 1, "reason": "x", "lines": [{"line_no": 1, "amount": "1e9"}]},
     "$.lines[0].amount"),
    ({"invoice_id": 1, "reason": "x", "lines": [{"line_no": 2**40}]}, "$.lines[0].line_no"),
    ({"invoice_id": 1, "reason": "x", "extra": 1}, "$"),
])
async def test_credit_note_request_is_validated(api: Api, body: object,  # noqa: F811
                                                path: str) -> None:
    status, problem = await api.call("POST", "/v1/credit-notes", "operator", json=body)
    assert status == 422, problem
    assert problem["errors"][0]["path"].startswith(path), problem


@pytest.mark.parametrize(("body", "path"), [
    ({"period": "2026-1"}, "$.period"), ({"period": "0000-01"}, "$.period"),
    ({"period": "2026-01", "accounts": []}, "$.accounts"),
    ({"period": "2026-01", "force": True}, "$.force"),
])
async def test_bill_run_request_is_validated(api: Api, body: object,  # noqa: F811
                                             path: str) -> None:
    status, problem = await api.call("POST", "/v1/bill-runs", "operator", json=body)
    assert status == 422, problem
    assert problem["errors"][0]["path"] == path


@pytest.mark.parametrize("path", ["/v1/invoices/9223372036854775808",
                                  "/v1/invoices/99999999999999999999.pdf",
                                  "/v1/invoices/0.xml"])
async def test_out_of_range_invoice_ids_are_404(api: Api, path: str) -> None:  # noqa: F811
    status, problem = await api.call("GET", path, "viewer")
    assert status == 404 and problem["code"] == "NOT_FOUND"


async def test_http_billing_writes_are_audited(api: Api, pool: asyncpg.Pool,  # noqa: F811
                                               database_url: str) -> None:
    accounts = await seed_accounts(pool, "AUH", 3)
    key_id = api.tokens["operator"].split("_")[1]  # tokens are bok_<key id>_<secret>
    status, preview = await api.call("POST", "/v1/bill-runs", "operator",
                                     json={"period": "2026-01", "accounts": accounts,
                                           "dry_run": True})
    assert status == 201 and preview["dry_run"] and len(preview["previews"]) == 3
    assert await entries(pool, "bill_run.start") == []  # a preview writes nothing

    status, run = await api.call("POST", "/v1/bill-runs", "operator", json={
        "period": "2026-01", "accounts": accounts, "finalize": True, "force": True})
    assert status == 202 and run["state"] in ("queued", "running", "done"), run
    status, run = await api.call("GET", f"/v1/bill-runs/{run['bill_run_id']}", "viewer",
                                 params={"wait": "20"})
    assert status == 200 and run["state"] == "done" and len(run["finalized"]) == 3, run
    entity = f"bill_run:{run['bill_run_id']}"
    trail = await audit.entries(pool, entity)
    assert [e.action for e in trail] == ["bill_run.start", "bill_run.batch", "bill_run.done"]
    assert {e.actor for e in trail} == {f"key:{key_id}"}
    assert trail[1].after["invoice_ids"] == run["invoice_ids"]
    for invoice_id in run["finalized"]:
        [final] = await audit.entries(pool, f"invoice:{invoice_id}")
        assert final.action == "invoice.finalise" and final.actor == f"key:{key_id}"
        assert final.before == {"status": "draft"} and final.after["status"] == "finalised"

    # Finalising again changes nothing and audits nothing.
    status, _ = await api.call("POST", f"/v1/invoices/{run['finalized'][0]}/finalize",
                               "operator")
    assert status == 200
    assert len(await audit.entries(pool, f"invoice:{run['finalized'][0]}")) == 1

    status, note = await api.call("POST", "/v1/credit-notes", "admin", json={
        "invoice_id": run["finalized"][0], "reason": "goodwill"})
    assert status == 201, note
    [issued] = await audit.entries(pool, f"credit_note:{note['credit_note_id']}")
    assert issued.actor == f"key:{api.tokens['admin'].split('_')[1]}"
    assert issued.after["invoice_id"] == run["finalized"][0]
    assert issued.after["total_micros"] == int(note["total"].replace(".", "")) * 10_000

    # A refused credit note leaves no audit entry behind.
    before = await pool.fetchval("SELECT count(*) FROM audit_log")
    status, _ = await api.call("POST", "/v1/credit-notes", "operator", json={
        "invoice_id": run["finalized"][0], "reason": "again"})
    assert status == 422
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == before

    result = await asyncio.to_thread(verify_cli, database_url)
    assert result.returncode == 0 and "intact" in result.stdout, result.stdout + result.stderr


async def test_cli_bill_run_is_audited_as_the_user(pool: asyncpg.Pool,
                                                   database_url: str) -> None:
    accounts = await seed_accounts(pool, "AUC", 2)
    args = [arg for a in accounts for arg in ("--account", a)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "billing_oss", "bill-run", "--period", "2026-01", *args,
        "--finalize", "--force", "--json", "--database-url", database_url, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    run = json.loads(out)
    actor = f"cli:{getpass.getuser()}"
    trail = await audit.entries(pool, f"bill_run:{run['bill_run_id']}")
    assert [e.action for e in trail] == ["bill_run.start", "bill_run.batch", "bill_run.done"]
    assert {e.actor for e in trail} == {actor}
    finalised = [await audit.entries(pool, f"invoice:{i}") for i in run["finalized"]]
    assert len(finalised) == 2 and all(t[0].actor == actor for t in finalised)
    result = await asyncio.to_thread(verify_cli, database_url)
    assert result.returncode == 0 and "intact" in result.stdout, result.stdout + result.stderr
