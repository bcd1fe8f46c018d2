"""TAP3 files at the edges: damaged headers, non-ASCII digits, clean-up after an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing_oss.adapters.formats import open_file
from billing_oss.adapters.formats.api import collect
from billing_oss.core.errors import DecodeError, NotUsageFile
from tests.conftest import VECTORS
from tests.generators.tap3_files import tap3_file

MOC = {"type": "moc", "imsi": "208011234567890", "msisdn": "33611111111",
       "called": "33140000000", "start": "20260115102030", "utc_code": 1, "duration": 60,
       "teleservice": "11", "charges": [("00", 1500)]}


def test_non_ascii_digit_in_file_sequence_number(tmp_path: Path) -> None:
    data = tap3_file([MOC], sequence=1)
    path = tmp_path / "CDAAAAABBBBB0000x"
    path.write_bytes(data.replace(b"00001", "0000\u00b3".encode("latin-1"), 1))
    with open_file("tap3", path, source="roaming") as decoded:
        assert decoded.info.sequence_number is None  # '³' passes isdigit() but is no digit
        result = collect(decoded)
    assert result.error is None and len(result.records) == 1


def test_header_error_after_mapping_closes_cleanly(tmp_path: Path) -> None:
    data = tap3_file([MOC], decimal_places=3)
    marker = bytes([0x5F, 0x81, 0x74, 0x01, 0x03])  # TapDecimalPlaces [APPLICATION 244] = 3
    assert data.count(marker) == 1
    path = tmp_path / "CDAAAAABBBBB00001"
    path.write_bytes(data.replace(marker, marker[:-1] + b"\x0d"))
    with pytest.raises(DecodeError, match=r"TapDecimalPlaces 13 outside 0\.\.12"):
        open_file("tap3", path, source="roaming")  # not BufferError from closing the map


def test_audit_errors_name_the_audit_offset(tmp_path: Path) -> None:
    data = tap3_file([MOC], audit_count=2)
    path = tmp_path / "CDAAAAABBBBB00001"
    path.write_bytes(data)
    with open_file("tap3", path, source="x") as decoded:
        error = collect(decoded).error
    assert error is not None and error.offset is not None
    assert data[error.offset] == 0x6F  # [APPLICATION 15] AuditControlInfo, the batch's last
    assert error.offset + 2 + data[error.offset + 1] == len(data)
    assert "CallEventDetailsCount is 2" in error.message


def test_rap_files_are_not_usage() -> None:
    for name in ("rap_mini.ber", "rap_ack.ber"):
        with pytest.raises(NotUsageFile, match="RAP file: handled by settlement"):
            open_file("tap3", VECTORS / name, source="x")



def test_indefinite_length_file_cut_short_is_incomplete(tmp_path: Path) -> None:
    whole = tap3_file([MOC, MOC])
    data = b"\x61\x80" + whole[4:] + b"\x00\x00"  # the same batch, indefinite length
    path = tmp_path / "CDAAAAABBBBB00001"
    for cut in (300, 301, len(data) - 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(DecodeError) as info:
            open_file("tap3", path, source="x")
        assert info.value.detail.get("incomplete") and info.value.offset == cut
        assert "no end-of-contents" in info.value.message
    path.write_bytes(data)
    with open_file("tap3", path, source="x") as decoded:
        assert len(collect(decoded).records) == 2
