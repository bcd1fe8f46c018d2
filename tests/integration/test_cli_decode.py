"""`billing-oss decode` as a process: JSON lines, summary, exit codes, error offsets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import VECTORS
from tests.generators.tap3_files import tap3_file
from tests.generators.threegpp_files import fast_records, write_3gpp_file, write_fast_3gpp


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


def test_file_cut_mid_record_exits_3_naming_offset_after_records(tmp_path: Path) -> None:
    path = tmp_path / "cut.cdr"
    with open(path, "wb") as fh:
        write_fast_3gpp(fh, 16)
    data = path.read_bytes()
    path.write_bytes(data[:-30])
    proc = run("--format", "3gpp", str(path))
    assert proc.returncode == 3
    assert len(proc.stdout.splitlines()) == 15
    assert "runs past the end" in proc.stderr and "incomplete file" in proc.stderr
    assert f"declares {len(data)} bytes and the bytes stop at offset {len(data) - 30}: " in (
        proc.stderr)


def test_file_cut_on_a_record_boundary_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "cut.cdr"
    with open(path, "wb") as fh:
        write_fast_3gpp(fh, 16)
    data = path.read_bytes()
    last = list(fast_records(16))[-1]
    path.write_bytes(data[:-(len(last) + 4)])
    proc = run("--format", "3gpp", str(path))
    assert proc.returncode == 3, proc.stderr
    assert len(proc.stdout.splitlines()) == 15
    assert f"incomplete file: its header declares {len(data)} bytes" in proc.stderr
    assert f"at offset {len(data) - len(last) - 4}" in proc.stderr


def test_tap3_audit_mismatch_exits_3_with_both_numbers_and_offset() -> None:
    proc = run("--format", "tap3", str(VECTORS / "tap_3_12_valid.ber"))
    assert proc.returncode == 3
    assert len(proc.stdout.splitlines()) == 4
    assert "2.300" in proc.stderr and "71.200" in proc.stderr
    assert "(AuditControlInfo) at offset " in proc.stderr


def test_csv_with_timezone_option(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_text('"","1","2","c","","SIP/1","","Dial","","2026-01-15 10:00:00",'
                    '"2026-01-15 10:00:05","2026-01-15 10:01:05",65,60,"ANSWERED","D","u1",""\n')
    proc = run("--format", "csv", "--option", "timezone=Europe/Paris", str(path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["event_time"] == "2026-01-15T09:00:05Z"


TAP3 = VECTORS.parent / "tap3"
MOC = {"type": "moc", "imsi": "208011234567890", "msisdn": "33611111111",
       "called": "33140000000", "start": "20260115102030", "utc_code": 1, "duration": 60,
       "teleservice": "11", "charges": [("00", 1500)]}


def test_check_audit_option_is_typed() -> None:
    vector = str(VECTORS / "tap_3_12_valid.ber")
    empty = run("--format", "tap3", "--option", "check_audit=", vector)
    assert empty.returncode == 2 and empty.stdout == ""
    assert empty.stderr.strip().splitlines() == [
        "billing-oss decode: option check_audit: expected true or false, got ''"]
    off = run("--format", "tap3", "--option", "check_audit=false", vector)
    assert off.returncode == 0, off.stderr
    assert len(off.stdout.splitlines()) == 4 and off.stderr == ""
    unknown = run("--format", "tap3", "--option", "timezone=UTC", vector)
    assert unknown.returncode == 2 and "'timezone' is not a tap3 option" in unknown.stderr
    bad = run("--format", "csv", "--option", "timezone=Mars/Base", vector)
    assert bad.returncode == 2 and "option timezone: unknown IANA time zone" in bad.stderr
    assert "Traceback" not in empty.stderr + unknown.stderr + bad.stderr


def test_options_are_listed() -> None:
    listed = run("--list-options", "tap3")
    assert listed.returncode == 0
    assert "check_audit=<bool> (default true)" in listed.stdout
    helped = run("--help")
    assert helped.returncode == 0
    for name in ("framing=", "check_audit=", "timezone=", "columns=", "delimiter="):
        assert name in helped.stdout, name


def test_a_bad_record_inside_a_3gpp_file_exits_3(tmp_path: Path) -> None:
    records = [bytearray(r) for r in fast_records(5)]
    records[2][4] = 0x7F  # a field length that runs past its record
    path = tmp_path / "bad.cdr"
    with open(path, "wb") as fh:
        write_3gpp_file(fh, [bytes(r) for r in records])
    proc = run("--format", "3gpp", str(path))
    assert proc.returncode == 3, proc.stderr
    assert len(proc.stdout.splitlines()) == 4
    (line,) = proc.stderr.splitlines()
    assert line.startswith("offset ") and "(record 3): MALFORMED: sGWRecord" in line
    assert "[-1]" not in line and line.count("record") == 2  # "(record 3)", "sGWRecord"


def test_csv_exit_codes_with_and_without_summary(tmp_path: Path) -> None:
    good = ('"","1","2","c","","SIP/1","","Dial","","2026-01-15 10:00:00",'
            '"2026-01-15 10:00:05","2026-01-15 10:01:05",65,60,"ANSWERED","D","u1",""\n')
    seven = '"","1003","1","c","","SIP/x","x"\n'
    some = tmp_path / "some.csv"
    some.write_text(good + seven)
    none = tmp_path / "none.csv"
    none.write_text(seven * 3)
    for summary in ([], ["--summary"]):
        proc = run("--format", "csv", *summary, str(some))
        assert proc.returncode == 3, (summary, proc.stderr)
        assert "line 2 (record 2): BAD_FIELD: 7 columns" in proc.stderr
        assert run("--format", "csv", *summary, str(none)).returncode == 1
    assert run("--format", "csv", str(tmp_path / "some.csv")).stdout.count("\n") == 1


def test_tap3_concatenated_batches_exit_3_naming_the_second() -> None:
    proc = run("--format", "tap3", str(TAP3 / "CDAAAAABBBBB00001_00002.tap"))
    assert proc.returncode == 3
    assert len(proc.stdout.splitlines()) == 3  # the first batch's events
    assert ("418 bytes after the TransferBatch: a second TransferBatch "
            "(FileSequenceNumber 00002) not decoded") in proc.stderr
    assert "at offset 553" in proc.stderr


def test_tap3_trailing_garbage_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "CDAAAAABBBBB00001"
    path.write_bytes(tap3_file([MOC]) + b"junk")
    proc = run("--format", "tap3", str(path))
    assert proc.returncode == 3 and len(proc.stdout.splitlines()) == 1
    assert "4 bytes after the TransferBatch: not a TAP3 element" in proc.stderr
    path.write_bytes(tap3_file([MOC]) + bytes(16))  # zero padding is not data
    assert run("--format", "tap3", str(path)).returncode == 0


def test_tap3_shorter_than_declared_exits_3_naming_offset(tmp_path: Path) -> None:
    data = tap3_file([MOC, MOC])
    path = tmp_path / "CDAAAAABBBBB00001"
    path.write_bytes(data[:200])
    proc = run("--format", "tap3", str(path))
    assert proc.returncode == 3
    assert (f"incomplete TAP3 file: its top-level element declares {len(data)} bytes and the "
            "bytes stop at offset 200") in proc.stderr
    assert "Traceback" not in proc.stderr


def test_rap_file_is_left_to_settlement() -> None:
    for name in ("rap_mini.ber", "rap_ack.ber"):
        proc = run("--format", "tap3", str(VECTORS / name))
        assert proc.returncode == 1
        assert "RAP file: handled by settlement" in proc.stderr
        assert "not a TAP3 TransferBatch" not in proc.stderr
