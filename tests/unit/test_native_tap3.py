"""native.tap3 against the libxfsx vectors' XML, its pyasn1 reference twin, and fuzzing."""

from __future__ import annotations

import calendar
import xml.etree.ElementTree as ET
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_oss.adapters.formats import decode_bytes, open_file
from billing_oss.adapters.formats.asn1_tap3 import TransferBatch
from billing_oss.adapters.formats.reference_tap3 import decode_events
from billing_oss.core.errors import DecodeError
from billing_oss.native._records import (
    ERR_BAD_TIMESTAMP,
    ERR_OVERFLOW,
    ERR_UNKNOWN_UTC_CODE,
    ROW_FIELDS,
    RecordBatch,
)
from billing_oss.native.tap3 import TAGS, Tap3Walker
from tests.conftest import VECTORS
from tests.generators.tap3_files import fast_tap3_file, sample_events, tap3_file

VALID = ["tap_3_12_valid.ber", "tap_3_12_valid_most_indef.ber",
         "tap_3_12_valid_some_cdr_indefinite.ber"]
Rows = list[dict[str, Any]]


def native_rows(data: bytes) -> list[tuple[Any, ...]]:
    walker = Tap3Walker(data)
    batch = RecordBatch(8)
    rows: list[tuple[Any, ...]] = []
    more = True
    while more:
        batch.clear()
        more = walker.next_batch(batch)
        rows.extend(batch.rows())
    return rows


TWINS: dict[str, Callable[[bytes], list[tuple[Any, ...]]]] = {
    "native": native_rows, "reference": decode_events,
}


@pytest.fixture(params=list(TWINS))
def decode(request: pytest.FixtureRequest) -> Callable[[bytes], Rows]:
    """Each example below runs on both twins: the C walker and the pyasn1 reference."""
    twin = TWINS[request.param]
    return lambda data: [dict(zip(ROW_FIELDS, row, strict=True)) for row in twin(data)]


def _utc(local: str, offset: str) -> str:
    t = calendar.timegm(tuple(int(x) for x in (local[0:4], local[4:6], local[6:8],
                                                local[8:10], local[10:12], local[12:14])))
    minutes = int(offset[1:3]) * 60 + int(offset[3:5])
    t -= (minutes if offset[0] == "+" else -minutes) * 60
    return __import__("time").strftime("%Y-%m-%dT%H:%M:%SZ", __import__("time").gmtime(t))


def expected_from_xml() -> list[dict[str, Any]]:
    root = ET.parse(VECTORS / "tap_3_12_valid.xml").getroot()
    places = int(root.findtext("AccountingInfo/TapDecimalPlaces") or 0)
    offsets = {i.findtext("UtcTimeOffsetCode"): i.findtext("UtcTimeOffset")
               for i in root.iter("UtcTimeOffsetInfo")}
    out = []
    for ev in root.find("CallEventDetailList") or []:
        stamp = ev.find(".//CallEventStartTimeStamp")
        if stamp is None:
            stamp = ev.find(".//ChargingTimeStamp")
        assert stamp is not None
        charge = sum(int(d.findtext("Charge") or 0) for d in ev.iter("ChargeDetail")
                     if d.findtext("ChargeType") == "00")
        duration = ev.findtext(".//TotalCallEventDuration")
        out.append({
            "imsi": ev.findtext(".//Imsi"),
            "event_time": _utc(stamp.findtext("LocalTimeStamp") or "",
                               offsets[stamp.findtext("UtcTimeOffsetCode")] or ""),
            "charge": str(Decimal(charge).scaleb(-places)),
            "duration": int(duration) if duration else None,
            "down": ev.findtext(".//DataVolumeIncoming"),
            "up": ev.findtext(".//DataVolumeOutgoing"),
            "tag": ev.tag,
        })
    return out


@pytest.mark.parametrize("name", VALID)
def test_libxfsx_vector_events_on_both_twins(name: str, decode: Callable[[bytes], Rows]) -> None:
    rows = decode((VECTORS / name).read_bytes())
    expected = expected_from_xml()
    assert len(rows) == len(expected) == 4
    for row, exp in zip(rows, expected, strict=True):
        assert row["error"] == 0
        assert row["rtype"] == TAGS[exp["tag"]]
        assert row["imsi"] == exp["imsi"]
        assert row["event_time"] == exp["event_time"]
        assert str(Decimal(row["charge"]).scaleb(-3)) == exp["charge"]
        if exp["tag"] in ("MobileOriginatedCall", "MobileTerminatedCall"):
            assert row["duration"] == exp["duration"]
        if exp["tag"] == "GprsCall":
            assert (row["volume_up"], row["volume_down"]) == (int(exp["up"]), int(exp["down"]))


@pytest.mark.parametrize("name", VALID)
def test_libxfsx_vectors_decode_to_their_xml_values(name: str) -> None:
    decoded = decode_bytes("tap3", (VECTORS / name).read_bytes(), source="roam")
    expected = expected_from_xml()
    assert len(decoded.records) == len(expected) == 4
    kinds = {"MobileTerminatedCall": "voice", "MobileOriginatedCall": "voice",
             "GprsCall": "data", "SupplServiceEvent": "event"}
    for rec, exp in zip(decoded.records, expected, strict=True):
        assert rec.imsi == exp["imsi"]
        assert rec.event_time == exp["event_time"]
        assert rec.charge == exp["charge"]
        assert rec.kind == kinds[exp["tag"]]
        assert rec.attrs["event_type"] == exp["tag"]
        if rec.kind == "voice":
            assert rec.duration_s == exp["duration"]
        if rec.kind == "data":
            assert (rec.volume_up, rec.volume_down) == (int(exp["up"]), int(exp["down"]))
    assert decoded.info.sender == "WERFD" and decoded.info.recipient == "XLKJE"
    assert decoded.info.sequence_number == 31707
    assert decoded.records[0].record_key == "WERFD:XLKJE:31707:0"
    # The vector's audit total (2300) does not match its events (71200): a clear error.
    assert isinstance(decoded.error, DecodeError)
    assert "2.300" in decoded.error.message and "71.200" in decoded.error.message


def test_indefinite_variants_give_the_same_rows(decode: Callable[[bytes], Rows]) -> None:
    def values(name: str) -> Rows:  # the positions differ with the length forms
        return [{k: v for k, v in row.items() if k not in ("offset", "length", "error_offset")}
                for row in decode((VECTORS / name).read_bytes())]
    first = values(VALID[0])
    assert all(values(n) == first for n in VALID[1:])


def test_indefinite_variants_give_the_same_records() -> None:
    def strip(name: str) -> list[Any]:
        recs = decode_bytes("tap3", (VECTORS / name).read_bytes(), source="r").records
        return [(r.record_key, r.event_time, r.charge, r.imsi, r.kind, r.duration_s,
                 r.volume_up, r.volume_down) for r in recs]
    first = strip(VALID[0])
    assert all(strip(n) == first for n in VALID[1:])


def test_notification_has_header_and_no_records() -> None:
    decoded = decode_bytes("tap3", (VECTORS / "tap_notification.ber").read_bytes(), source="r")
    assert decoded.error is None and decoded.records == []
    assert (decoded.info.sender, decoded.info.recipient) == ("ABC08", "XYZ15")
    assert decoded.info.sequence_number == 23023


def test_tags_match_the_pyasn1_schema() -> None:
    bci = TransferBatch.componentType["batchControlInfo"].asn1Object
    assert bci.tagSet[-1].tagId == TAGS["BatchControlInfo"]
    for field, name in (("sender", "Sender"), ("recipient", "Recipient"),
                        ("fileSequenceNumber", "FileSequenceNumber")):
        assert bci.componentType[field].asn1Object.tagSet[-1].tagId == TAGS[name]
    audit = TransferBatch.componentType["auditControlInfo"].asn1Object
    assert audit.componentType["totalCharge"].asn1Object.tagSet[-1].tagId == TAGS["TotalCharge"]
    assert (audit.componentType["callEventDetailsCount"].asn1Object.tagSet[-1].tagId
            == TAGS["CallEventDetailsCount"])


def test_audit_count_mismatch_names_both_numbers() -> None:
    data = tap3_file(sample_events(3), audit_count=5)
    decoded = decode_bytes("tap3", data, source="r")
    assert len(decoded.records) == 3
    assert decoded.error is not None
    assert "5" in decoded.error.message and "3 call events" in decoded.error.message


SMS = {"type": "moc", "imsi": "208010000000001", "msisdn": "33611111111",
       "called": "33622222222", "start": "20260115112030", "utc_code": 2,
       "duration": 0, "teleservice": "22", "charges": [("00", 1234), ("01", 99)]}


def test_sms_event_on_both_twins(decode: Callable[[bytes], Rows]) -> None:
    (row,) = decode(tap3_file([SMS], decimal_places=2, utc_offsets={2: "+0100"}))
    assert (row["error"], row["charge"], row["service"]) == (0, 1234, "T22")
    assert row["event_time"] == "2026-01-15T10:20:30Z"
    assert (row["calling"], row["called"]) == (None, "33622222222")


def test_charges_of_both_signs_sum_on_both_twins(decode: Callable[[bytes], Rows]) -> None:
    """−100 then +50 is −50: the running sum's sign changing is no overflow."""
    refund = {**SMS, "charges": [("00", -100), ("00", 50)]}
    (row,) = decode(tap3_file([refund], utc_offsets={2: "+0100"}))
    assert (row["error"], row["charge"]) == (0, -50)
    back = {**SMS, "charges": [("00", 100), ("00", -150)]}
    (row,) = decode(tap3_file([back], utc_offsets={2: "+0100"}))
    assert (row["error"], row["charge"]) == (0, -50)


@pytest.mark.parametrize("charges", [
    [("00", 2**63 - 1), ("00", 1)],
    [("00", 1 - 2**63), ("00", -2)],
    [("00", 2**62), ("00", 2**62), ("00", -5)],
])
def test_charges_beyond_int64_are_an_overflow_on_both_twins(
    charges: list[tuple[str, int]], decode: Callable[[bytes], Rows]
) -> None:
    (row,) = decode(tap3_file([{**SMS, "charges": charges}], utc_offsets={2: "+0100"}))
    assert row["error"] == ERR_OVERFLOW


@pytest.mark.parametrize(("start", "offset"), [("00000101000000", "+0100"),
                                               ("99991231233000", "-0100")])
def test_start_times_rfc3339_cannot_print_are_refused_on_both_twins(
    start: str, offset: str, decode: Callable[[bytes], Rows]
) -> None:
    (row,) = decode(tap3_file([{**SMS, "start": start}], utc_offsets={2: offset}))
    assert row["error"] == ERR_BAD_TIMESTAMP


@pytest.mark.parametrize(("start", "offset", "utc"), [
    ("00000101010000", "+0100", "0000-01-01T00:00:00Z"),
    ("99991231225959", "-0100", "9999-12-31T23:59:59Z"),
])
def test_the_first_and_last_printable_instants_decode_on_both_twins(
    start: str, offset: str, utc: str, decode: Callable[[bytes], Rows]
) -> None:
    (row,) = decode(tap3_file([{**SMS, "start": start}], utc_offsets={2: offset}))
    assert (row["error"], row["event_time"]) == (0, utc)


def test_unknown_utc_code_on_both_twins(decode: Callable[[bytes], Rows]) -> None:
    events = sample_events(3)
    events[1] = {**events[1], "utc_code": 9}
    rows = decode(tap3_file(events))
    assert [r["error"] for r in rows] == [0, ERR_UNKNOWN_UTC_CODE, 0]


def test_sms_and_charge_scaling() -> None:
    ev = {"type": "moc", "imsi": "208010000000001", "msisdn": "33611111111",
          "called": "33622222222", "start": "20260115112030", "utc_code": 2,
          "duration": 0, "teleservice": "22", "charges": [("00", 1234), ("01", 99)]}
    decoded = decode_bytes("tap3", tap3_file([ev], decimal_places=2,
                                             utc_offsets={2: "+0100"}, tap_currency="EUR"),
                           source="r")
    assert decoded.error is None
    (rec,) = decoded.records
    assert rec.kind == "sms" and rec.charge == "12.34"
    assert rec.event_time == "2026-01-15T10:20:30Z"
    assert (rec.calling, rec.called) == ("33611111111", "33622222222")
    assert rec.attrs["currency"] == "EUR"


def test_unknown_utc_code_is_a_record_problem() -> None:
    events = sample_events(3)
    events[1] = {**events[1], "utc_code": 9}
    decoded = decode_bytes("tap3", tap3_file(events), source="r")
    assert len(decoded.records) == 2
    assert "UTC time offset code" in decoded.problems[0].detail


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(0, 1000))
def test_native_matches_pyasn1_reference(n: int, seed: int) -> None:
    data = tap3_file(sample_events(n, seed))
    walker = Tap3Walker(data)
    batch = RecordBatch(8)
    native: list[Any] = []
    more = True
    while more:
        batch.clear()
        more = walker.next_batch(batch)
        native.extend(batch.rows())
    ref = decode_events(data)
    assert [r[:1] + r[3:5] + r[6:] for r in native] == [r[:1] + r[3:5] + r[6:] for r in ref]


def test_streams_a_file_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "big.tap"
    path.write_bytes(fast_tap3_file(5000))
    with open_file("tap3", path, source="r", batch_size=512) as f:
        batches = list(f.batches())
    assert sum(len(b.records) for b in batches) == 5000
    assert len(batches) == 10


VALID_BYTES = (VECTORS / VALID[0]).read_bytes()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutations_never_crash(data: st.DataObject) -> None:
    octets = bytearray(VALID_BYTES)
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(octets) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            octets[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del octets[i : i + data.draw(st.integers(1, 30))]
        else:
            octets[i:i] = data.draw(st.binary(min_size=1, max_size=6))
        if not octets:
            octets = bytearray(b"\x61")
    try:
        decoded = decode_bytes("tap3", bytes(octets), source="fuzz")
    except DecodeError as exc:
        assert exc.message
        return
    for rec in decoded.records:
        assert rec.event_time.endswith("Z")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_crash(octets: bytes) -> None:
    try:
        decode_bytes("tap3", octets, source="fuzz")
    except DecodeError as exc:
        assert exc.message
