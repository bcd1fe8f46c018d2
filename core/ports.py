"""The two things the pipeline needs from outside: a decoder per file format and a rater.

Both are small protocols so the stages can be tested and benchmarked against whatever
implementation is plugged in (``server.rating`` for rating, ``adapters.formats`` for decoding;
the composition root — ``server.composition`` or a CLI verb — wires them together).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import msgspec

from billing_oss.core.contract import Reject
from billing_oss.core.errors import Reason
from billing_oss.core.records import UsageRecord


class Charge(msgspec.Struct, frozen=True, gc=False):
    """A record priced: the amount is integer micro-units of ``currency``.

    Every rater returns this type (native, reference, and the pipeline's); the pipeline stores
    it as a ``charges`` row, ``billing-oss rate`` prints it. A Struct, not a NamedTuple: the
    native rater builds one per record, and a Struct is built in half the time.
    """

    account_id: str
    tariff_version_id: int | None  # the stored version's id; None when rated from a file
    zone: str | None  # None: the record has no ``called`` and a "*" zone rate applied
    band: str | None  # None: no band contains the time and there is no default band
    amount_micros: int
    currency: str
    tariff_version: str  # "<tariff id>@<effective_from, RFC 3339 UTC>"

    @property
    def tariff_id(self) -> str:
        return self.tariff_version.rpartition("@")[0]

    @property
    def effective_from(self) -> str:
        return self.tariff_version.rpartition("@")[2]


class Failure(msgspec.Struct, frozen=True, gc=False):
    """A record that could not be priced; it goes to suspense with this reason."""

    reason: Reason
    detail: str
    account_id: str | None = None


class Rater(Protocol):
    """Prices records: one ``Charge`` or ``Failure`` per record, in the records' order.

    ``server.rating`` provides the real ones (native kernel and reference twin); the
    composition root hands one to the pipeline, the CLI and settlement.
    """

    def rate(self, records: Sequence[UsageRecord]) -> list[Charge | Failure]: ...


# One decoded item in file order: a record, or input that could not become one.
Item = UsageRecord | Reject


class Decoder(Protocol):
    """Streams a file's items in order, a chunk at a time (bounded memory).

    A structural error that stops decoding raises ``DecodeError`` (with the byte offset)
    after the items before it were yielded.
    """

    def __call__(self, path: Path, *, source: str, chunk: int) -> Iterator[list[Item]]: ...


class FileHeader(NamedTuple):
    """What a file says of itself before it is decoded."""

    sequence_no: int | None  # stored in ``source_files.sequence_no`` unless the caller gives one
    # About how many items (records, good or bad) it holds, for the progress display only:
    # the count a header declares, or a line count; may be wrong, never relied upon.
    items: int | None
    # The record count the header declares (32.297 CDR count, TAP3 audit), when it declares
    # one; stored in ``source_files.declared_records`` for the collection controls.
    declared: int | None = None


@runtime_checkable
class SequencedDecoder(Protocol):
    """A decoder that can also read the file's header: its own sequence number and, when
    ``count`` is asked (a format may need a pass over the file for it), its item count."""

    def __call__(self, path: Path, *, source: str, chunk: int) -> Iterator[list[Item]]: ...

    def header(self, path: Path, *, count: bool) -> FileHeader: ...
