"""What every file format hands the pipeline: file metadata, batches, per-record problems.

``open_file`` (in ``adapters.formats``) returns a ``DecodedFile``; iterating its
``batches()`` yields ``DecodedBatch``es in file order. A record that is well framed but unusable
(missing mandatory field, bad timestamp, unsupported record type) becomes a
``RecordProblem`` in its batch, with the reason for suspense and its byte offset (or line),
and the file goes on. Damage that makes the rest of the file unreadable raises
``core.errors.DecodeError`` (``offset``; ``detail["record_index"]`` = records seen before
it) *after* every batch before the damage has been yielded, so nothing decoded is lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import msgspec

from billing_oss.core.errors import DecodeError, Reason
from billing_oss.core.records import UsageRecord


class FileInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    format: str
    sequence_number: int | None = None
    sender: str | None = None
    recipient: str | None = None
    declared_count: int | None = None  # CDR count from the 32.297 header / TAP3 audit
    header: dict[str, Any] = msgspec.field(default_factory=dict)


class RecordProblem(msgspec.Struct, frozen=True, kw_only=True):
    index: int  # position of the record in the file, counting every record
    offset: int  # byte offset of the record (CSV: line number)
    reason: Reason
    detail: str
    raw: bytes = b""


class DecodedBatch(msgspec.Struct, kw_only=True):
    first_index: int
    records: list[UsageRecord]
    problems: list[RecordProblem] = msgspec.field(default_factory=list)
    indexes: list[int] = msgspec.field(default_factory=list)  # file index of each record


class DecodedFile(Protocol):
    info: FileInfo

    def batches(self) -> Iterator[DecodedBatch]: ...

    def close(self) -> None: ...

    def __enter__(self) -> DecodedFile: ...

    def __exit__(self, *exc: object) -> None: ...


class Decoded(msgspec.Struct, kw_only=True):
    """Everything decoded from one payload; ``error`` is the file-level failure, if any."""

    info: FileInfo
    records: list[UsageRecord]
    problems: list[RecordProblem]
    error: DecodeError | None = None


def collect(decoded: DecodedFile) -> Decoded:
    records: list[UsageRecord] = []
    problems: list[RecordProblem] = []
    error: DecodeError | None = None
    try:
        for batch in decoded.batches():
            records.extend(batch.records)
            problems.extend(batch.problems)
    except DecodeError as exc:
        error = exc
    return Decoded(info=decoded.info, records=records, problems=problems, error=error)
