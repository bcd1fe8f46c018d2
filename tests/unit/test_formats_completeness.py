"""Whether a file is whole, from its own header (adapters.formats.completeness)."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing_oss.adapters.formats.completeness import is_complete
from tests.conftest import VECTORS
from tests.generators.tap3_files import tap3_file
from tests.generators.threegpp_files import (
    cdr_header,
    fast_records,
    file_header,
    write_fast_3gpp,
)

EVENT = {"type": "moc", "imsi": "208011234567890", "msisdn": "33611111111",
         "called": "33622222222", "start": "20260115102030", "utc_code": 1,
         "duration": 60, "teleservice": "11", "charges": [("00", 1500)]}


def _3gpp(tmp_path: Path, n: int = 20) -> Path:
    path = tmp_path / "a.cdr"
    with open(path, "wb") as fh:
        write_fast_3gpp(fh, n)
    return path


def test_3gpp_whole_file_is_complete(tmp_path: Path) -> None:
    path = _3gpp(tmp_path)
    result = is_complete("3gpp", path)
    assert result.complete and result.declared_size == path.stat().st_size
    assert result.declared_count == 20


@pytest.mark.parametrize("cut", [1, 30, 200])
def test_3gpp_cut_anywhere_is_short_naming_the_offset(tmp_path: Path, cut: int) -> None:
    path = _3gpp(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    result = is_complete("3gpp", path)
    assert result.state == "short" and result.offset == len(data) - cut
    assert f"offset {len(data) - cut}" in result.detail and str(len(data)) in result.detail


def test_3gpp_cut_on_a_record_boundary_is_short(tmp_path: Path) -> None:
    path = _3gpp(tmp_path, 10)
    data = path.read_bytes()
    records = list(fast_records(10))
    last = len(cdr_header(records[-1])) + len(records[-1])
    path.write_bytes(data[:-last])
    assert is_complete("3gpp", path).state == "short"


def _unset_length_file(records: list[bytes], count: int) -> bytes:
    header = file_header(file_length=0, cdr_count=count, sequence_number=1)
    return header + b"".join(cdr_header(r) + r for r in records)


def test_3gpp_without_file_length_counts_the_cdrs(tmp_path: Path) -> None:
    records = list(fast_records(8))
    path = tmp_path / "b.cdr"
    path.write_bytes(_unset_length_file(records, 8))
    assert is_complete("3gpp", path).complete
    path.write_bytes(_unset_length_file(records[:5], 8))
    result = is_complete("3gpp", path)
    assert result.state == "short" and "8 CDRs and 5 are here" in result.detail
    path.write_bytes(_unset_length_file(records, 0)[:-3])
    assert is_complete("3gpp", path).state == "short"
    path.write_bytes(_unset_length_file(records, 0))
    assert is_complete("3gpp", path).state == "unknown"


def test_3gpp_header_cut_and_empty_file(tmp_path: Path) -> None:
    path = _3gpp(tmp_path)
    path.write_bytes(path.read_bytes()[:30])
    assert is_complete("3gpp", path).state == "short"
    path.write_bytes(b"")
    assert is_complete("3gpp", path).state == "short"


def test_3gpp_raw_ber_is_unknown_unless_visibly_cut(tmp_path: Path) -> None:
    records = b"".join(fast_records(5))
    path = tmp_path / "raw.ber"
    path.write_bytes(records)
    assert is_complete("3gpp", path).state == "unknown"
    path.write_bytes(records[:-7])
    assert is_complete("3gpp", path).state == "short"


def test_tap3_by_the_length_of_its_top_element(tmp_path: Path) -> None:
    data = tap3_file([EVENT] * 3)
    path = tmp_path / "CDAAAAABBBBB00001"
    path.write_bytes(data)
    result = is_complete("tap3", path)
    assert result.complete and result.declared_size == len(data)
    for cut in (1, len(data) // 2, len(data) - 3):
        path.write_bytes(data[:cut])
        short = is_complete("tap3", path)
        assert short.state == "short" and short.offset == cut
        assert cut == 1 or str(len(data)) in short.detail
    path.write_bytes(data + data)  # longer than declared: complete; the decoder names the rest
    assert is_complete("tap3", path).complete


def test_tap3_vectors_and_rap_files_are_complete() -> None:
    for name in ("tap_3_12_valid.ber", "tap_notification.ber", "rap_mini.ber", "rap_ack.ber"):
        assert is_complete("tap3", VECTORS / name).complete, name


def test_tap3_indefinite_length_cut_is_short(tmp_path: Path) -> None:
    whole = tap3_file([EVENT] * 3)
    data = b"\x61\x80" + whole[4:] + b"\x00\x00"  # the same batch, indefinite length
    assert whole[1] == 0x82
    path = tmp_path / "indef"
    path.write_bytes(data)
    assert is_complete("tap3", path).state == "unknown"
    path.write_bytes(data[:-5])
    assert is_complete("tap3", path).state == "short"


def test_csv_declares_nothing(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_text("1,2\n")
    assert is_complete("csv", path).state == "unknown"
    assert is_complete("tap3", path).state == "unknown"  # not BER at all
