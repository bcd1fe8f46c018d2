"""The one table of TS 32.298 closing causes that mean "more partial parts follow".

A call's ``causeForTerm`` and a bearer's ``causeForRecClosing`` each name why a CDR was
closed; for some values the usage goes on in another partial record. The 3GPP decoder reads
these numbers from BER; JSON and MQTT records may give ``attrs["cause_for_record_closing"]`` as
the number or the ASN.1 name. Both sides decide "more parts follow" from this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# causeForTerm (circuit-switched calls, TS 32.298 CauseForTerm).
CALL_PARTIAL: Mapping[int, str] = MappingProxyType({
    1: "partialRecord",
    2: "partialRecordCallReestablishment",
})

# causeForRecClosing (S-GW/P-GW bearers, TS 32.298 CauseForRecClosing).
BEARER_PARTIAL: Mapping[int, str] = MappingProxyType({
    16: "volumeLimit",
    17: "timeLimit",
    18: "servingNodeChange",
    19: "maxChangeCond",
    20: "managementIntervention",
    21: "intraSGSNIntersystemChange",
    22: "rATChange",
    23: "mSTimeZoneChange",
    24: "sGSNPLMNIDChange",
    25: "sGWChange",
    26: "aPNAMBRChange",
})

_NAMES = frozenset(CALL_PARTIAL.values()) | frozenset(BEARER_PARTIAL.values())
_NUMBERS = frozenset(str(n) for n in BEARER_PARTIAL)


def more_parts_follow(cause: object) -> bool:
    """Whether a record's ``cause_for_record_closing`` (a causeForRecClosing number, or a
    causeForTerm / causeForRecClosing name) says the usage continues in another part."""
    if isinstance(cause, bool):
        return False
    text = str(cause).strip()
    return text in _NAMES or text in _NUMBERS
