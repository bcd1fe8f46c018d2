"""The collections package's values: payments, allocations, ledger entries, aging rows.

Amounts are signed micro-units (int) of their currency, as everywhere in billing-oss; the
edges (HTTP, CLI) turn them into decimal strings.
"""

from __future__ import annotations

import datetime as dt
import itertools

import msgspec

AUTO = "auto"  # allocate to open items oldest first
NONE = "none"  # leave the payment unapplied (a credit balance)


class Allocation(msgspec.Struct, frozen=True, kw_only=True):
    """Net amount of one payment allocated to one item (an invoice or a fee)."""

    entry_id: int
    invoice_id: int | None
    kind: str
    amount_micros: int


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    payment_id: int
    amount_micros: int
    currency: str
    received_on: dt.date
    method: str
    reference: str | None
    source: str
    external_id: str | None
    created_at: dt.datetime
    allocated_micros: int
    refunded_micros: int
    reversed_micros: int
    allocations: tuple[Allocation, ...] = ()

    @property
    def unapplied_micros(self) -> int:
        return (self.amount_micros - self.allocated_micros - self.refunded_micros
                - self.reversed_micros)


class Target(msgspec.Struct, frozen=True):
    """A named allocation: an invoice and how much (None: what it still owes, up to what
    the payment has left)."""

    invoice_id: int
    amount_micros: int | None = None


class NewPayment(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    amount_micros: int
    received_on: dt.date
    method: str
    currency: str | None = None  # None: the account's
    reference: str | None = None
    source: str = "manual"
    external_id: str | None = None  # the source's own id: the same one again records nothing
    allocate: str = AUTO  # AUTO or NONE, when targets is empty
    targets: tuple[Target, ...] = ()


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One ledger entry with the account's running balance after it (statements)."""

    entry_id: int
    kind: str
    currency: str
    amount_micros: int
    entry_date: dt.date
    due_date: dt.date | None
    invoice_id: int | None
    payment_id: int | None
    description: str
    reason: str | None
    balance_micros: int


class AgingRow(msgspec.Struct, frozen=True, kw_only=True):
    """What one account (or, with account_id None, everyone) owes in one currency as of a
    date: open items by bucket of days past due, less unapplied payment money (credit,
    ≤ 0). total = Σ buckets + credit = the ledger balance as of that date."""

    account_id: str | None
    currency: str
    buckets: tuple[int, ...]
    credit_micros: int

    @property
    def total_micros(self) -> int:
        return sum(self.buckets) + self.credit_micros


class Mandate(msgspec.Struct, frozen=True, kw_only=True):
    """A SEPA direct-debit mandate: what the account signed, and the sequence type
    (FRST, RCUR, OOFF, FNAL) of its next collection."""

    account_id: str
    mandate_id: str
    iban: str
    bic: str | None
    signed_on: dt.date
    sequence_type: str = "FRST"
    ended_on: dt.date | None = None


DEFAULT_BUCKETS = (0, 30, 60, 90)  # days past due: current, 1–30, 31–60, 61–90, 90+


def bucket_labels(bounds: tuple[int, ...]) -> list[str]:
    """``(0, 30, 60, 90)`` -> current, 1-30, 31-60, 61-90, 90+."""
    labels = ["current"]
    for low, high in itertools.pairwise(bounds):
        labels.append(f"{low + 1}-{high}")
    labels.append(f"{bounds[-1]}+")
    return labels
