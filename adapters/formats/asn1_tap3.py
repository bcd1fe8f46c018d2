# mypy: disable-error-code="misc,no-any-return"
# (pyasn1 ships no type information: its base classes are Any to mypy.)
"""pyasn1 description of the TAP 3.12 (TD.57) subset billing-oss reads and writes.

The reference twin of ``native.tap3``: tests encode generated batches with it and compare
what the native walker returns with what pyasn1 decodes (``reference_tap3``); the
settlement module writes outgoing TAP3 with it (``generate_tap3``). Tags are TAP-0312's
APPLICATION tags (``native.tap3.TAGS`` is checked against these by the tests). Every
component is OPTIONAL, as TD.57 validates presence rules above the ASN.1 level.
"""

from __future__ import annotations

from typing import Any

from pyasn1.type import namedtype, tag, univ


def _app(n: int, constructed: bool = False) -> tag.Tag:
    fmt = tag.tagFormatConstructed if constructed else tag.tagFormatSimple
    return tag.Tag(tag.tagClassApplication, fmt, n)


def text(n: int) -> univ.OctetString:
    return univ.OctetString().subtype(implicitTag=_app(n))


def integer(n: int) -> univ.Integer:
    return univ.Integer().subtype(implicitTag=_app(n))


def seq(n: int, *fields: tuple[str, Any]) -> univ.Sequence:
    cls = type(f"App{n}", (univ.Sequence,), {
        "componentType": namedtype.NamedTypes(
            *(namedtype.OptionalNamedType(name, t) for name, t in fields)),
        "tagSet": univ.Sequence.tagSet.tagImplicitly(_app(n, True)),
    })
    return cls()


def seq_of(n: int, component: Any) -> univ.SequenceOf:
    cls = type(f"AppList{n}", (univ.SequenceOf,), {
        "componentType": component,
        "tagSet": univ.SequenceOf.tagSet.tagImplicitly(_app(n, True)),
    })
    return cls()


def choice(n: int, *fields: tuple[str, Any]) -> univ.Choice:
    """A tagged CHOICE: the tag is explicit (X.680 31.2.7)."""
    cls = type(f"AppChoice{n}", (univ.Choice,), {
        "componentType": namedtype.NamedTypes(*(namedtype.NamedType(k, t) for k, t in fields)),
    })
    return cls().subtype(explicitTag=_app(n, True))


def _date_time(n: int) -> univ.Sequence:
    return seq(n, ("localTimeStamp", text(16)), ("utcTimeOffsetCode", integer(232)))


def _date_time_long(n: int) -> univ.Sequence:
    return seq(n, ("localTimeStamp", text(16)), ("utcTimeOffset", text(231)))


def _subscriber() -> univ.Choice:
    return choice(427, ("simChargeableSubscriber",
                        seq(199, ("imsi", text(129)), ("msisdn", text(152)))))


def _charge_information() -> univ.Sequence:
    detail = seq(63, ("chargeType", text(71)), ("charge", integer(62)),
                 ("chargeableUnits", integer(65)), ("chargedUnits", integer(68)))
    return seq(69, ("chargedItem", text(66)), ("exchangeRateCode", integer(105)),
               ("chargeDetailList", seq_of(64, detail)))


def _location() -> univ.Sequence:
    return seq(138, ("networkLocation", seq(156, ("recEntityCode", integer(184)),
                                            ("locationArea", integer(136)),
                                            ("cellId", integer(59)))))


def _basic_services() -> univ.SequenceOf:
    service = seq(36, ("serviceCode", choice(426, ("teleServiceCode", text(218)),
                                             ("bearerServiceCode", text(40)))))
    used = seq(39, ("basicService", service), ("chargingTimeStamp", _date_time(74)),
               ("chargeInformationList", seq_of(70, _charge_information())))
    return seq_of(38, used)


MobileOriginatedCall = seq(
    9,
    ("basicCallInformation", seq(
        147, ("chargeableSubscriber", _subscriber()),
        ("destination", seq(89, ("calledNumber", text(407)))),
        ("callEventStartTimeStamp", _date_time(44)),
        ("totalCallEventDuration", integer(223)), ("causeForTerm", integer(58)))),
    ("locationInformation", _location()),
    ("basicServiceUsedList", _basic_services()),
)
MobileTerminatedCall = seq(
    10,
    ("basicCallInformation", seq(
        153, ("chargeableSubscriber", _subscriber()),
        ("callOriginator", seq(41, ("callingNumber", text(405)))),
        ("callEventStartTimeStamp", _date_time(44)),
        ("totalCallEventDuration", integer(223)), ("causeForTerm", integer(58)))),
    ("locationInformation", _location()),
    ("basicServiceUsedList", _basic_services()),
)
SupplServiceEvent = seq(
    11,
    ("chargeableSubscriber", _subscriber()),
    ("locationInformation", _location()),
    ("supplServiceUsed", seq(
        206, ("supplServiceCode", text(209)), ("supplServiceActionCode", integer(208)),
        ("chargingTimeStamp", _date_time(74)), ("chargeInformation", _charge_information()))),
)
GprsCall = seq(
    14,
    ("gprsBasicCallInformation", seq(
        114, ("gprsChargeableSubscriber", seq(115, ("chargeableSubscriber", _subscriber()))),
        ("gprsDestination", seq(116, ("accessPointNameNI", text(261)))),
        ("callEventStartTimeStamp", _date_time(44)),
        ("totalCallEventDuration", integer(223)), ("causeForTerm", integer(58)),
        ("chargingId", integer(72)))),
    ("gprsLocationInformation", seq(117, ("gprsNetworkLocation", seq(
        118, ("recEntity", seq_of(185, integer(184))))))),
    ("gprsServiceUsed", seq(
        121, ("dataVolumeIncoming", integer(250)), ("dataVolumeOutgoing", integer(251)),
        ("chargeInformationList", seq_of(70, _charge_information())))),
)


class CallEventDetail(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("mobileOriginatedCall", MobileOriginatedCall),
        namedtype.NamedType("mobileTerminatedCall", MobileTerminatedCall),
        namedtype.NamedType("supplServiceEvent", SupplServiceEvent),
        namedtype.NamedType("gprsCall", GprsCall),
    )


_HEADER_TIMES = (
    ("fileCreationTimeStamp", _date_time_long(108)),
    ("transferCutOffTimeStamp", _date_time_long(227)),
    ("fileAvailableTimeStamp", _date_time_long(107)),
)
TransferBatch = seq(
    1,
    ("batchControlInfo", seq(
        4, ("sender", text(196)), ("recipient", text(182)), ("fileSequenceNumber", text(109)),
        *_HEADER_TIMES, ("specificationVersionNumber", integer(201)),
        ("releaseVersionNumber", integer(189)), ("fileTypeIndicator", text(110)),
        ("rapFileSequenceNumber", text(181)))),
    ("accountingInfo", seq(
        5, ("localCurrency", text(135)), ("tapCurrency", text(210)),
        ("currencyConversionInfo", seq_of(80, seq(
            106, ("exchangeRateCode", integer(105)), ("numberOfDecimalPlaces", integer(159)),
            ("exchangeRate", integer(104))))),
        ("tapDecimalPlaces", integer(244)))),
    ("networkInfo", seq(
        6, ("utcTimeOffsetInfo", seq_of(234, seq(
            233, ("utcTimeOffsetCode", integer(232)), ("utcTimeOffset", text(231))))),
        ("recEntityInfo", seq_of(188, seq(
            183, ("recEntityCode", integer(184)), ("recEntityType", integer(186)),
            ("recEntityId", text(400))))))),
    ("callEventDetails", seq_of(3, CallEventDetail())),
    ("auditControlInfo", seq(
        15, ("earliestCallTimeStamp", _date_time_long(101)),
        ("latestCallTimeStamp", _date_time_long(133)), ("totalCharge", integer(415)),
        ("totalTaxValue", integer(226)), ("totalDiscountValue", integer(225)),
        ("callEventDetailsCount", integer(43)))),
)
Notification = seq(
    2, ("sender", text(196)), ("recipient", text(182)), ("fileSequenceNumber", text(109)),
    ("rapFileSequenceNumber", text(181)), ("fileCreationTimeStamp", _date_time_long(108)),
    ("fileAvailableTimeStamp", _date_time_long(107)),
    ("transferCutOffTimeStamp", _date_time_long(227)),
    ("specificationVersionNumber", integer(201)), ("releaseVersionNumber", integer(189)),
    ("fileTypeIndicator", text(110)),
)


class DataInterChange(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("transferBatch", TransferBatch),
        namedtype.NamedType("notification", Notification),
    )
