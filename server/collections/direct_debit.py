"""SEPA direct debit (DESIGN.md §9): mandates, and pain.008 batches of what mandated
accounts owe.

A batch takes, for every account with a live mandate in EUR, its open undisputed invoices due
by a date, and debits them in one transaction per account. Each transaction is recorded at
once as a payment (source and method ``sepa_dd``, reference = its EndToEndId, received on the
collection date) allocated to those invoices, so the invoices stop being dunned; a return
(camt RtrInf, or a pain.002 reject) names that EndToEndId and reverses the payment, which
re-opens them. Everything happens in one transaction: the payments, the batch row holding
the XML as sent, and the mandates' next sequence type (FRST becomes RCUR; OOFF and FNAL
end the mandate).

IBANs and BICs are checked with schwifty when a mandate is stored and again when a batch
is built; the document is validated against the pain.008.001.02 XSD before anything is kept.
"""

from __future__ import annotations

import datetime as dt
from typing import NoReturn

import asyncpg
import msgspec
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from sepaxml import SepaDD
from sepaxml.validation import ValidationError

from billing_oss.core.errors import ConfigError, Conflict, InvalidRequest, NotFound
from billing_oss.core.money import format_micros
from billing_oss.server.collections import payments, repo
from billing_oss.server.collections.model import Mandate, NewPayment, Target
from billing_oss.server.config import Config
from billing_oss.server.store import audit

SCHEMA = "pain.008.001.02"
SEQUENCE_TYPES = ("FRST", "RCUR", "OOFF", "FNAL")
_CENT = 10_000  # micro-units of one euro cent


class Creditor(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    iban: str
    bic: str
    creditor_id: str


class Debit(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    mandate_id: str
    end_to_end_id: str
    sequence_type: str
    amount: str
    invoice_ids: list[int]
    payment_id: int


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    batch_id: int
    message_id: str
    due_by: dt.date
    collection_date: dt.date
    transactions: int
    total: str  # EUR
    debits: list[Debit]
    document: str = msgspec.field(default="")  # the pain.008 XML


def creditor_from(config: Config) -> Creditor:
    """The creditor of the batches, from ``[collections]`` and the seller (ConfigError when
    the creditor identifier or the IBAN is missing, or the IBAN/BIC is not valid)."""
    c = config.collections
    iban_text = c.sepa_iban or config.billing.seller_iban
    if not c.sepa_creditor_id.strip():
        raise ConfigError("collections.sepa_creditor_id: empty; SEPA direct debit needs the "
                          "creditor identifier your bank gave you")
    try:
        iban = IBAN(iban_text)
        bic = BIC(c.sepa_bic) if c.sepa_bic else iban.bic
    except SchwiftyException as exc:
        raise ConfigError(f"collections.sepa_iban/sepa_bic (or billing.seller_iban): {exc}: "
                          f"{iban_text!r}") from None
    if bic is None:
        raise ConfigError("collections.sepa_bic: empty and not derivable from the IBAN "
                          f"{iban.compact}")
    return Creditor(name=config.billing.seller_name, iban=iban.compact, bic=str(bic),
                    creditor_id=c.sepa_creditor_id.strip())


def check_account_details(iban: str, bic: str | None,
                          whose: str = "") -> tuple[str, str | None]:
    """(IBAN, BIC) in their compact forms, or a 422 naming the field that is wrong (and
    ``whose`` it is, e.g. "mandate M of account A: ")."""
    try:
        checked = IBAN(iban)
    except SchwiftyException as exc:
        _invalid("iban", f"{whose}{iban!r} is not a valid IBAN: {exc}")
    if checked.country_code not in _SEPA_COUNTRIES:
        _invalid("iban", f"{whose}{checked.compact}: {checked.country_code} is not in SEPA")
    if not bic:
        return checked.compact, None
    try:
        return checked.compact, str(BIC(bic))
    except SchwiftyException as exc:
        _invalid("bic", f"{whose}{bic!r} is not a valid BIC: {exc}")


async def put_mandate(pool: asyncpg.Pool, actor: str, mandate: Mandate) -> Mandate:
    if mandate.sequence_type not in SEQUENCE_TYPES:
        _invalid("sequence_type", f"{mandate.sequence_type!r} is not one of "
                 f"{', '.join(SEQUENCE_TYPES)}")
    iban, bic = check_account_details(mandate.iban, mandate.bic)
    stored = msgspec.structs.replace(mandate, iban=iban, bic=bic)
    async with pool.acquire() as conn, conn.transaction():
        account = await repo.account(conn, mandate.account_id)
        if account is None:
            raise NotFound(f"no account {mandate.account_id}")
        if account["currency"].strip() != "EUR":
            _invalid("account_id", f"account {mandate.account_id} is billed in "
                     f"{account['currency'].strip()}: SEPA direct debit is in EUR only")
        before = await repo.mandate(conn, mandate.account_id)
        if not await repo.put_mandate(conn, stored):
            raise Conflict(f"mandate {mandate.mandate_id} belongs to another account")
        await audit.record(conn, actor, "mandate.put", f"mandate:{mandate.account_id}",
                           None if before is None else msgspec.to_builtins(before),
                           msgspec.to_builtins(stored))
    return stored


async def get_mandate(db: repo.Db, account_id: str) -> Mandate:
    found = await repo.mandate(db, account_id)
    if found is None:
        raise NotFound(f"account {account_id} has no SEPA mandate")
    return found


async def collect(pool: asyncpg.Pool, actor: str, creditor: Creditor, due_by: dt.date,
                  collection_date: dt.date) -> Batch | None:
    """A pain.008 batch debiting every mandated account for its open invoices due by
    ``due_by``, or None when nobody owes anything (nothing is written)."""
    async with pool.acquire() as conn, conn.transaction():
        mandated = await repo.live_mandate_accounts(conn)
        await repo.lock_accounts(conn, mandated)
        owed = await repo.direct_debit_candidates(conn, due_by)
        if not owed:
            return None
        batch_id = await repo.new_sepa_batch_id(conn)
        sepa = SepaDD({"name": creditor.name, "IBAN": creditor.iban, "BIC": creditor.bic,
                       "batch": True, "creditor_id": creditor.creditor_id,
                       "currency": "EUR"}, schema=SCHEMA, clean=True)
        debits: list[Debit] = []
        by_account: dict[str, list[asyncpg.Record]] = {}
        for row in owed:
            by_account.setdefault(row["account_id"], []).append(row)
        for n, (account_id, rows) in enumerate(by_account.items(), start=1):
            first = rows[0]
            where = f"mandate {first['mandate_id']} of account {account_id}: "
            iban, bic = check_account_details(first["iban"], first["bic"], where)
            for r in rows:
                if int(r["open"]) % _CENT:
                    raise Conflict(f"invoice {r['invoice_id']} owes "
                                   f"{format_micros(int(r['open']))} EUR, not whole cents")
            amount = sum(int(r["open"]) for r in rows)
            end_to_end = f"DD{batch_id}-{n}"
            numbers = ", ".join(str(r["number_text"]) for r in rows)
            stored, _ = await payments.record_in(conn, actor, NewPayment(
                account_id=account_id, amount_micros=amount, received_on=collection_date,
                method="sepa_dd", currency="EUR", reference=end_to_end, source="sepa_dd",
                external_id=end_to_end,
                targets=tuple(Target(int(r["invoice_id"]), int(r["open"])) for r in rows)))
            payment = {"name": first["name"], "IBAN": iban, "amount": amount // _CENT,
                       "type": first["sequence_type"], "collection_date": collection_date,
                       "mandate_id": first["mandate_id"], "mandate_date": first["signed_on"],
                       "description": f"Invoice{'s' if len(rows) > 1 else ''} {numbers}",
                       "endtoend_id": end_to_end}
            if bic:
                payment["BIC"] = bic
            sepa.add_payment(payment)
            debits.append(Debit(account_id=account_id, mandate_id=first["mandate_id"],
                                end_to_end_id=end_to_end,
                                sequence_type=first["sequence_type"],
                                amount=format_micros(amount),
                                invoice_ids=[int(r["invoice_id"]) for r in rows],
                                payment_id=stored.payment_id))
        try:
            document = sepa.export(validate=True).decode()
        except ValidationError as exc:
            raise InvalidRequest(f"the pain.008 document does not validate against {SCHEMA}:"
                                 f" {exc.__cause__}") from None
        total = sum(int(r["open"]) for r in owed)
        await repo.insert_sepa_batch(conn, batch_id=batch_id, message_id=sepa.msg_id,
                                     due_by=due_by, collection_date=collection_date,
                                     transactions=len(debits), total_micros=total,
                                     document=document, created_by=actor)
        await repo.advance_mandates(conn, list(by_account), collection_date)
        await audit.record(conn, actor, "sepa.batch", f"sepa_batch:{batch_id}", None,
                           {"message_id": sepa.msg_id, "transactions": len(debits),
                            "total_micros": total,
                            "collection_date": collection_date.isoformat()})
    return Batch(batch_id=batch_id, message_id=sepa.msg_id, due_by=due_by,
                 collection_date=collection_date, transactions=len(debits),
                 total=format_micros(total), debits=debits, document=document)


async def batch_document(db: repo.Db, batch_id: int) -> str:
    found = await repo.sepa_batch_document(db, batch_id)
    if found is None:
        raise NotFound(f"no SEPA batch {batch_id}")
    return found


def _invalid(field: str, message: str) -> NoReturn:
    raise InvalidRequest(f"invalid body: $.{field}: {message}",
                         errors=[{"location": "body", "path": f"$.{field}", "message": message}])


# EEA countries and the others in the SEPA scheme (EPC409-09).
_SEPA_COUNTRIES = frozenset(
    "AD AT BE BG CH CY CZ DE DK EE ES FI FR GB GI GR HR HU IE IS IT LI LT LU LV MC MT NL NO "
    "PL PT RO SE SI SK SM VA AX BL GF GP MF MQ PM RE YT GG IM JE AL MD ME MK".split())
