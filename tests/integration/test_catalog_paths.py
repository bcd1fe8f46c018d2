"""One catalog, two ways in: `billing-oss catalog load FILE` and `POST /v1/tariffs` decode into
the same types, apply the same rules and store the same rows."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg

from tests.conftest import REPO
from tests.integration.api_harness import Api, api  # noqa: F401

CLI = [sys.executable, "-m", "billing_oss"]


def catalog(suffix: str) -> dict[str, Any]:
    """A catalog with an overnight band (20:00 → 08:00, wrapping midnight), an 18-digit
    prefix, a tariff-level currency and an account on no tariff; ids carry ``suffix`` so both
    loads live in one database."""
    version = {
        "effective_from": "2026-01-01T00:00:00+01:00", "timezone": "Europe/Paris",
        "zones": {"fr": ["33"], "long": ["336123456789012345"]},
        "time_bands": [{"name": "night", "days": ["mon", "tue", "wed", "thu", "fri"],
                        "from": "20:00", "to": "08:00"},
                       {"name": "day", "default": True}],
        "rates": [
            {"kind": "voice", "zone": "fr", "band": "night",
             "steps": [{"from": 0, "price": "0.01", "unit": 60, "increment": 1}]},
            {"kind": "voice", "zone": "*", "band": "*", "connect_fee": "0.05",
             "steps": [{"from": 0, "price": "0.0333333", "unit": 60, "increment": 30}],
             "rounding": {"decimals": 2, "method": "half-even"}},
        ],
    }
    return {
        "currency": "EUR",
        "tariffs": [{"id": f"paths{suffix}", "currency": "CHF", "description": "both ways",
                     "versions": [version]}],
        "accounts": [
            {"id": f"P1{suffix}", "name": "Night owl", "identifiers": [f"4179{suffix[-1:]}1"],
             "tariff": f"paths{suffix}", "attrs": {"country": "CH"}},
            {"id": f"P2{suffix}", "identifiers": [f"4179{suffix[-1:]}2"]},
        ],
    }


async def stored(pool: asyncpg.Pool, suffix: str) -> dict[str, Any]:
    """What the load left in the database, with the suffix taken back out of the ids."""
    tariff = await pool.fetchrow(
        "SELECT currency, description FROM tariffs WHERE tariff_id = $1", f"paths{suffix}")
    versions = await pool.fetch(
        "SELECT effective_from, definition::text, sha256 FROM tariff_versions "
        "WHERE tariff_id = $1 ORDER BY effective_from", f"paths{suffix}")
    accounts = await pool.fetch(
        "SELECT replace(account_id, $1, '') AS id, name, currency, attrs::text "
        "FROM accounts WHERE account_id LIKE '%' || $1 ORDER BY account_id", suffix)
    plans = await pool.fetch(
        "SELECT replace(account_id, $1, '') AS id, replace(tariff_id, $1, '') AS tariff, "
        "product FROM subscriptions WHERE account_id LIKE '%' || $1 ORDER BY account_id",
        suffix)
    return {"tariff": dict(tariff) if tariff else None,
            "versions": [dict(v) for v in versions],
            "accounts": [dict(a) for a in accounts], "plans": [dict(p) for p in plans]}


async def catalog_load(path: Path, database_url: str) -> tuple[int, str]:
    """`billing-oss catalog load FILE`, as an operator runs it: exit status and stderr."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, "catalog", "load", str(path), "--database-url", database_url, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "false"})
    _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_file_and_api_store_the_same_catalog(
    api: Api, pool: asyncpg.Pool, database_url: str, tmp_path: Path  # noqa: F811
) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog("-file")))
    status, err = await catalog_load(path, database_url)
    assert status == 0, err
    status, body = await api.call("POST", "/v1/tariffs", "operator", json=catalog("-api"))
    assert status == 201, body

    by_file, by_api = await stored(pool, "-file"), await stored(pool, "-api")
    assert by_file["versions"] and by_file["tariff"] == {"currency": "CHF",
                                                         "description": "both ways"}
    assert by_file == by_api
    assert [p["id"] for p in by_file["plans"]] == ["P1"]  # P2 is on no tariff


async def test_both_paths_refuse_what_the_engine_refuses(
    api: Api, database_url: str, tmp_path: Path  # noqa: F811
) -> None:
    cases = []
    bad = catalog("-x1")
    bad["tariffs"][0]["versions"][0]["zones"]["long"] = ["3361234567890123456"]  # 19 digits
    cases.append((bad, "tariffs[0].versions[0].zones.long[0]"))
    bad = catalog("-x2")
    bad["tariffs"][0]["versions"][0]["rates"][0]["steps"][0]["price"] = "-0.01"
    cases.append((bad, "tariffs[0].versions[0].rates[0].steps[0].price"))
    bad = catalog("-x3")
    bad["accounts"][1]["product"] = "nothing"
    cases.append((bad, "accounts[1].product"))
    for n, (body, where) in enumerate(cases):
        status, problem = await api.call("POST", "/v1/tariffs", "operator", json=body)
        assert status == 422, problem
        assert problem["errors"][0]["path"] == f"$.{where}", problem
        path = tmp_path / f"bad{n}.json"
        path.write_text(json.dumps(body))
        status, err = await catalog_load(path, database_url)
        assert status == 1 and where in err, err
