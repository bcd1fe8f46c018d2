"""Hypothesis strategies for TS 32.298 records (values as ``generate.encode_record`` takes)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

digits = st.text("0123456789", min_size=1, max_size=15)
# local clock must stay inside 2000..2099 (TimeStamp has a 2-digit year)
epochs = st.integers(min_value=946_800_000, max_value=4_070_000_000)
offsets = st.sampled_from([0, 60, -300, 330, 120, -600, 840, -720, 45])
stamps = st.tuples(epochs, offsets)
small = st.integers(min_value=0, max_value=2**31 - 1)
volumes = st.integers(min_value=0, max_value=2**40)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.binary(min_size=16, max_size=16).map(bytes.hex)


def _maybe(d: dict[str, Any], draw: Any, key: str, strategy: Any) -> None:
    if draw(st.booleans()):
        d[key] = draw(strategy)


@st.composite
def records(draw: Any) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(
        ["moCallRecord", "mtCallRecord", "moSMSRecord", "mtSMSRecord", "sGWRecord", "pGWRecord"]))
    v: dict[str, Any] = {"recordType": draw(st.integers(0, 100))}
    if name in ("moCallRecord", "mtCallRecord"):
        v["recordingEntity"] = draw(digits)
        v["callDuration"] = draw(small)
        v["causeForTerm"] = draw(st.integers(0, 100))
        v["callReference"] = draw(st.binary(min_size=1, max_size=8))
        v["servedIMSI"] = draw(digits)
        for key in ("servedMSISDN", "callingNumber"):
            _maybe(v, draw, key, digits)
        if name == "moCallRecord":
            _maybe(v, draw, "calledNumber", digits)
        # at least one of the two times, so the record has an event time
        which = draw(st.sampled_from(["seizure", "answer", "both"]))
        if which in ("seizure", "both"):
            v["seizureTime"] = draw(stamps)
        if which in ("answer", "both"):
            v["answerTime"] = draw(stamps)
        _maybe(v, draw, "sequenceNumber", small)
    elif name in ("moSMSRecord", "mtSMSRecord"):
        v["servedIMSI"] = draw(digits)
        v["msClassmark"] = b"\x53\x19\x90"
        v["serviceCentre"] = draw(digits)
        v["recordingEntity"] = draw(digits)
        _maybe(v, draw, "servedMSISDN", digits)
        if name == "moSMSRecord":
            v["messageReference"] = draw(st.binary(min_size=1, max_size=1))
            v["originationTime"] = draw(stamps)
            _maybe(v, draw, "destinationNumber", digits)
        else:
            v["deliveryTime"] = draw(stamps)
    else:
        addr = "s-GWAddress" if name == "sGWRecord" else "p-GWAddress"
        v[addr] = draw(st.one_of(ipv4, ipv6))
        v["chargingID"] = draw(st.integers(0, 2**32 - 1))
        v["recordOpeningTime"] = draw(stamps)
        v["duration"] = draw(small)
        v["causeForRecClosing"] = draw(st.integers(0, 100))
        _maybe(v, draw, "servedIMSI", digits)
        _maybe(v, draw, "servedMSISDN", digits)
        _maybe(v, draw, "recordSequenceNumber", small)
        _maybe(v, draw, "accessPointNameNI", st.text("abcdefghij.-0123", min_size=1, max_size=30))
        pair = st.tuples(st.one_of(st.none(), volumes), st.one_of(st.none(), volumes))
        _maybe(v, draw, "listOfTrafficVolumes", st.lists(pair, min_size=1, max_size=4))
        if name == "pGWRecord":
            trio = st.tuples(st.integers(0, 1000), st.one_of(st.none(), volumes),
                             st.one_of(st.none(), volumes))
            _maybe(v, draw, "listOfServiceData", st.lists(trio, min_size=1, max_size=4))
    return name, v
