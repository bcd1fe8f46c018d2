"""`billing-oss archive ...` as an operator runs it, configured through the environment, and
the plan and the archives through the admin API."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import asyncpg

from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.collections import payments
from billing_oss.server.collections.model import NewPayment
from billing_oss.server.retention import pseudonyms
from tests.conftest import REPO
from tests.integration import billing_seed
from tests.integration.api_harness import live_api, seed_usage
from tests.integration.test_cli_ingest import CLI

KEY = "cli test key"
AS_OF = "2026-03-10T00:00:00Z"


def archive(args: list[str], database_url: str, archive_dir: Path, **env_extra: str
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "false",
           "BILLING_OSS_RETENTION_ARCHIVE_AFTER_MONTHS": "6",
           "BILLING_OSS_RETENTION_PSEUDONYMISE_AFTER_DAYS": "90",
           "BILLING_OSS_RETENTION_PSEUDONYM_KEY": KEY,
           "BILLING_OSS_RETENTION_ARCHIVE_DIR": str(archive_dir), **env_extra}
    return subprocess.run([*CLI, "archive", *args, "--database-url", database_url], cwd=REPO,
                          capture_output=True, text=True, timeout=180, env=env)


async def run(args: list[str], database_url: str, archive_dir: Path, **env_extra: str
              ) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(archive, args, database_url, archive_dir, **env_extra)


async def test_plan_run_verify_restore(pool: asyncpg.Pool, database_url: str,
                                       tmp_path: Path) -> None:
    async with pool.acquire() as conn:
        await billing_seed.base(conn)
        await billing_seed.account(conn, "A")
    for day in ("2025-01-05", "2025-01-06", "2025-02-05"):
        await seed_usage(pool, "A", f"{day}T10:00:00Z", amount_micros=250_000)
    for period in ("2025-01", "2025-02"):
        await bill_run(pool, period, billing_seed.SETTINGS, accounts=["A"], finalize=True,
                       force=True, now=dt.datetime(2025, 3, 1, tzinfo=dt.UTC), actor="test")
    january = await pool.fetchrow("SELECT invoice_id, payable_micros FROM invoices"
                                  " WHERE period = '2025-01'")
    await payments.record(pool, "test", NewPayment(
        account_id="A", amount_micros=january["payable_micros"],
        received_on=dt.date(2025, 3, 2), method="transfer"))

    # The archiving a tick would do is what the steps below do one by one.
    out = await run(["tick", "--as-of", AS_OF], database_url, tmp_path,
                    BILLING_OSS_RETENTION_ARCHIVE_AFTER_MONTHS="0")
    assert out.returncode == 0, out.stderr
    assert "partitions 2026-03, 2026-04, 2026-05, 2026-06; 3 records pseudonymised;" \
        " archived: none" in out.stdout
    callings = {r[0] for r in await pool.fetch("SELECT calling FROM usage_records")}
    assert callings == {pseudonyms.pseudonym(KEY, "33611111111")}

    out = await run(["plan", "--as-of", AS_OF, "--json"], database_url, tmp_path)
    assert out.returncode == 0, out.stderr
    plan = {p["month"]: p for p in map(json.loads, out.stdout.splitlines())}
    assert plan["2025-01"]["action"] == "archive"
    assert plan["2025-02"] == {"month": "2025-02", "action": "hold",
                               "rows": {"charges": 1, "usage_records": 1}, "estimated": False,
                               "reasons": ["1 finalised invoice(s) of the period not fully paid"]}
    assert (plan["2026-03"]["action"], plan["2026-03"]["estimated"]) == ("keep", True)
    out = await run(["plan", "--as-of", AS_OF], database_url, tmp_path)
    assert "2026-03  keep     charges ~0, usage_records ~0  within the last 6 months" \
        in out.stdout.splitlines()

    out = await run(["run", "--month", "2025-02", "--as-of", AS_OF], database_url, tmp_path)
    assert (out.returncode, out.stderr) == (1, "billing-oss archive run: month 2025-02 is not "
                                               "archived: 1 finalised invoice(s) of the period"
                                               " not fully paid\n")
    out = await run(["run", "--as-of", AS_OF], database_url, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("2025-01  dropped  charges 2 rows, usage_records 2 rows  ")
    assert (tmp_path / "2025-01" / "manifest.json").exists()
    assert await pool.fetchval("SELECT count(*) FROM usage_records") == 1

    async with live_api(pool, database_url,
                        overrides={"retention.archive_after_months": 6}) as api:
        status, body = await api.call("GET", "/v1/archives/plan", "operator",
                                      params={"as_of": AS_OF})
        assert status == 200, body
        assert body["archive_after_months"] == 6
        assert [p["action"] for p in body["items"] if p["month"] < "2025-03"] == ["hold"]
        status, body = await api.call("GET", "/v1/archives", "operator")
        assert status == 200 and [a["month"] for a in body["items"]] == ["2025-01"]
        assert body["items"][0]["tables"][0]["rows"] == 2
        status, _ = await api.call("GET", "/v1/archives", "viewer")
        assert status == 403

    out = await run(["verify"], database_url, tmp_path)
    assert (out.returncode, out.stdout) == (0, "every archive verifies\n")
    usage_file = tmp_path / "2025-01" / "usage_records_2025_01.csv.gz"
    usage_file.write_bytes(usage_file.read_bytes() + b"x")
    out = await run(["verify"], database_url, tmp_path)
    assert out.returncode == 1 and "usage_records_2025_01.csv.gz: sha256" in out.stdout
    out = await run(["restore", "2025-01"], database_url, tmp_path)
    assert out.returncode == 1 and "does not verify" in out.stderr
    usage_file.write_bytes(usage_file.read_bytes()[:-1])

    out = await run(["restore", "2025-01", "--json"], database_url, tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"] == "restored"
    assert await pool.fetchval("SELECT count(*) FROM usage_records") == 3
    out = await run(["list"], database_url, tmp_path)
    assert out.stdout.startswith("2025-01  restored  ")
    out = await run(["run", "--month", "2025-13"], database_url, tmp_path)
    assert out.returncode == 2 and "'2025-13' is not a month" in out.stderr
