"""Settlement codecs: RAP decoding against the libxfsx vectors' XML, the native TAP encoder
against its pyasn1 twin (byte for byte, on generated batches), and round trips of our TAP
and RAP files through our decoders and through pycrate's TAP 3.12 / RAP 1.05 modules."""

from __future__ import annotations

import datetime as dt
import io
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.type import univ
from pycrate_asn1dir.TAP3 import RAP_0105, TAP_0312

from billing_oss.adapters.formats import rap as rapfmt
from billing_oss.adapters.formats import reference_tap3_encode as twin
from billing_oss.adapters.formats import tap3_writer as writer
from billing_oss.adapters.formats.reference_tap3 import bcd
from billing_oss.adapters.formats.tap3 import Tap3File
from billing_oss.core.errors import DecodeError
from billing_oss.native.tap3enc import encode_events, integer
from tests.conftest import VECTORS

# The RAP XML names ReturnBatch's control info RapBatchControlInfo; RAP-0105 (and so
# pyasn1 and pycrate) calls the component rapBatchControlInfoRap.
_ALIASES = {"RapBatchControlInfo": "rapBatchControlInfoRap"}


def _leaves(element: ET.Element, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    out: dict[tuple[str, ...], str] = {}
    for child in element:
        name = _ALIASES.get(child.tag, child.tag[0].lower() + child.tag[1:])
        if len(child):
            out |= _leaves(child, (*path, name))
        else:
            out[(*path, name)] = (child.text or "").strip()
    return out


def _lookup(value: Any, path: tuple[str, ...]) -> str:
    for name in path:
        value = value[name]
    return str(value)


@pytest.mark.parametrize("name", ["rap_mini", "rap_ack"])
def test_rap_vectors_decode_to_their_xml_values(name: str) -> None:
    rap = rapfmt.decode_rap((VECTORS / f"{name}.ber").read_bytes())
    root = ET.parse(VECTORS / f"{name}.xml").getroot()
    expected = _leaves(root)
    assert expected, "the XML has values"
    decoded = {"rapBatchControlInfoRap": rap.header} if rap.kind == "returnBatch" \
        else rap.header
    for path, text in expected.items():
        assert _lookup(decoded, path) == text, path
    assert rap.kind == {"ReturnBatch": "returnBatch",
                        "Acknowledgement": "acknowledgement"}[root.tag]
    assert (rap.sender, rap.recipient) == (root.findtext(".//Sender"),
                                           root.findtext(".//Recipient"))


def test_bad_rap_bytes_are_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="bad RAP file"):
        rapfmt.decode_rap(b"\x7f\x84\x16\x05garbage")
    data = (VECTORS / "rap_ack.ber").read_bytes()
    with pytest.raises(DecodeError, match="octets after the end"):
        rapfmt.decode_rap(data + b"\x00\x00")


digits = st.text("0123456789", min_size=1, max_size=20)


@st.composite
def events(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(st.sampled_from([9, 10, 14]))
    start = draw(st.datetimes(min_value=dt.datetime(2000, 1, 1),
                              max_value=dt.datetime(2099, 12, 31)))
    maybe = st.none() | st.integers(0, 2**40)
    msisdn = st.text("0123456789", min_size=1, max_size=15)
    return (kind, draw(st.text("0123456789", min_size=5, max_size=15)), draw(st.none() | msisdn),
            None if kind == 14 else draw(st.none() | digits), start.strftime("%Y%m%d%H%M%S"),
            1, draw(maybe), None if kind == 14 else draw(st.sampled_from(["11", "21", "22"])),
            draw(maybe) if kind == 14 else None, draw(maybe) if kind == 14 else None,
            draw(st.none() | st.text("abcdefghij.-", min_size=1, max_size=30))
            if kind == 14 else None,
            draw(st.none() | st.integers(0, 2**32)) if kind == 14 else None,
            draw(st.integers(-(10**12), 2**50)), draw(st.none() | st.just(1)),
            draw(st.none() | st.integers(0, 65535)))


def _header(fsn: int = 1, **kw: Any) -> writer.TapHeader:
    base: dict[str, Any] = {
        "sender": "FRAXX", "recipient": "DEUYY", "fsn": fsn, "created": "20260201000000",
        "cutoff": "20260201000000", "available": "20260201000100", "utc_offset": "+0100",
        "exchange_rates": ((1, 5, 112345),), "rec_entities": ((1, 1, "FRAXXMSC01"),)}
    return writer.TapHeader(**(base | kw))


@settings(max_examples=100)
@given(st.lists(events(), max_size=12))
def test_native_encoder_writes_the_twins_bytes(evs: list[tuple[Any, ...]]) -> None:
    assert encode_events(evs) == twin.encode_events(evs)


@pytest.mark.parametrize("value", [0, -1, 127, 128, -128, -129, -(2**15), 2**15 - 1,
                                   -(2**31), -(2**63), 2**63 - 1])
def test_integers_take_the_fewest_octets_on_both_sides(value: int) -> None:
    # pyasn1 alone writes -128 as ff 80; X.690 8.3.2 and the native writer say 80.
    native = integer(2, value)  # [APPLICATION 2]: the octets after the tag are compared
    assert native[1:] == twin.encoder(univ.Integer(value))[1:]
    assert len(native) == 2 + max(1, (value + (value < 0)).bit_length() // 8 + 1)


@settings(max_examples=30)
@given(st.lists(events(), min_size=1, max_size=8), st.integers(1, 99999), st.booleans(),
       st.none() | st.integers(1, 99999), st.integers(0, 6))
def test_native_file_is_the_twins_file(evs: list[tuple[Any, ...]], fsn: int, test: bool,
                                       rap_fsn: int | None, places: int) -> None:
    h = _header(fsn, test=test, rap_fsn=rap_fsn, decimal_places=places)
    native, totals = writer.encode_transfer_batch(h, evs)
    reference, ref_totals = twin.encode_transfer_batch(h, evs)
    assert native == reference
    assert totals == ref_totals
    streamed = io.BytesIO()
    assert writer.write_transfer_batch(streamed, h, [evs[:3], evs[3:]]) == totals
    assert streamed.getvalue() == native
    assert writer.encode_notification(h) == twin.encode_notification(h)


def _expected_rows(evs: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    def utc(local: str) -> str:
        t = dt.datetime.strptime(local, "%Y%m%d%H%M%S") - dt.timedelta(hours=1)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [(ev[1], ev[2], utc(ev[4]), ev[12]) for ev in evs]


@settings(max_examples=25)
@given(st.lists(events(), min_size=1, max_size=10))
def test_our_tap_decodes_in_our_decoder_and_in_pycrate(evs: list[tuple[Any, ...]]) -> None:
    h = _header(decimal_places=3)
    data, totals = writer.encode_transfer_batch(h, evs)
    # ours: the same events, and audit totals that hold
    with Tap3File(data, source="t") as f:
        records = [r for batch in f.batches() for r in batch.records]
        assert f.info.declared_count == len(evs)
    assert [(r.imsi, r.msisdn, r.event_time, int(r.charge.replace(".", "")))
            for r in records] == _expected_rows(evs)
    # pycrate's TAP-0312: the same events and totals
    top = TAP_0312.DataInterChange
    top.from_ber(data)
    name, batch = top.get_val()
    assert name == "transferBatch"
    got = []
    for _kind, ev in batch["callEventDetails"]:
        bci = ev.get("basicCallInformation") or ev["gprsBasicCallInformation"]
        sub = bci.get("chargeableSubscriber") or bci["gprsChargeableSubscriber"][
            "chargeableSubscriber"]
        sim = sub[1]
        used = ev.get("basicServiceUsedList", [None])[0] or ev["gprsServiceUsed"]
        charge = used["chargeInformationList"][0]["chargeDetailList"][0]["charge"]
        got.append((bcd(sim["imsi"]), bcd(sim["msisdn"]) if "msisdn" in sim else None,
                    bci["callEventStartTimeStamp"]["localTimeStamp"].decode(), charge))
    assert got == [(ev[1], ev[2], ev[4], ev[12]) for ev in evs]
    audit = batch["auditControlInfo"]
    assert audit["totalCharge"] == totals.total_charge == sum(ev[12] for ev in evs)
    assert audit["callEventDetailsCount"] == len(evs)
    bci = batch["batchControlInfo"]
    assert (bci["sender"], bci["recipient"], bci["fileSequenceNumber"]) == (
        b"FRAXX", b"DEUYY", b"00001")


def test_notification_decodes_in_our_decoder_and_in_pycrate() -> None:
    data = writer.encode_notification(_header(42, test=True))
    with Tap3File(data, source="t") as f:
        assert f.walker.kind == "Notification"
        assert (f.sender, f.recipient, f.file_sequence) == ("FRAXX", "DEUYY", "00042")
        assert list(f.batches()) == []
    top = TAP_0312.DataInterChange
    top.from_ber(data)
    name, n = top.get_val()
    assert name == "notification" and n["fileTypeIndicator"] == b"T"


def test_encoder_refuses_bad_values_naming_the_event() -> None:
    good = (9, "20801123", None, None, "20260101000000", 1, 1, "11", None, None, None, None, 1,
            1, 1)
    with pytest.raises(ValueError) as err:
        encode_events([good, (9, "2080x", *good[2:])])
    assert err.value.args[1] == 1
    with pytest.raises(ValueError) as err:
        encode_events([(*good[:4], "2026", *good[5:])])
    assert err.value.args[1] == 0
    with pytest.raises(ValueError):
        encode_events([(12, *good[1:])])
    with pytest.raises(ValueError, match="64 bits"):
        writer.encode_transfer_batch(_header(), [(*good[:12], 2**62, *good[13:])] * 2)
    with pytest.raises(ValueError, match="IMSI"):
        encode_events([(9, "1234", *good[2:])])
    with pytest.raises(ValueError):
        encode_events([(*good[:12], 2**64, *good[13:])])


def _rap_with_returns() -> tuple[bytes, list[tuple[Any, ...]]]:
    evs = [(9, "20801000000001", "33600000001", "4930", "20260115102030", 1, 60, "11", None,
            None, None, None, 1500, 1, 1),
           (14, "20801000000002", None, None, "20260115112030", 1, 10, None, 5, 6, "web",
            9, 2750, 1, 1)]
    data = rapfmt.encode_return_batch(
        sender="DEUYY", recipient="FRAXX", rap_fsn=3, created="20260203000000",
        available="20260203000000", utc_offset="+0100", tap_decimal_places=3,
        tap_currency="SDR", returns=[
            rapfmt.ReturnSpec(kind="fatal", fsn="00007", error_codes=(30,),
                              part="transferBatch"),
            rapfmt.ReturnSpec(kind="severe", fsn="00008", error_codes=(200,),
                              event_ber=encode_events([evs[1]]), charge=2750)])
    return data, evs


def test_our_rap_decodes_in_our_decoder_and_in_pycrate() -> None:
    data, _evs = _rap_with_returns()
    rap = rapfmt.decode_rap(data)
    assert (rap.kind, rap.sender, rap.recipient, rap.rap_fsn) == (
        "returnBatch", "DEUYY", "FRAXX", "00003")
    fatal, severe = rap.returns
    assert (fatal.kind, fatal.fsn, fatal.error_codes) == ("fatal", "00007", (30,))
    assert (severe.kind, severe.fsn, severe.error_codes, severe.imsi, severe.event_time,
            severe.charge) == ("severe", "00008", (200,), "20801000000002",
                               "20260115112030", 2750)
    assert rap.total_severe_return == 2750 and rap.return_count == 2
    top = RAP_0105.RapDataInterChange
    top.from_ber(data)
    name, batch = top.get_val()
    assert name == "returnBatch"
    details = batch["returnDetails"]
    assert details[0][0] == "fatalReturn" and details[0][1]["fileSequenceNumber"] == b"00007"
    assert details[0][1]["transferBatchError"]["errorDetail"][0]["errorCode"] == 30
    kind, body = details[1]
    assert kind == "severeReturn" and body["errorDetail"][0]["errorCode"] == 200
    assert body["callEventDetail"][0] == "gprsCall"
    assert batch["rapAuditControlInfo"]["totalSevereReturnValue"] == 2750
    assert batch["rapAuditControlInfo"]["returnDetailsCount"] == 2


def test_rap_audit_mismatch_is_refused() -> None:
    from pyasn1.codec.ber import decoder, encoder

    from billing_oss.adapters.formats.asn1_rap import RapDataInterChange

    data, _ = _rap_with_returns()
    value, _ = decoder.decode(data, asn1Spec=RapDataInterChange())
    value["returnBatch"]["rapAuditControlInfo"]["totalSevereReturnValue"] = 1
    with pytest.raises(DecodeError, match="TotalSevereReturnValue is 1 but the severe returns "
                                          "sum to 2750"):
        rapfmt.decode_rap(bytes(encoder.encode(value)))


def test_acknowledgement_round_trip() -> None:
    data = rapfmt.encode_acknowledgement(sender="FRAXX", recipient="DEUYY", rap_fsn="00003",
                                         created="20260204000000", available="20260204000000",
                                         utc_offset="+0100")
    ack = rapfmt.decode_rap(data)
    assert (ack.kind, ack.sender, ack.recipient, ack.rap_fsn) == (
        "acknowledgement", "FRAXX", "DEUYY", "00003")
    top = RAP_0105.RapDataInterChange
    top.from_ber(data)
    assert top.get_val()[1]["rapFileSequenceNumber"] == b"00003"
