"""`billing-oss ingest` tells a file's format from its name, and BER files by their first
octet (TAP3 or 3GPP)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from billing_oss.adapters.formats.registry import guess as _guess_format
from billing_oss.core.errors import BillingError
from tests.conftest import VECTORS


def test_format_from_name_and_magic(tmp_path: Path) -> None:
    tap = tmp_path / "tap.ber"
    shutil.copy(VECTORS / "tap_3_12_valid.ber", tap)
    cdr = tmp_path / "cdr.ber"
    cdr.write_bytes(bytes([0xA0, 0x03, 0x80, 0x01, 0x00]))
    unnamed = tmp_path / "records"
    unnamed.write_bytes(b'{"record_key": "a"}\n')
    (tmp_path / "m.csv").write_text("")
    assert _guess_format(tap) == "tap3"
    assert _guess_format(cdr) == "3gpp"
    assert _guess_format(unnamed) == "jsonl"
    assert _guess_format(tmp_path / "m.csv") == "csv"
    mystery = tmp_path / "mystery.bin"
    mystery.write_bytes(b"\x00\x01")
    with pytest.raises(BillingError, match="give --format"):
        _guess_format(mystery)
