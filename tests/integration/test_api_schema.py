"""Property-based API test: schemathesis fuzzes every operation of `/v1/openapi.json` (admin,
invoicing and `POST /v1/usage` ingest) on a live server (loopback, admin key) and must find
no 5xx and no response outside the schema (undocumented status, wrong content type, body not
matching its declared schema). The coverage phase sends the boundary values of every
declared limit (ids at 2**63, limits 0 and 501...); the fuzzing phase random ones."""

import asyncio
import datetime as dt
import os
import shutil
import sys
from pathlib import Path

import asyncpg
import pytest

from billing_oss.server.billing import issuing
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.http.keys import API
from billing_oss.server.http.routing import openapi_path
from tests.integration import billing_seed
from tests.integration.api_harness import Api, api  # noqa: F401

# Checks, and per operation exceptions. `POST /v1/usage` takes a batch whose bad entries are
# rejected one by one (200 with their reasons), by design, so a schema-violating body is not
# refused as a whole there; it also commits usage, so fewer examples keep the run short.
CONFIG = """
[checks]
not_a_server_error.enabled = true
status_code_conformance.enabled = true
content_type_conformance.enabled = true
response_schema_conformance.enabled = true
negative_data_rejection.enabled = true
positive_data_acceptance.enabled = false
missing_required_header.enabled = false
unsupported_method.enabled = false
use_after_free.enabled = false
ensure_resource_availability.enabled = false
ignored_auth.enabled = false
response_headers_conformance.enabled = false

[[operations]]
include-path = "/v1/usage"
include-method = "POST"
checks.negative_data_rejection.enabled = false
generation.max-examples = 10
"""
# Examples per operation in the fuzzing phase; the whole run stays around a minute.
MAX_EXAMPLES = int(os.environ.get("BILLING_OSS_SCHEMATHESIS_EXAMPLES", "25"))
# BILLING_OSS_SCHEMATHESIS_TAGS=invoicing,ingest narrows a run while debugging.
TAGS = os.environ.get("BILLING_OSS_SCHEMATHESIS_TAGS", "")


def tag_filter() -> list[str]:
    return ["--include-tag-regex", f"^({TAGS.replace(',', '|')})$"] if TAGS else []


def schemathesis_cli() -> str:
    found = Path(sys.executable).parent / "st"
    return str(found) if found.exists() else (shutil.which("st") or "st")


async def test_openapi_document_is_complete(api: Api) -> None:  # noqa: F811
    status, doc = await api.call("GET", "/v1/openapi.json", role=None)
    assert status == 200 and doc["openapi"] == "3.1.0"
    # The SOAP routes speak XML and are described by their WSDL (test_soap.py), not here.
    xml_only = {(op.method, openapi_path(op.path)) for op in api.app[API].operations
                if not op.openapi}
    assert xml_only == {("GET", "/soap/v1"), ("POST", "/soap/v1")}
    # The console's pages (/console) are HTML for browsers (test_console.py), not the API.
    routes = {(r.method, openapi_path(r.resource.canonical)) for r in api.app.router.routes()
              if r.resource is not None and r.method != "HEAD"
              and not r.resource.canonical.startswith("/console")} - xml_only
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (method, path)
            if "x-roles" in op:
                assert {"401", "403"} <= set(op["responses"]), (method, path)


async def test_schemathesis_finds_no_5xx_and_no_response_outside_the_schema(
        api: Api, pool: asyncpg.Pool, tmp_path: Path) -> None:  # noqa: F811
    # Something behind the small ids the fuzzer tries first, so it reaches past the 404s.
    await api.call("POST", "/v1/tariffs", json={"tariffs": [{"id": "ST", "versions": []}]})
    for i in range(3):
        await pool.execute("INSERT INTO suspense (source, reason, record) VALUES"
                           " ('st', 'NO_ZONE', '{\"kind\": \"voice\"}')")
        await pool.execute("INSERT INTO source_files (source, name, format, sha256)"
                           " VALUES ('st', $1, 'csv', $1)", f"f{i}")
    await seed_invoices(pool)
    await seed_billing_catalog(api)
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    process = await asyncio.create_subprocess_exec(
        schemathesis_cli(), "--config-file", str(tmp_path / "schemathesis.toml"), "run",
        f"{api.url}/v1/openapi.json",
        "--header", f"Authorization: Bearer {api.tokens['admin']}",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES), "--seed", "20260101", "--workers", "1",
        "--request-timeout", "10", "--suppress-health-check", "all",
        "--no-color", *tag_filter(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # its crash cache lands here, not in the repository
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    text = out.decode(errors="replace")
    print(text[-2500:])
    assert process.returncode == 0, text[-6000:]
    assert "passed" in text


async def seed_invoices(pool: asyncpg.Pool) -> None:
    """Invoices 1–2 finalised (creditable), 3–4 drafts, so every invoicing route has data."""
    async with pool.acquire() as conn:
        await billing_seed.base(conn)
        for i in range(4):
            await billing_seed.account(conn, f"SI{i}")
            await billing_seed.charge(conn, f"SI{i}", dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
                                      2_500_000)
    run = await bill_run(pool, "2026-01", billing_seed.SETTINGS, actor="test",
                         accounts=[f"SI{i}" for i in range(4)])
    assert len(run.invoice_ids) == 4
    async with pool.acquire() as conn:
        await issuing.finalise(conn, run.invoice_ids[:2], "ST", dt.date(2026, 2, 1), 30,
                                 actor="test")


async def seed_billing_catalog(api: Api) -> None:  # noqa: F811
    """Discounts 1–2, a product, a tax rate and adjustments of SI0 behind the fuzzed ids."""
    for code in ("ST-1", "ST-2"):
        await api.call("POST", "/v1/discounts", json={"code": code, "kind": "percentage",
                                                      "percent": "5"})
    await api.call("PUT", "/v1/products/ST", json={"currency": "EUR", "recurring_fee": "1"})
    await api.call("POST", "/v1/tax-rates", json={"jurisdiction": "ES", "rate": "21",
                                                  "valid_from": "2012-09-01"})
    await api.call("POST", "/v1/accounts/SI0/adjustments", json={"amount": "1.00",
                                                                 "description": "st"})


@pytest.mark.parametrize("path", ["/v1/accounts/%00", "/v1/accounts?name_prefix=%00",
                                  "/v1/suspense/99999999999999999999"])
async def test_hostile_inputs_are_client_errors(api: Api, path: str) -> None:  # noqa: F811
    async with api.http.get(api.url + path, headers=api.headers()) as r:
        assert 400 <= r.status < 500 and r.content_type == "application/problem+json"


async def test_every_list_validates_limit_and_cursor(api: Api) -> None:  # noqa: F811
    status, doc = await api.call("GET", "/v1/openapi.json", role=None)
    mine = {"accounts", "subscriptions", "tariffs", "usage", "charges", "suspense", "rerate",
            "files", "api-keys", "products", "tax-rates", "discounts", "adjustments"}
    lists = [path for path, ops in doc["paths"].items()
             if set(ops.get("get", {}).get("tags", [])) & mine
             and any(p["name"] == "limit" for p in ops["get"].get("parameters", []))]
    assert len(lists) >= 14
    for path in lists:
        url = path.replace("{tariff_id}", "ST").replace("{account_id}", "SI0")
        for params, field in (({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"),
                              ({"limit": "ten"}, "limit"), ({"cursor": "%%%"}, "cursor")):
            names = [p["name"] for p in doc["paths"][path]["get"]["parameters"]]
            if field not in names:
                continue
            status, problem = await api.call("GET", url, params=params)
            assert status == 422, (path, params, problem)
            assert problem["errors"][0]["path"] == field, (path, problem)
