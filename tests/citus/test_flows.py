"""The main flows on a Citus cluster give what they give on one PostgreSQL.

The same inputs — a catalog of 40 accounts, a usage file, a tariff correction and its
rerate, a finalised bill run, payments allocated to invoices, credit notes on paid and
unpaid invoices, a dunning run, a run of every assurance control, a pricing simulation — go
through the command line (the credit notes through the issuer) against a database on the
cluster and one on plain PostgreSQL; per-account totals, suspense, invoices, rollups, ledger
entries, allocations, dunning steps, the controls' results (every one runs, none errs) and
the simulation's result must match.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from billing_oss.core.records import UsageRecord
from billing_oss.server.billing import issuing
from tests.conftest import REPO

pytestmark = pytest.mark.citus

CLI = [sys.executable, "-m", "billing_oss"]
ACCOUNTS = 40
SIMULATION_VOLATILE = ("simulation_id", "elapsed_s", "created_at", "timings")


def cli(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "--database-url", database_url], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "false"})


def catalog() -> dict[str, Any]:
    """The demo catalog with 40 more accounts on the retail and business tariffs."""
    out: dict[str, Any] = json.loads((REPO / "config/demo-catalog.json").read_text())
    for i in range(ACCOUNTS):
        business = i % 3 == 0
        out["accounts"].append({
            "id": f"S{i:03d}", "name": f"Scale {i}", "identifiers": [f"3361900{i:04d}"],
            "tariff": "business" if business else "retail",
            "product": "business-pro" if business else "mobile-s",
            "attrs": {"country": "FR", "address": "1 rue", "postcode": "75001",
                      "city": "Paris"}})
    return out


def corrected(base: dict[str, Any]) -> dict[str, Any]:
    """A new business version from 15 March: national calls at 0.06 a minute."""
    out = copy.deepcopy(base)
    business = next(t for t in out["tariffs"] if t["id"] == "business")
    version = copy.deepcopy(business["versions"][-1])
    version["effective_from"] = "2026-03-15T00:00:00Z"
    for rate in version["rates"]:
        if rate["kind"] == "voice" and rate["zone"] == "national":
            rate["steps"][0]["price"] = "0.06"
    business["versions"].append(version)
    return out


def usage_file(path: Path) -> Path:
    records = []
    for n in range(1200):
        i = n % ACCOUNTS
        day = 1 + n % 28
        kind = ("voice", "sms", "data")[n % 3]
        extra: dict[str, Any] = {"duration_s": 30 + n % 400} if kind == "voice" else (
            {"volume_up": 1000 * n, "volume_down": 5000 * n} if kind == "data" else {})
        records.append(UsageRecord(
            record_key=f"r{n}", source="file", kind=kind,
            event_time=f"2026-03-{day:02d}T{8 + n % 12:02d}:00:00Z",
            calling=f"3361900{i:04d}", msisdn=f"3361900{i:04d}", called="33145678901",
            **extra))
    for n in range(5):  # nobody's number: suspense
        records.append(UsageRecord(record_key=f"x{n}", source="file", kind="voice",
                                   event_time="2026-03-05T10:00:00Z", duration_s=60,
                                   calling="33600000000", called="33145678901"))
    path.write_bytes(b"\n".join(msgspec.json.encode(r) for r in records) + b"\n")
    return path


async def credit(database_url: str) -> None:
    """Credit notes in full on an overpaid, a part-paid and an unpaid account's invoice: the
    ledger takes each off its invoice, and what was paid on it goes back to the payment."""
    conn = await asyncpg.connect(database_url)
    try:
        for account in ("S000", "S001", "S003"):
            invoice_id = await conn.fetchval(
                "SELECT min(invoice_id) FROM invoices WHERE account_id = $1"
                " AND status = 'finalised'", account)
            await issuing.issue_credit_note(conn, invoice_id, "goodwill", None, "CN",
                                            dt.date(2026, 4, 20), actor="test")
    finally:
        await conn.close()


async def run_flows(database_url: str, tmp: Path, *, citus: bool) -> None:
    base = catalog()
    (tmp / "catalog.json").write_text(json.dumps(base))
    out = cli(["catalog", "load", str(tmp / "catalog.json")], database_url)
    assert out.returncode == 0, out.stderr
    out = cli(["ingest", str(usage_file(tmp / "usage.jsonl")), "--json"], database_url)
    assert out.returncode == 3, out.stderr  # five records in suspense
    assert json.loads(out.stdout)["counts"]["charged"] == 1200
    (tmp / "corrected.json").write_text(json.dumps(corrected(base)))
    out = cli(["catalog", "load", str(tmp / "corrected.json")], database_url)
    assert out.returncode == 0, out.stderr
    out = cli(["rerate", "--from", "2026-03-01T00:00:00Z", "--to", "2026-04-01T00:00:00Z"],
              database_url)
    assert out.returncode == 0, out.stdout + out.stderr
    out = cli(["bill-run", "--period", "2026-03", "--finalize"], database_url)
    assert out.returncode == 0, out.stdout + out.stderr
    # Collections: payments allocated to the finalised invoices (in full, in part, too much).
    for account, amount in (("S000", "500.00"), ("S001", "5.00"), ("S002", "12.34")):
        out = cli(["payment", "add", "--account", account, "--amount", amount,
                   "--date", "2026-04-10", "--external-id", f"p-{account}"], database_url)
        assert out.returncode == 0, out.stdout + out.stderr
    await credit(database_url)
    # Dunning of what stays unpaid: every step of the ladder is due by then.
    out = cli(["dunning", "run", "--as-of", "2030-01-01"], database_url)
    assert out.returncode == 0, out.stdout + out.stderr
    # Revenue assurance over all of it: every control, as of mid-April.
    out = cli(["assure", "run", "--as-of", "2026-04-15T00:00:00Z"], database_url)
    assert out.returncode in (0, 3), out.stdout + out.stderr
    # A pricing simulation of March under the original catalog.
    out = cli(["simulate", "--catalog", str(tmp / "catalog.json"), "--from", "2026-03",
               "--format", "json"], database_url)
    assert out.returncode == 0, out.stdout + out.stderr
    (tmp / "simulation.json").write_text(out.stdout)


async def outcome(database_url: str) -> dict[str, Any]:
    """What a user sees of the run: per-account money, suspense, invoices and their lines."""
    conn = await asyncpg.connect(database_url)
    try:
        totals = await conn.fetch(
            "SELECT account_id, currency, kind, count(*) AS n, sum(amount_micros) AS micros"
            " FROM charges GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
        suspense = await conn.fetch(
            "SELECT record_key, reason, state FROM suspense ORDER BY record_key")
        invoices = await conn.fetch(
            "SELECT account_id, period, currency, status, net_micros, tax_micros,"
            " total_micros FROM invoices ORDER BY account_id, period, currency")
        lines = await conn.fetch(
            "SELECT i.account_id, l.line_no, l.description, l.net_micros"
            " FROM invoice_lines l JOIN invoices i USING (account_id, invoice_id)"
            " ORDER BY 1, 2")
        ledger = await conn.fetch(
            "SELECT account_id, kind, currency, amount_micros, entry_date, due_date,"
            " applies_to IS NOT NULL, invoice_id IS NOT NULL, credit_note_id IS NOT NULL"
            " FROM ledger_entries ORDER BY 1, 2, 4, 5")
        allocated = await conn.fetch(
            "SELECT account_id, sum(amount_micros), count(*) FILTER (WHERE amount_micros < 0)"
            " FROM payment_allocations GROUP BY 1 ORDER BY 1")
        controls = await conn.fetch(
            "SELECT control, status, checked, offending, unpriced, at_stake::text, error"
            " FROM assurance_results ORDER BY control")
        dunning = await conn.fetch(
            "SELECT account_id, step_no, action, run_on, days_past_due, open_micros,"
            " fee_entry_id IS NOT NULL AS fee FROM dunning_events ORDER BY 1, 2, 4")
        rollups = await conn.fetch(
            "SELECT account_id, service, sum(amount_micros) AS micros, sum(records) AS n"
            " FROM charge_rollups GROUP BY 1, 2 ORDER BY 1, 2")
    finally:
        await conn.close()
    return {"totals": [tuple(r) for r in totals], "suspense": [tuple(r) for r in suspense],
            "invoices": [tuple(r) for r in invoices], "lines": [tuple(r) for r in lines],
            "rollups": [tuple(r) for r in rollups], "controls": [tuple(r) for r in controls],
            "ledger": [tuple(r) for r in ledger], "allocated": [tuple(r) for r in allocated],
            "dunning": [tuple(r) for r in dunning]}


def simulation(tmp: Path) -> Any:
    """The simulation's result, but for what differs by run (its id and timings)."""
    result = json.loads((tmp / "simulation.json").read_text())
    for volatile in SIMULATION_VOLATILE:
        result.pop(volatile, None)
    return result


async def test_ingest_rerate_bill_run_controls_equal_single_node(
        citus_url: str, plain_url: str, tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "p").mkdir()
    await run_flows(citus_url, tmp_path / "c", citus=True)
    await run_flows(plain_url, tmp_path / "p", citus=False)
    on_citus, on_one = await outcome(citus_url), await outcome(plain_url)
    assert len(on_one["invoices"]) >= ACCOUNTS
    assert any(row[2] == "reversal" for row in on_one["totals"])  # the rerate moved money
    assert len(on_one["allocated"]) == 3
    assert sum(r[2] for r in on_one["allocated"]) >= 2  # credit notes released allocations
    assert sum(r[1] == "credit_note" for r in on_one["ledger"]) == 3
    assert len(on_one["controls"]) >= 20 and not any(r[6] for r in on_one["controls"])
    assert [r[0] for r in on_citus["controls"] if r[6]] == []
    assert on_one["dunning"] and {r[2] for r in on_one["dunning"]} >= {"reminder", "fee"}
    for key in on_one:
        assert on_citus[key] == on_one[key], key
    assert simulation(tmp_path / "c") == simulation(tmp_path / "p")
