"""Roaming settlement on a Citus cluster gives what it gives on one PostgreSQL.

Through the command line, against a database on the cluster and one on plain PostgreSQL:
the partner of ``config/demo-partners.json``, its subscribers' visiting usage ingested
(suspense, as nobody's) and settled in a TAP file out; then the partner's TAP file in for
our subscribers roaming there, charged to their accounts. The file ledger, the TAP out's
bytes, the roaming charges and the suspense must match.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from billing_oss.adapters.formats import tap3_writer as writer
from billing_oss.core.records import UsageRecord
from tests.citus.test_flows import catalog, cli

pytestmark = pytest.mark.citus

THEM, US = "DEUD1", "FRAF1"
ROAMERS = 5  # our accounts S000 … S004, each with an IMSI, roaming in the partner's network


def roamer_imsi(i: int) -> str:
    return f"20801{i:010d}"


def our_catalog() -> dict[str, Any]:
    out = catalog()
    for account in out["accounts"][-40:][:ROAMERS]:
        account["identifiers"].append(roamer_imsi(int(account["id"][1:])))
    return out


def visiting(path: Path) -> Path:
    """The partner's subscribers' calls and texts in our network in March."""
    records = [UsageRecord(
        record_key=f"v{n}", source="msc", kind="voice" if n % 3 else "sms",
        event_time=f"2026-03-{1 + n % 27:02d}T{9 + n % 9:02d}:00:00Z",
        calling=f"491701{n % 7:07d}", called="33145678901", imsi=f"26201{n % 7:010d}",
        **({"duration_s": 30 + 7 * n} if n % 3 else {})) for n in range(30)]
    path.write_bytes(b"\n".join(msgspec.json.encode(r) for r in records) + b"\n")
    return path


def tap_in(path: Path) -> Path:
    """The partner's TAP file of our subscribers' usage in its network in March."""
    events = []
    for n in range(12):
        i = n % ROAMERS
        msisdn = f"3361900{i:04d}"
        when = f"202603{10 + n:02d}100000"
        if n % 4 == 3:
            events.append((14, roamer_imsi(i), msisdn, None, when, 1, 300 + n, None,
                           2_000_000 + n, 500_000, "internet", 77, 900 + n, 1, 1))
        else:
            events.append((9 if n % 2 else 10, roamer_imsi(i), msisdn, f"4930{n:07d}", when,
                           1, 40 + 9 * n, "11", None, None, None, None, 700 + 13 * n, 1, 1))
    h = writer.TapHeader(sender=THEM, recipient=US, fsn=1, created="20260405000000",
                         cutoff="20260405000000", available="20260405000000",
                         utc_offset="+0100", tap_currency="SDR", decimal_places=3)
    data, _ = writer.encode_transfer_batch(h, events)
    path.write_bytes(data)
    return path


def settle(database_url: str, tmp: Path) -> None:
    (tmp / "catalog.json").write_text(json.dumps(our_catalog()))
    out = cli(["catalog", "load", str(tmp / "catalog.json")], database_url)
    assert out.returncode == 0, out.stderr
    out = cli(["settle", "partners", "load", "config/demo-partners.json"], database_url)
    assert out.returncode == 0, out.stderr
    out = cli(["ingest", str(visiting(tmp / "visiting.jsonl"))], database_url)
    assert out.returncode == 3, out.stdout + out.stderr  # nobody's: suspense
    out = cli(["settle", "generate", "--partner", THEM, "--from", "2026-03-01",
               "--to", "2026-04-01"], database_url)
    assert out.returncode == 0, out.stdout + out.stderr
    inbound = tap_in(tmp / f"CD{THEM}{US}00001")
    out = cli(["settle", "receive", str(inbound)], database_url)
    assert out.returncode == 0, out.stdout + out.stderr


async def outcome(database_url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        files = await conn.fetch(
            "SELECT partner, direction, file_type, name, fsn, event_count,"
            " total_charge, state FROM settlement_files ORDER BY direction, name")
        charges = await conn.fetch(
            "SELECT c.account_id, u.kind, u.event_time, c.amount_micros, c.currency, c.zone"
            " FROM charges c JOIN usage_records u ON u.account_id = c.account_id"
            " AND u.event_time = c.event_time AND u.usage_id = c.usage_id"
            " WHERE u.source LIKE 'roaming:%' ORDER BY 1, 3")
        suspense = await conn.fetch(
            "SELECT record_key, reason, state, resolution FROM suspense ORDER BY record_key")
    finally:
        await conn.close()
    return {"files": [tuple(r) for r in files], "charges": [tuple(r) for r in charges],
            "suspense": [tuple(r) for r in suspense]}


async def test_tap_out_and_in_equal_single_node(citus_url: str, plain_url: str,
                                                tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "p").mkdir()
    settle(citus_url, tmp_path / "c")
    settle(plain_url, tmp_path / "p")
    on_citus, on_one = await outcome(citus_url), await outcome(plain_url)
    directions = [(r[1], r[2], r[7]) for r in on_one["files"]]
    assert ("out", "tap", "generated") in directions and ("in", "tap", "accepted") in directions
    assert len(on_one["charges"]) == 12
    for key in on_one:
        assert on_citus[key] == on_one[key], key
