"""native.cdr3gpp against its pyasn1 reference twin, plus framing, problems and fuzzing."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import encoder
from pyasn1.type import tag

from billing_oss.adapters.formats import decode_bytes
from billing_oss.adapters.formats import reference_3gpp as reference
from billing_oss.adapters.formats.asn1_3gpp import RECORD_CLASSES, CallEventRecord
from billing_oss.adapters.formats.ber_text import encode_address, encode_tbcd, encode_timestamp
from billing_oss.core.errors import DecodeError, Reason
from billing_oss.native import cdr3gpp
from billing_oss.native._records import ROW_FIELDS, RecordBatch
from tests.generators.threegpp_files import encode_record, write_3gpp_file, write_fast_3gpp
from tests.unit.cdr_strategies import records

Rows = tuple[list[tuple[Any, ...]], str | None]


def native_rows(data: bytes, *, framed: bool, start: int = 0) -> Rows:
    out: list[tuple[Any, ...]] = []
    batch = RecordBatch(7)  # small on purpose: exercises the resume path
    pos = start
    while True:
        batch.clear()
        pos, status, message = cdr3gpp.decode_cdrs(data, pos, batch, 0, framed, True)
        out.extend(batch.rows())
        if status != cdr3gpp.STATUS_FULL:
            return out, message


IMPLS: dict[str, Callable[..., Rows]] = {
    "reference": reference.decode_records, "native": native_rows,
}


@pytest.fixture(params=list(IMPLS))
def decode(request: pytest.FixtureRequest) -> Callable[..., Rows]:
    return IMPLS[request.param]


def framed_file(recs: list[bytes], **kw: Any) -> tuple[bytes, int]:
    buf = io.BytesIO()
    write_3gpp_file(buf, recs, **kw)
    data = buf.getvalue()
    return data, cdr3gpp.parse_file_header(data)["header_length"]


def test_field_tags_match_the_pyasn1_schema() -> None:
    for name, (choice_tag, cls) in RECORD_CLASSES.items():
        assert cdr3gpp.RECORD_TYPES[choice_tag] == name
        schema = {nt.name: nt.asn1Object.tagSet[-1].tagId for nt in cls.componentType.namedTypes}
        for field, n in cdr3gpp.FIELD_TAGS[name].items():
            assert schema[field] == n, (name, field)
            assert cls.componentType[field].asn1Object.tagSet[-1].tagClass == tag.tagClassContext


MO_CALL = {
    "recordType": 0, "servedIMSI": "208011234567890", "servedMSISDN": "33611111111",
    "calledNumber": "33622222222", "recordingEntity": "33609000001",
    "seizureTime": (1768472400, 60), "answerTime": (1768472430, 60), "callDuration": 95,
    "causeForTerm": 0, "callReference": b"\x01\x02\x03\x04", "sequenceNumber": 2,
}


def test_mo_call_normalised(decode: Callable[..., Rows]) -> None:
    data, start = framed_file([encode_record("moCallRecord", MO_CALL)])
    rows, error = decode(data, framed=True, start=start)
    assert error is None
    row = dict(zip(ROW_FIELDS, rows[0], strict=True))
    assert row["error"] == 0
    assert row["event_time"] == "2026-01-15T10:20:30Z"  # answerTime, offset removed
    assert row["seizure_time"] == "2026-01-15T10:20:00Z"
    assert row["imsi"] == "208011234567890"
    assert row["msisdn"] == "33611111111"  # TON/NPI octet dropped
    assert row["called"] == "33622222222"
    assert (row["duration"], row["seq"], row["ref"]) == (95, 2, "01020304")


def test_unanswered_call_uses_seizure_time(decode: Callable[..., Rows]) -> None:
    values = {k: v for k, v in MO_CALL.items() if k != "answerTime"}
    data, start = framed_file([encode_record("moCallRecord", values)])
    rows, _ = decode(data, framed=True, start=start)
    assert rows[0][ROW_FIELDS.index("event_time")] == "2026-01-15T10:20:00Z"


PGW = {
    "recordType": 85, "servedIMSI": "208011234567890", "p-GWAddress": "10.1.2.3",
    "chargingID": 4000000000, "recordOpeningTime": (1768472430, -300), "duration": 600,
    "causeForRecClosing": 16, "recordSequenceNumber": 3, "servedMSISDN": "33611111111",
    "listOfTrafficVolumes": [(100, 200), (1, 2)],
    "listOfServiceData": [(1, 1000, 2000), (2, 10, None)],
}


def test_pgw_volumes_from_service_data_never_both(decode: Callable[..., Rows]) -> None:
    data, start = framed_file([encode_record("pGWRecord", PGW)])
    rows, _ = decode(data, framed=True, start=start)
    row = dict(zip(ROW_FIELDS, rows[0], strict=True))
    assert (row["volume_up"], row["volume_down"]) == (1010, 2000)
    assert row["event_time"] == "2026-01-15T10:20:30Z"  # written as 05:20:30-0500
    assert (row["charging_id"], row["seq"], row["node"]) == (4000000000, 3, "10.1.2.3")


def test_sgw_volumes_from_traffic_volumes(decode: Callable[..., Rows]) -> None:
    values = {k: v for k, v in PGW.items() if k not in ("listOfServiceData", "p-GWAddress")}
    values["s-GWAddress"] = "20010db8000000000000000000000001"
    data, start = framed_file([encode_record("sGWRecord", values)])
    rows, _ = decode(data, framed=True, start=start)
    row = dict(zip(ROW_FIELDS, rows[0], strict=True))
    assert (row["volume_up"], row["volume_down"]) == (101, 202)
    assert row["node"] == "20010db8000000000000000000000001"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=8), st.booleans(), st.integers(0, 3),
       st.sampled_from([8, 9, 15, 18]))
def test_native_matches_pyasn1_reference(
    recs: list[tuple[str, dict[str, Any]]], indefinite: bool, fill: int, release: int
) -> None:
    encoded = []
    for name, values in recs:
        octets = encode_record(name, values)
        if indefinite:
            value, _ = __import__("pyasn1.codec.ber.decoder", fromlist=["decode"]).decode(
                octets, asn1Spec=CallEventRecord())
            octets = bytes(encoder.encode(value, defMode=False))
        encoded.append(octets)
    data, start = framed_file(encoded, fill=fill, release=release)
    native, nerr = native_rows(data, framed=True, start=start)
    ref, rerr = reference.decode_records(data, framed=True, start=start)
    assert nerr is None and rerr is None
    assert native == ref
    assert all(r[3] == 0 for r in native)
    raw = b"".join(e + b"\x00" * fill for e in encoded)
    assert [r[6:] for r in native_rows(raw, framed=False)[0]] == [r[6:] for r in native]


def test_partial_records_carry_sequence_and_charging_id() -> None:
    parts = [encode_record("pGWRecord", {**PGW, "recordSequenceNumber": n}) for n in (1, 2)]
    data, _ = framed_file(parts)
    decoded = decode_bytes("3gpp", data, source="gw1")
    assert decoded.error is None
    a, b = decoded.records
    assert (a.partial_seq, b.partial_seq) == (1, 2)
    assert a.attrs["charging_id"] == b.attrs["charging_id"] == 4000000000
    assert a.attrs["merge_key"] == b.attrs["merge_key"] == "pGW:10.1.2.3:4000000000"
    assert a.record_key != b.record_key
    assert decode_bytes("3gpp", data, source="gw1").records == decoded.records  # stable


def test_header_metadata() -> None:
    data, _ = framed_file([encode_record("pGWRecord", PGW)] * 3, sequence_number=4711)
    decoded = decode_bytes("3gpp", data, source="gw1")
    assert decoded.info.sequence_number == 4711
    assert decoded.info.declared_count == 3
    assert decoded.info.header["node_address"] == "192.0.2.1"


def test_record_problem_keeps_the_file_going() -> None:
    bad_time = encode_record("pGWRecord", PGW).replace(
        encode_timestamp(1768472430, -300), bytes.fromhex("261315102030") + b"+\x00\x00")
    good = encode_record("moCallRecord", MO_CALL)
    data, _ = framed_file([good, bad_time, good])
    decoded = decode_bytes("3gpp", data, source="gw1")
    assert decoded.error is None
    assert len(decoded.records) == 2
    (problem,) = decoded.problems
    assert problem.index == 1
    assert problem.reason is Reason.BAD_FIELD
    assert "bad TimeStamp" in problem.detail and "[13]" in problem.detail
    assert problem.raw.startswith(b"\xbf\x4f")


def test_unsupported_record_is_reported_not_dropped() -> None:
    odd = bytes([0xA5, 0x03, 0x80, 0x01, 0x05])  # transitRecord [5]
    data, _ = framed_file([odd])
    decoded = decode_bytes("3gpp", data, source="msc")
    assert decoded.records == []
    assert "unsupported record type" in decoded.problems[0].detail


def test_truncated_file_reports_offset_and_keeps_records(decode: Callable[..., Rows]) -> None:
    buf = io.BytesIO()
    write_fast_3gpp(buf, 10)
    data = buf.getvalue()[:-20]
    decoded = decode_bytes("3gpp", data, source="x")
    assert len(decoded.records) == 9
    assert isinstance(decoded.error, DecodeError)
    assert decoded.error.offset is not None and decoded.error.offset < len(data)
    assert "runs past the end" in decoded.error.message
    start = cdr3gpp.parse_file_header(data)["header_length"]
    rows, message = decode(data, framed=True, start=start)
    assert len(rows) == 9 and message is not None


def test_a_raw_record_longer_than_a_cdr_can_be_stops_the_walk_at_once() -> None:
    """Length octets claiming 2**40 bytes: the walk must fail there, not ask for more data
    until the end of the file (the reader would re-copy its growing window each time)."""
    bogus = bytes([0xA0, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00]) + bytes(100_000)
    batch = RecordBatch(4)
    pos, status, message = cdr3gpp.decode_cdrs(bogus, 0, batch, 0, False, False)
    assert (pos, status) == (0, cdr3gpp.STATUS_ERROR)
    assert message is not None and str(cdr3gpp.MAX_RECORD_BYTES) in message
    # Short of the cap, a record that does not fit yet still waits for more data.
    pos, status, _ = cdr3gpp.decode_cdrs(bogus[:1000], 0, batch, 0, False, False)
    assert status == cdr3gpp.STATUS_NEED_MORE


def test_a_whole_raw_record_over_the_cap_is_refused(decode: Callable[..., Rows]) -> None:
    # [0] { OCTET STRING of 65535 zeros }: 65539 content octets, complete in the buffer.
    big = bytes([0xA0, 0x83, 0x01, 0x00, 0x03, 0x04, 0x82, 0xFF, 0xFF]) + bytes(65535)
    rows, message = decode(big, framed=False)
    assert rows == [] and message is not None
    assert str(cdr3gpp.MAX_RECORD_BYTES) in message


def test_streams_across_window_boundaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from billing_oss.adapters.formats import open_file, threegpp

    monkeypatch.setattr(threegpp, "CHUNK", 997)
    path = tmp_path / "f.cdr"
    with open(path, "wb") as fh:
        write_fast_3gpp(fh, 300)
    with open_file("3gpp", path, source="s", batch_size=64) as f:
        got = [r for b in f.batches() for r in b.records]
    whole = decode_bytes("3gpp", path.read_bytes(), source="s").records
    assert got == whole and len(got) == 300


def test_address_helpers_round_trip() -> None:
    assert encode_tbcd("12345") == bytes.fromhex("2143f5")
    assert encode_address("331")[0] == 0x91


VALID = io.BytesIO()
write_fast_3gpp(VALID, 24)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutations_never_crash(data: st.DataObject) -> None:
    octets = bytearray(VALID.getvalue())
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(0, len(octets) - 1))
        if op == "flip":
            octets[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del octets[i : i + data.draw(st.integers(1, 40))]
        else:
            octets[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        if not octets:
            octets = bytearray(b"\x00")
    _decode_safely(bytes(octets))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_fuzz_random_bytes_never_crash(octets: bytes, framed: bool) -> None:
    _decode_safely(octets, {"framing": "32.297" if framed else "raw"})
    batch = RecordBatch(16)
    pos, status, _ = cdr3gpp.decode_cdrs(octets, 0, batch, 0, framed, True)
    assert 0 <= pos <= len(octets)
    assert status in (cdr3gpp.STATUS_FULL, cdr3gpp.STATUS_DONE, cdr3gpp.STATUS_ERROR)


def _decode_safely(octets: bytes, options: dict[str, str] | None = None) -> None:
    try:
        decoded = decode_bytes("3gpp", octets, source="fuzz", options=options)
    except DecodeError as exc:
        assert exc.message
        return
    for rec in decoded.records:
        assert rec.event_time.endswith("Z")
    for problem in decoded.problems:
        assert problem.detail
