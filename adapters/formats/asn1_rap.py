# mypy: disable-error-code="misc,no-any-return"
# (pyasn1 ships no type information: its base classes are Any to mypy.)
"""pyasn1 description of GSMA TD.32 RAP 1.05 (``RAP-0105``): ReturnBatch and
Acknowledgement, over the TAP 3.12 types of ``asn1_tap3``. Tags are RAP-0105's APPLICATION
tags; every component is OPTIONAL here, as TD.32 checks presence above the ASN.1 level.
"""

from __future__ import annotations

from pyasn1.type import namedtype, univ

from billing_oss.adapters.formats.asn1_tap3 import (
    CallEventDetail,
    Notification,
    TransferBatch,
    integer,
    seq,
    seq_of,
    text,
)


def _time_long(n: int) -> univ.Sequence:
    return seq(n, ("localTimeStamp", text(16)), ("utcTimeOffset", text(231)))


def _errors() -> univ.SequenceOf:
    context = seq(545, ("pathItemId", integer(546)), ("itemOccurrence", integer(547)),
                  ("itemLevel", integer(548)))
    detail = seq(521, ("errorContext", seq_of(549, context)), ("itemOffset", integer(524)),
                 ("errorCode", integer(519)))
    return seq_of(520, detail)


def _part_error(n: int, name: str, part: univ.Sequence) -> univ.Sequence:
    return seq(n, (name, part), ("errorDetail", _errors()))


def _tap_part(name: str) -> univ.Sequence:
    types = TransferBatch.componentType
    return types.getTypeByPosition(types.getPositionByName(name)).clone()


FatalReturn = seq(
    539, ("fileSequenceNumber", text(109)),
    ("transferBatchError", seq(542, ("errorDetail", _errors()))),
    ("notificationError", _part_error(552, "notification", Notification.clone())),
    ("batchControlError", _part_error(517, "batchControlInfo",
                                      _tap_part("batchControlInfo"))),
    ("accountingInfoError", _part_error(512, "accountingInfo", _tap_part("accountingInfo"))),
    ("networkInfoError", _part_error(523, "networkInfo", _tap_part("networkInfo"))),
    ("auditControlInfoError", _part_error(513, "auditControlInfo",
                                          _tap_part("auditControlInfo"))),
)
SevereReturn = seq(
    540, ("fileSequenceNumber", text(109)), ("callEventDetail", CallEventDetail()),
    ("errorDetail", _errors()),
)
MissingReturn = seq(538, ("startMissingSeqNumber", text(532)),
                    ("endMissingSeqNumber", text(518)))
StopReturn = seq(554, ("lastSeqNumber", text(555)))


class ReturnDetail(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("stopReturn", StopReturn),
        namedtype.NamedType("missingReturn", MissingReturn),
        namedtype.NamedType("fatalReturn", FatalReturn),
        namedtype.NamedType("severeReturn", SevereReturn),
    )


ReturnBatch = seq(
    534,
    ("rapBatchControlInfoRap", seq(
        537, ("sender", text(196)), ("recipient", text(182)),
        ("rapFileSequenceNumber", text(181)),
        ("rapFileCreationTimeStamp", _time_long(526)),
        ("rapFileAvailableTimeStamp", _time_long(525)),
        ("specificationVersionNumber", integer(201)), ("releaseVersionNumber", integer(189)),
        ("rapSpecificationVersionNumber", integer(544)),
        ("rapReleaseVersionNumber", integer(543)), ("fileTypeIndicator", text(110)),
        ("roamingPartner", text(550)), ("tapDecimalPlaces", integer(244)),
        ("tapCurrency", text(210)))),
    ("returnDetails", seq_of(536, ReturnDetail())),
    ("rapAuditControlInfo", seq(
        541, ("totalSevereReturnValue", integer(533)), ("returnDetailsCount", integer(528)),
        ("totalSevereReturnTax", integer(553)))),
)
Acknowledgement = seq(
    535, ("sender", text(196)), ("recipient", text(182)), ("rapFileSequenceNumber", text(181)),
    ("ackFileCreationTimeStamp", _time_long(516)),
    ("ackFileAvailableTimeStamp", _time_long(515)), ("fileTypeIndicator", text(110)),
)


class RapDataInterChange(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("returnBatch", ReturnBatch),
        namedtype.NamedType("acknowledgement", Acknowledgement),
    )
