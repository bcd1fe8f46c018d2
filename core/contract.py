"""What protocol adapters hand to the mediation pipeline, and what they get back.

An adapter turns what it received into ``Delivery``s, each the unit its source acknowledges
as a whole (one MQTT message, one HTTP request), and awaits ``Sink.commit(deliveries)``.
When that returns, the effect of every delivery in the list is committed in PostgreSQL (one
transaction) and only then may the adapter acknowledge them (PUBACK, HTTP 200). A delivery
whose ``(source, position)`` was committed before is a replay: its ``Outcome`` says so, carries
the stored outcome of the first delivery, and nothing changes.

Files (SFTP, ``billing-oss ingest``) go through ``Sink.ingest_file``; their position is the
content's sha256, registered in ``source_files``.

Invariant for every outcome: ``in = charged + suspense + duplicates + filtered + pending``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

from billing_oss.core.errors import Reason
from billing_oss.core.records import UsageRecord

RecordStatus = Literal["charged", "suspense", "duplicate", "filtered", "pending"]


class Reject(msgspec.Struct, frozen=True, kw_only=True):
    """Input the adapter could not turn into a record; it goes to suspense, never dropped."""

    reason: Reason
    detail: str
    raw: bytes
    where: str | None = None  # byte offset, batch index or field that was wrong
    # The source it is filed under in suspense, when not the delivery's (an MQTT topic's).
    source: str | None = None


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    source: str  # the configured source name, e.g. "mqtt", "http:<key id>", "sftp:<name>"
    position: str  # what makes a redelivery recognisable: message id, idempotency key
    records: list[UsageRecord]
    rejects: list[Reject] = msgspec.field(default_factory=list)


class Counts(msgspec.Struct, kw_only=True):
    in_: int = msgspec.field(default=0, name="in")
    charged: int = 0
    suspense: int = 0
    duplicates: int = 0
    filtered: int = 0
    pending: int = 0


class RecordResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    record_key: str | None
    status: RecordStatus
    reason: str | None = None  # a Reason value when status == "suspense"
    detail: str | None = None
    amount: str | None = None  # decimal string, when charged
    currency: str | None = None


class Outcome(msgspec.Struct, kw_only=True):
    position: str
    replay: bool
    counts: Counts
    results: list[RecordResult]  # one per record, in delivery order, then one per reject


class FileOutcome(msgspec.Struct, kw_only=True):
    source_file_id: int
    name: str
    sha256: str
    sequence_no: int | None
    replay: bool
    counts: Counts
    totals: dict[str, str]  # currency → total charged, decimal string


class FileAlarm(msgspec.Struct, frozen=True, kw_only=True):
    """Something wrong with a source's sequence of files: ``gap`` (numbers missing in
    between), ``repeat`` (same content again), ``reused`` (a number with other content) or
    ``incomplete`` (a file not whole in time)."""

    source: str
    name: str
    sequence_no: int | None
    kind: str
    detail: str
    first_missing: int | None = None
    last_missing: int | None = None


class Sink(Protocol):
    @property
    def formats(self) -> Collection[str]:
        """The file formats ``ingest_file`` decodes."""
        ...

    async def commit(self, deliveries: Sequence[Delivery]) -> list[Outcome]: ...

    async def ingest_file(
        self, path: Path, *, source: str, format: str, name: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> FileOutcome: ...

    async def file_alarm(self, alarm: FileAlarm) -> bool:
        """Record the alarm (and, for a gap, its event) in one transaction. False: a
        ``not_usage`` alarm already named this file (it is named once, not after each
        restart)."""
        ...
