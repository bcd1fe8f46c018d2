"""adapters.formats.items: the formats as the pipeline's Decoder port."""

from __future__ import annotations

from pathlib import Path

from billing_oss.adapters.formats.items import decoder_for
from billing_oss.core.contract import Reject
from billing_oss.core.records import UsageRecord
from billing_oss.server.composition import decoders
from tests.generators.threegpp_files import encode_record, write_3gpp_file
from tests.unit.test_native_cdr3gpp import MO_CALL, PGW


def test_items_keep_file_order_with_rejects(tmp_path: Path) -> None:
    odd = bytes([0xA5, 0x03, 0x80, 0x01, 0x05])
    call = encode_record("moCallRecord", MO_CALL)
    path = tmp_path / "f.cdr"
    with open(path, "wb") as fh:
        write_3gpp_file(fh, [call, odd, call, odd, call])
    chunks = list(decoder_for("3gpp")(path, source="msc", chunk=2))
    items = [item for chunk in chunks for item in chunk]
    kinds = [type(i) for i in items]
    assert kinds == [UsageRecord, Reject, UsageRecord, Reject, UsageRecord]
    reject = items[1]
    assert isinstance(reject, Reject) and reject.where and reject.where.startswith("offset ")


def test_partial_last_marks_the_closing_part(tmp_path: Path) -> None:
    parts = [encode_record("pGWRecord", {**PGW, "recordSequenceNumber": 1,
                                         "causeForRecClosing": 17}),
             encode_record("pGWRecord", {**PGW, "recordSequenceNumber": 2,
                                         "causeForRecClosing": 0})]
    path = tmp_path / "p.cdr"
    with open(path, "wb") as fh:
        write_3gpp_file(fh, parts)
    (chunk,) = decoder_for("3gpp")(path, source="gw", chunk=100)
    first, last = chunk
    assert isinstance(first, UsageRecord) and isinstance(last, UsageRecord)
    assert (first.attrs["partial_last"], last.attrs["partial_last"]) == (False, True)


def test_service_registers_the_file_formats() -> None:
    assert {"3gpp", "tap3", "csv"} <= set(decoders())
