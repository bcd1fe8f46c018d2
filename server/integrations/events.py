"""Domain events: one msgspec Struct per event type, registered by its ``type`` name.

A module that emits an event declares its type once, next to the code that causes it::

    class PaymentReceived(DomainEvent, frozen=True, kw_only=True):
        event_type: ClassVar[str] = "payment.received"
        event_version: ClassVar[int] = 1
        payment_id: int
        amount: str          # decimal string, never a float
        currency: str

and emits it in the transaction of the change (``server.integrations.outbox.emit``). The
registry gives the webhooks section of the OpenAPI document one schema per type, and lets a
consumer decode a stored payload back into its type.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

REGISTRY: dict[str, type[DomainEvent]] = {}


class DomainEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event payload. A subclass sets ``event_type`` (registered once: two
    classes claiming one name is a bug) and ``event_version`` (≥ 1, raised when the payload
    changes incompatibly)."""

    event_type: ClassVar[str] = ""
    event_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("event_type", "")
        if not name:
            return  # an abstract intermediate class
        if name in REGISTRY:
            raise TypeError(f"domain event type {name!r} is declared twice "
                            f"({REGISTRY[name].__module__} and {cls.__module__})")
        if cls.event_version < 1:
            raise TypeError(f"domain event {name!r}: event_version must be ≥ 1")
        REGISTRY[name] = cls


def decode(type: str, payload: bytes) -> DomainEvent:
    """A stored payload back into its registered type (``KeyError`` for an unknown type)."""
    return msgspec.json.decode(payload, type=REGISTRY[type])


# Settlement with carriers (server/settlement): a file's lifecycle and the ledger's alarms,
# on the stream "partner:<TADIG>".
class SettlementFileChanged(DomainEvent, frozen=True, kw_only=True):
    """A TAP/RAP file was generated, sent, acknowledged, returned, resubmitted or received."""

    event_type: ClassVar[str] = "settlement.file_changed"
    event_version: ClassVar[int] = 1
    file_id: int
    partner: str
    name: str
    fsn: int
    state: str
    action: str
    events: int
    total_charge: str    # decimal string in the TAP currency
    currency: str


class SettlementSequenceGap(DomainEvent, frozen=True, kw_only=True):
    """An inbound file's sequence number skipped numbers (or repeated one)."""

    event_type: ClassVar[str] = "settlement.sequence_gap"
    event_version: ClassVar[int] = 1
    partner: str
    file_type: str
    expected: int
    received: int


# --- collections (server/collections) -------------------------------------------------------

class PaymentReceived(DomainEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "payment.received"
    event_version: ClassVar[int] = 1
    payment_id: int
    amount: str  # decimal string
    currency: str
    received_on: str  # ISO date
    method: str
    allocated: str  # how much went to open items at once


class PaymentRefunded(DomainEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "payment.refunded"
    event_version: ClassVar[int] = 1
    payment_id: int
    amount: str
    currency: str
    refunded_on: str
    reason: str


class PaymentReversed(DomainEvent, frozen=True, kw_only=True):
    """A payment that bounced or was returned (R-transaction): its invoices are open again."""

    event_type: ClassVar[str] = "payment.reversed"
    event_version: ClassVar[int] = 1
    payment_id: int
    amount: str
    currency: str
    reversed_on: str
    reason: str  # the bank's return reason code (AC04, AM04, MD06...) or the operator's


class DunningStep(DomainEvent, frozen=True, kw_only=True):
    """A step of the dunning ladder taken for one overdue invoice (reminder, fee, suspend,
    terminate): a notification system sends the reminder, a fee is on the ledger."""

    event_type: ClassVar[str] = "dunning.step"
    event_version: ClassVar[int] = 1
    invoice_id: int | None
    step: int
    action: str
    days_past_due: int
    open: str  # what the invoice still owed when the step was taken
    currency: str
    fee: str | None = None


class AccountSuspend(DomainEvent, frozen=True, kw_only=True):
    """Provisioning: bar the account's service (MQTT provisioning/<account>/command)."""

    event_type: ClassVar[str] = "account.suspend"
    event_version: ClassVar[int] = 1
    reason: str
    invoice_ids: list[int]


class AccountResume(DomainEvent, frozen=True, kw_only=True):
    """Provisioning: lift a dunning suspension; the debt that caused it is cleared."""

    event_type: ClassVar[str] = "account.resume"
    event_version: ClassVar[int] = 1
    reason: str


class AccountTerminate(DomainEvent, frozen=True, kw_only=True):
    """Provisioning: end the service; the debt is handed over to collection."""

    event_type: ClassVar[str] = "account.terminate"
    event_version: ClassVar[int] = 1
    reason: str
    invoice_ids: list[int]


# Analytics (server.analytics.anomalies) -------------------------------------------------

class AnomalyFlagged(DomainEvent, frozen=True, kw_only=True):
    """A detector found an account × service's usage or money far from its baseline."""

    event_type: ClassVar[str] = "anomaly.flagged"
    flag_id: int
    service: str
    metric: str  # records | amount
    granularity: str  # day | hour
    period_start: str  # RFC 3339
    direction: str  # spike | drop
    observed: str  # decimal string (records, or money in the currency's units)
    baseline: str
    score: str
    method: str
    explanation: str


class AnomalyReviewed(DomainEvent, frozen=True, kw_only=True):
    """An operator confirmed or dismissed a flag."""

    event_type: ClassVar[str] = "anomaly.reviewed"
    flag_id: int
    state: str  # confirmed | dismissed
    by: str


# Mediation, billing and webhooks (issue 17) ----------------------------------------------

class UsageFileIngested(DomainEvent, frozen=True, kw_only=True):
    """A source file was ingested (state done, or error when it broke part-way); its counts
    reconcile: records_in = charged + suspense + duplicates + filtered + pending. Stream
    "source:<source>"."""

    event_type: ClassVar[str] = "usage.file_ingested"
    file_id: int
    source: str
    name: str
    sequence: int | None
    state: str  # done | error
    error: str | None
    records_in: int
    charged: int
    suspense: int
    duplicates: int
    filtered: int
    pending: int


class UsageFileGap(DomainEvent, frozen=True, kw_only=True):
    """A source's file sequence skipped numbers: ``name`` (numbered ``sequence``) arrived
    while first_missing..last_missing never did. Stream "source:<source>"."""

    event_type: ClassVar[str] = "usage.file_gap"
    source: str
    name: str
    sequence: int
    first_missing: int
    last_missing: int


class SuspenseThresholdCrossed(DomainEvent, frozen=True, kw_only=True):
    """A source's open suspense grew past a configured threshold. Stream "source:<source>"."""

    event_type: ClassVar[str] = "suspense.threshold_crossed"
    source: str
    open_records: int
    threshold: int


class InvoiceFinalised(DomainEvent, frozen=True, kw_only=True):
    """A draft invoice was numbered and frozen: it is owed from now on."""

    event_type: ClassVar[str] = "invoice.finalised"
    invoice_id: int
    number: str
    issue_date: str  # ISO date
    due_date: str
    currency: str
    total: str  # decimal string: what the invoice makes payable


class CreditNoteIssued(DomainEvent, frozen=True, kw_only=True):
    """A credit note was issued against a finalised invoice."""

    event_type: ClassVar[str] = "credit_note.issued"
    credit_note_id: int
    number: str
    invoice_id: int
    invoice_number: str
    issue_date: str
    currency: str
    total: str  # decimal string, tax included
    reason: str


class WebhookEndpointDisabled(DomainEvent, frozen=True, kw_only=True):
    """A webhook endpoint stopped receiving: its deliveries failed until dead-lettered too
    many times in a row. Stream "webhook:<endpoint_id>"."""

    event_type: ClassVar[str] = "webhook.endpoint_disabled"
    endpoint_id: int
    url: str
    reason: str
    dead_in_a_row: int


class WebhookPing(DomainEvent, frozen=True, kw_only=True):
    """A test event sent to one endpoint on request (POST /v1/webhooks/{id}/ping), to check
    the receiver and its signature verification. Stream "webhook:<endpoint_id>"."""

    event_type: ClassVar[str] = "webhook.ping"
    endpoint_id: int
    message: str


# --- assurance (server/assurance) ------------------------------------------------------------

class AuditCheckpoint(DomainEvent, frozen=True, kw_only=True):
    """A signed checkpoint of the audit chain head (``server.assurance.checkpoints``), on the
    stream "audit:checkpoints", for a receiver to keep where the database administrator
    cannot rewrite it. The fields are the checkpoint file's; ``signature`` (Ed25519, hex)
    covers the canonical JSON of the others."""

    event_type: ClassVar[str] = "audit.checkpoint"
    event_version: ClassVar[int] = 1
    version: int
    seq: int
    hash: str
    at: str
    merkle_root: str
    leaves: int
    public_key: str
    signature: str


class ControlFailed(DomainEvent, frozen=True, kw_only=True):
    """A revenue-assurance control found offenders, on the stream "control:<name>"."""

    event_type: ClassVar[str] = "control.failed"
    event_version: ClassVar[int] = 1
    run_id: int
    control: str
    version: int
    offending: int
    at_stake: dict[str, str]  # currency → decimal string
    evidence: list[str]       # the first offending objects
    query: str                # lists every offender
