# mypy: disable-error-code="misc,no-any-return"
# (pyasn1 ships no type information: its base classes are Any to mypy.)
"""pyasn1 description of the TS 32.298 subset billing-oss decodes: the reference twin.

The types mirror CSChargingDataTypes / GPRSChargingDataTypes (IMPLICIT TAGS) for the
records and fields listed in ``native.cdr3gpp.FIELD_TAGS``; tests check the two agree.
``CallEventRecord`` is the CHOICE a CDR carries. pyasn1 encodes records for test files
(``adapters.formats.generate``) and decodes them for the differential tests and the
benchmark; ``reference.decode_3gpp`` normalises what it decodes.
"""

from __future__ import annotations

from pyasn1.type import char, namedtype, tag, univ


def _ctx(n: int, constructed: bool = False) -> tag.Tag:
    fmt = tag.tagFormatConstructed if constructed else tag.tagFormatSimple
    return tag.Tag(tag.tagClassContext, fmt, n)


def _octets(n: int) -> univ.OctetString:
    return univ.OctetString().subtype(implicitTag=_ctx(n))


def _int(n: int) -> univ.Integer:
    return univ.Integer().subtype(implicitTag=_ctx(n))


def _opt(name: str, value: object) -> namedtype.OptionalNamedType:
    return namedtype.OptionalNamedType(name, value)


class GSNAddress(univ.Choice):
    """IPAddress flattened: its two untagged CHOICEs encode the same as these four leaves."""

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("iPBinV4Address", _octets(0)),
        namedtype.NamedType("iPBinV6Address", _octets(1)),
        namedtype.NamedType("iPTextV4Address", char.IA5String().subtype(implicitTag=_ctx(2))),
        namedtype.NamedType("iPTextV6Address", char.IA5String().subtype(implicitTag=_ctx(3))),
    )


def _gsn(n: int) -> GSNAddress:
    return GSNAddress().subtype(explicitTag=_ctx(n, constructed=True))


class ChangeOfCharCondition(univ.Sequence):
    componentType = namedtype.NamedTypes(
        _opt("dataVolumeGPRSUplink", _int(3)),
        _opt("dataVolumeGPRSDownlink", _int(4)),
        namedtype.NamedType("changeCondition", univ.Enumerated().subtype(implicitTag=_ctx(5))),
        namedtype.NamedType("changeTime", _octets(6)),
    )


class ChangeOfServiceCondition(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("ratingGroup", _int(1)),
        _opt("datavolumeFBCUplink", _int(12)),
        _opt("datavolumeFBCDownlink", _int(13)),
        namedtype.NamedType("timeOfReport", _octets(14)),
    )


def _seq_of(n: int, component: univ.Sequence) -> univ.SequenceOf:
    return univ.SequenceOf(componentType=component).subtype(implicitTag=_ctx(n, True))


class MOCallRecord(univ.Set):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("recordType", _int(0)),
        _opt("servedIMSI", _octets(1)),
        _opt("servedMSISDN", _octets(3)),
        _opt("callingNumber", _octets(4)),
        _opt("calledNumber", _octets(5)),
        namedtype.NamedType("recordingEntity", _octets(9)),
        _opt("seizureTime", _octets(22)),
        _opt("answerTime", _octets(23)),
        namedtype.NamedType("callDuration", _int(25)),
        namedtype.NamedType("causeForTerm", _int(30)),
        namedtype.NamedType("callReference", _octets(32)),
        _opt("sequenceNumber", _int(33)),
    )


class MTCallRecord(univ.Set):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("recordType", _int(0)),
        namedtype.NamedType("servedIMSI", _octets(1)),
        _opt("servedMSISDN", _octets(3)),
        _opt("callingNumber", _octets(4)),
        namedtype.NamedType("recordingEntity", _octets(6)),
        _opt("seizureTime", _octets(19)),
        _opt("answerTime", _octets(20)),
        namedtype.NamedType("callDuration", _int(22)),
        namedtype.NamedType("causeForTerm", _int(27)),
        namedtype.NamedType("callReference", _octets(29)),
        _opt("sequenceNumber", _int(30)),
    )


class MOSMSRecord(univ.Set):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("recordType", _int(0)),
        namedtype.NamedType("servedIMSI", _octets(1)),
        _opt("servedMSISDN", _octets(3)),
        namedtype.NamedType("msClassmark", _octets(4)),
        namedtype.NamedType("serviceCentre", _octets(5)),
        namedtype.NamedType("recordingEntity", _octets(6)),
        namedtype.NamedType("messageReference", _octets(8)),
        namedtype.NamedType("originationTime", _octets(9)),
        _opt("destinationNumber", _octets(12)),
    )


class MTSMSRecord(univ.Set):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("recordType", _int(0)),
        namedtype.NamedType("serviceCentre", _octets(1)),
        namedtype.NamedType("servedIMSI", _octets(2)),
        _opt("servedMSISDN", _octets(4)),
        namedtype.NamedType("msClassmark", _octets(5)),
        namedtype.NamedType("recordingEntity", _octets(6)),
        namedtype.NamedType("deliveryTime", _octets(8)),
    )


def _gw_fields(address: str, with_service_data: bool) -> list[namedtype.NamedType]:
    fields = [
        namedtype.NamedType("recordType", _int(0)),
        _opt("servedIMSI", _octets(3)),
        namedtype.NamedType(address, _gsn(4)),
        namedtype.NamedType("chargingID", _int(5)),
        _opt("accessPointNameNI", char.IA5String().subtype(implicitTag=_ctx(7))),
        _opt("listOfTrafficVolumes", _seq_of(12, ChangeOfCharCondition())),
        namedtype.NamedType("recordOpeningTime", _octets(13)),
        namedtype.NamedType("duration", _int(14)),
        namedtype.NamedType("causeForRecClosing", _int(15)),
        _opt("recordSequenceNumber", _int(17)),
        _opt("servedMSISDN", _octets(22)),
    ]
    if with_service_data:
        fields.append(_opt("listOfServiceData", _seq_of(34, ChangeOfServiceCondition())))
    return fields


class SGWRecord(univ.Set):
    componentType = namedtype.NamedTypes(*_gw_fields("s-GWAddress", False))


class PGWRecord(univ.Set):
    componentType = namedtype.NamedTypes(*_gw_fields("p-GWAddress", True))


RECORD_CLASSES: dict[str, tuple[int, type[univ.Set]]] = {
    "moCallRecord": (0, MOCallRecord),
    "mtCallRecord": (1, MTCallRecord),
    "moSMSRecord": (6, MOSMSRecord),
    "mtSMSRecord": (7, MTSMSRecord),
    "sGWRecord": (78, SGWRecord),
    "pGWRecord": (79, PGWRecord),
}


class CallEventRecord(univ.Choice):
    componentType = namedtype.NamedTypes(
        *(
            namedtype.NamedType(name, cls().subtype(implicitTag=_ctx(n, True)))
            for name, (n, cls) in RECORD_CLASSES.items()
        )
    )
