"""Reading ISO 20022 payment status reports (pain.002) of our direct-debit batches into the
returns they report: every transaction the bank rejected (``TxSts`` RJCT, or its payment
information's or group's status when the transaction states none) becomes a debit
transaction with its original EndToEndId and reason code (AC04, AM04, MD06...), which the
bank import reverses like a camt return. Accepted or pending transactions yield nothing.

The key that makes a report idempotent is the original message id (as the statement
account) and the original EndToEndId: the same report twice changes nothing, and a
rejection reported again later (pain.002 then camt) finds the payment already reversed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import IO, Any

from lxml import etree

from billing_oss.core.errors import DecodeError
from billing_oss.server.collections.camt import Transaction, _all, _amount, _find, _text

REJECTED = "RJCT"


def transactions(source: str | IO[bytes]) -> Iterator[Transaction]:
    try:
        tree = etree.parse(source, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise DecodeError(f"broken XML: {exc}") from None
    report = _find(tree.getroot(), "CstmrPmtStsRpt")
    created = (_text(report, "GrpHdr", "CreDtTm") or "")[:10]
    try:
        reported_on: dt.date | None = dt.date.fromisoformat(created) if created else None
    except ValueError:
        reported_on = None
    group = _find(report, "OrgnlGrpInfAndSts")
    message = (_text(group, "OrgnlMsgId") if group is not None else None) or "unknown"
    group_status = _text(group, "GrpSts") if group is not None else None
    group_reason = _text(group, "StsRsnInf", "Rsn", "Cd") if group is not None else None
    entry_no = 0
    for info in _all(report, "OrgnlPmtInfAndSts"):
        info_status = _text(info, "PmtInfSts") or group_status
        info_reason = _text(info, "StsRsnInf", "Rsn", "Cd") or group_reason
        for tx in _all(info, "TxInfAndSts"):
            entry_no += 1
            status = _text(tx, "TxSts") or info_status
            if status != REJECTED:
                continue
            yield _rejection(tx, entry_no, f"pain.002:{message}", reported_on,
                             _text(tx, "StsRsnInf", "Rsn", "Cd") or info_reason or REJECTED)


def _rejection(tx: Any, entry_no: int, account: str, reported_on: dt.date | None,
               reason: str) -> Transaction:
    end_to_end = _text(tx, "OrgnlEndToEndId")
    problem = None if end_to_end else "OrgnlEndToEndId: missing: the rejection names no debit"
    amount, currency = 0, "EUR"
    if _find(tx, "OrgnlTxRef", "Amt", "InstdAmt") is not None:
        try:
            amount, currency = _amount(_find(tx, "OrgnlTxRef", "Amt"), "InstdAmt",
                                       "OrgnlTxRef/Amt/InstdAmt")
        except ValueError as exc:
            problem = str(exc)
    return Transaction(key=end_to_end, entry_no=entry_no, statement_account=account,
                       credit=False, amount_micros=amount, currency=currency,
                       booked_on=reported_on, end_to_end_id=end_to_end, creditor_refs=(),
                       remittance="", debtor=_text(tx, "OrgnlTxRef", "Dbtr", "Nm"),
                       return_reason=reason, problem=problem)
