"""What a file says of itself before decoding: sequence number, record count (the
progress display's total) and the count its header declares (stored with the file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing_oss.adapters.formats.items import FormatDecoder, line_count
from billing_oss.core.ports import FileHeader, SequencedDecoder
from tests.generators.tap3_files import tap3_file
from tests.generators.threegpp_files import encode_record, write_3gpp_file
from tests.unit.test_native_cdr3gpp import MO_CALL


@pytest.mark.parametrize(("data", "lines"), [
    (b"", 0), (b"a\n", 1), (b"a\nb", 2), (b"a\nb\n", 2), (b"\n\n", 2), (b"x" * (1 << 21), 1),
    (b"a\n" * (1 << 20), 1 << 20),
])
def test_line_count(tmp_path: Path, data: bytes, lines: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(data)
    assert line_count(path) == lines


def test_3gpp_header_declares_sequence_and_cdr_count(tmp_path: Path) -> None:
    calls = [encode_record("moCallRecord", {**MO_CALL, "callReference": bytes([i])})
             for i in range(5)]
    path = tmp_path / "msc.cdr"
    with path.open("wb") as fh:
        write_3gpp_file(fh, calls, sequence_number=42)
    decoder = FormatDecoder("3gpp")
    assert isinstance(decoder, SequencedDecoder)
    assert decoder.header(path, count=True) == FileHeader(42, 5, 5)
    assert decoder.header(path, count=False) == FileHeader(42, None, 5)


def test_tap3_header_counts_call_events_from_the_audit(tmp_path: Path) -> None:
    event = {"type": "moc", "imsi": "208011234567890", "msisdn": "33611111111",
             "called": "33622222222", "start": "20260115112030", "utc_code": 1,
             "duration": 60, "charges": [("00", 1500)]}
    path = tmp_path / "CDAAAAABBBBB00007"
    path.write_bytes(tap3_file([event, event, event]))
    assert FormatDecoder("tap3").header(path, count=True).items == 3
    assert FormatDecoder("tap3").header(path, count=False).declared == 3


def test_line_formats_count_their_lines(tmp_path: Path) -> None:
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3}')
    assert FormatDecoder("jsonl").header(jsonl, count=True) == FileHeader(None, 3)
    assert FormatDecoder("jsonl").header(jsonl, count=False) == FileHeader(None, None)  # no pass
    csv = tmp_path / "r.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    assert FormatDecoder("csv").header(csv, count=True) == FileHeader(None, 3, None)
