"""`billing-oss ingest --format 3gpp|tap3` through the pipeline into PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.generators.tap3_files import tap3_file
from tests.generators.threegpp_files import encode_record, write_3gpp_file
from tests.unit.test_native_cdr3gpp import MO_CALL

CLI = [sys.executable, "-m", "billing_oss"]


def cli(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "--database-url", database_url], cwd=REPO,
                          capture_output=True, text=True, timeout=180, check=False,
                          env={**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "false"})


def test_ingest_3gpp_and_tap3_files(database_url: str, tmp_path: Path) -> None:
    out = cli(["catalog", "load", str(REPO / "config/demo-catalog.json")], database_url)
    assert out.returncode == 0, out.stderr

    complete = {k: v for k, v in MO_CALL.items() if k != "sequenceNumber"}
    calls = [encode_record("moCallRecord", {**complete, "callReference": bytes([i])})
             for i in range(3)]
    odd = bytes([0xA5, 0x03, 0x80, 0x01, 0x05])  # transitRecord: not supported -> suspense
    path = tmp_path / "msc1.cdr"
    with open(path, "wb") as fh:
        write_3gpp_file(fh, [*calls, odd], sequence_number=7)
    out = cli(["ingest", "--format", "3gpp", "--source", "msc1", "--json", str(path)],
              database_url)
    assert out.returncode == 3, out.stderr
    result = json.loads(out.stdout)
    assert result["counts"] == {"in": 4, "charged": 3, "suspense": 1, "duplicates": 0,
                                "filtered": 0, "pending": 0}
    # progress without a terminal: the header's CDR count is the total, the end is logged
    assert "4/4 records" in out.stderr and "ETA 0 s" in out.stderr

    events = [{"type": "moc", "imsi": "208011234567890", "msisdn": "33611111111",
               "called": "33622222222", "start": "20260115112030", "utc_code": 1,
               "duration": 60, "charges": [("00", 1500)]}]
    tap = tmp_path / "CDAAAAABBBBB00001"
    tap.write_bytes(tap3_file(events))
    out = cli(["ingest", "--format", "tap3", "--source", "roaming", "--json", str(tap)],
              database_url)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["counts"]["charged"] == 1
