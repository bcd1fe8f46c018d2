"""The registered formats as the pipeline's decoder port (``core.ports.SequencedDecoder``).

``FormatDecoder(format, options)``, called as ``decode(path, *, source, chunk)``, streams a
file's items in file order: ``UsageRecord``s, and a ``Reject`` (reason, detail, raw bytes,
``where`` = byte offset or line, as the format locates its records) for each record that
could not become one. A file-level ``DecodeError`` propagates after the items before it.
Partial records the decoder left without ``attrs["merge_key"]`` get the format's
``partial_key`` (3GPP calls: recording entity + call reference).

``header(path, count=...)`` reads what the file says of itself: the header's sequence number
(32.297 file sequence number, TAP3 FileSequenceNumber) for ``source_files.sequence_no``, and,
when ``count`` is asked, the record count it declares (32.297 header, TAP3 audit) or, for
text formats, its line count: the progress display's total.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from billing_oss.adapters.formats.api import DecodedBatch
from billing_oss.adapters.formats.registry import get
from billing_oss.adapters.formats.threegpp import Cdr3gppFile, NativeChunk
from billing_oss.core.contract import Reject
from billing_oss.core.ports import FileHeader, Item
from billing_oss.core.records import UsageRecord

DecodeFn = Callable[..., Iterator[list[Item]]]


def batch_items(batch: DecodedBatch, *, line_numbers: bool = False) -> list[Item]:
    """A batch's records and problems merged back into file order."""
    if not batch.problems:
        return list(batch.records)
    keyed: list[tuple[int, Item]] = list(zip(batch.indexes, batch.records, strict=True))
    for p in batch.problems:
        where = f"line {p.offset}" if line_numbers else f"offset {p.offset}"
        keyed.append((p.index, Reject(reason=p.reason, detail=p.detail, raw=p.raw, where=where)))
    keyed.sort(key=lambda pair: pair[0])
    return [item for _, item in keyed]


class FormatDecoder:
    """One registered format behind the pipeline's decoder protocol."""

    def __init__(self, fmt: str, options: Mapping[str, Any] | None = None) -> None:
        self.format = get(fmt)
        self.fmt = fmt
        self.options = dict(options or {})

    def __call__(self, path: Path, *, source: str, chunk: int) -> Iterator[list[Item]]:
        lines = self.format.located_by == "line"
        partial_key = self.format.partial_key
        with self.format.open(path, source=source, options=self.options,
                              batch_size=max(1, chunk)) as decoded:
            for batch in decoded.batches():
                if partial_key is not None:
                    _key_partials(batch.records, partial_key)
                yield batch_items(batch, line_numbers=lines)

    def columns(self, path: Path, *, source: str, chunk: int
                ) -> Iterator[list[Item] | NativeChunk]:
        """Like calling the decoder, but a format that decodes into native batches (3GPP)
        yields them whole (``NativeChunk``) for the columnar path of ingest."""
        with self.format.open(path, source=source, options=self.options,
                              batch_size=max(1, chunk)) as decoded:
            if isinstance(decoded, Cdr3gppFile):
                yield from decoded.column_batches()
                return
        yield from self(path, source=source, chunk=chunk)

    def header(self, path: Path, *, count: bool) -> FileHeader:
        with self.format.open(path, source="", options=self.options) as decoded:
            number, items = decoded.info.sequence_number, decoded.info.declared_count
        declared = int(items) if items is not None else None
        if self.format.item_count == "lines" and count:
            items = line_count(path)  # a column header line, blank lines included: an estimate
        return FileHeader(int(number) if number is not None else None,
                          int(items) if items is not None and count else None, declared)


def decoder_for(format: str, options: Mapping[str, Any] | None = None) -> DecodeFn:
    return FormatDecoder(format, options)


def line_count(path: Path) -> int:
    """Lines of ``path`` (a last line without a newline counts), read in 1 MiB blocks."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _key_partials(records: list[UsageRecord],
                  partial_key: Callable[[UsageRecord], str | None]) -> None:
    for record in records:
        if record.partial_seq is None or "merge_key" in record.attrs:
            continue
        if (key := partial_key(record)) is not None:
            record.attrs["merge_key"] = key
