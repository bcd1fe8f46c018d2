"""`billing-oss catalog load`, `ingest` and `suspense list|retry` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import msgspec

from billing_oss.core.records import UsageRecord
from tests.conftest import REPO

CLI = [sys.executable, "-m", "billing_oss"]


def cli(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "--database-url", database_url], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "false"})


def test_load_ingest_reconcile_replay_and_retry(database_url: str, tmp_path: Path) -> None:
    catalog = json.loads((REPO / "config/demo-catalog.json").read_text())
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    out = cli(["catalog", "load", str(path)], database_url)
    assert out.returncode == 0, out.stderr

    broken = dict(catalog, tariffs=[{"id": "x", "versions": [{"effective_from": "soon"}]}])
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    out = cli(["catalog", "load", str(tmp_path / "broken.json")], database_url)
    assert out.returncode == 1 and "tariffs[0].versions[0]" in out.stderr

    records = [UsageRecord(record_key=f"c{i}", source="file", kind="voice",
                           event_time="2026-01-14T10:00:00Z", duration_s=60,
                           calling="33611111111", called="33612345678") for i in range(5)]
    records.append(UsageRecord(record_key="stranger", source="file", kind="voice",
                               event_time="2026-01-14T10:00:00Z", duration_s=60,
                               calling="33600000000", called="33612345678"))
    cdrs = tmp_path / "cdrs.jsonl"
    cdrs.write_bytes(b"\n".join(msgspec.json.encode(r) for r in records) + b"\n")
    out = cli(["ingest", str(cdrs), "--json"], database_url)
    assert out.returncode == 3, out.stderr  # one record in suspense: partial success
    result = json.loads(out.stdout)
    assert result["counts"] == {"in": 6, "charged": 5, "suspense": 1, "duplicates": 0,
                                "filtered": 0, "pending": 0}
    assert set(result["totals"]) == {"EUR"} and not result["replay"]

    out = cli(["ingest", str(cdrs)], database_url)
    assert "already ingested" in out.stdout and "charged 5" in out.stdout

    out = cli(["suspense", "list", "--json"], database_url)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["record_key"], r["reason"]) for r in rows] == [("stranger", "UNKNOWN_ACCOUNT")]

    catalog["accounts"].append({"id": "A9", "identifiers": ["33600000000"], "tariff": "retail"})
    path.write_text(json.dumps(catalog))
    assert cli(["catalog", "load", str(path)], database_url).returncode == 0
    out = cli(["suspense", "retry"], database_url)
    assert out.returncode == 0 and "charged 1" in out.stdout, out.stdout + out.stderr
    assert "no suspense records" in cli(["suspense", "list"], database_url).stdout


async def test_charges_name_the_version_zone_and_band(pool: asyncpg.Pool) -> None:
    # Runs after the test above on the same module database.
    rows = await pool.fetch("SELECT c.tariff_version_id, c.zone, c.band, c.amount_micros, "
                            "v.tariff_id FROM charges c JOIN tariff_versions v "
                            "USING (tariff_version_id)")
    assert len(rows) == 6
    assert {(r["tariff_id"], r["zone"], r["band"]) for r in rows} == {
        ("retail", "national", "peak")}
    # 0.10 connect + 60 s at 0.20/60 s = 0.30 EUR (minimum 0.15 does not apply).
    assert {r["amount_micros"] for r in rows} == {300_000}
