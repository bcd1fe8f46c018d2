"""`billing-oss decode` as a process: JSON lines, summary, exit codes, error offsets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import VECTORS
from tests.generators.threegpp_files import write_fast_3gpp


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "billing_oss", "decode", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_3gpp_json_lines_and_summary(tmp_path: Path) -> None:
    path = tmp_path / "a.cdr"
    with open(path, "wb") as fh:
        write_fast_3gpp(fh, 16)
    proc = run("--format", "3gpp", str(path))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 16 and {r["kind"] for r in lines} == {"voice", "sms", "data"}
    summary = run("--format", "3gpp", "--summary", str(path))
    body = json.loads(summary.stdout)
    assert body["records"] == 16 and body["info"]["sequence_number"] == 1


def test_malformed_file_exits_1_naming_offset_after_records(tmp_path: Path) -> None:
    path = tmp_path / "cut.cdr"
    with open(path, "wb") as fh:
        write_fast_3gpp(fh, 16)
    path.write_bytes(path.read_bytes()[:-30])
    proc = run("--format", "3gpp", str(path))
    assert proc.returncode == 1
    assert len(proc.stdout.splitlines()) == 15
    assert "at offset" in proc.stderr and "runs past the end" in proc.stderr


def test_tap3_audit_mismatch_exits_1_with_both_numbers() -> None:
    proc = run("--format", "tap3", str(VECTORS / "tap_3_12_valid.ber"))
    assert proc.returncode == 1
    assert len(proc.stdout.splitlines()) == 4
    assert "2.300" in proc.stderr and "71.200" in proc.stderr


def test_csv_with_timezone_option(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_text('"","1","2","c","","SIP/1","","Dial","","2026-01-15 10:00:00",'
                    '"2026-01-15 10:00:05","2026-01-15 10:01:05",65,60,"ANSWERED","D","u1",""\n')
    proc = run("--format", "csv", "--option", "timezone=Europe/Paris", str(path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["event_time"] == "2026-01-15T09:00:05Z"
