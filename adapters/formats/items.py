"""The formats as the pipeline's ``Decoder`` port (``core.ports.Decoder``).

``decoder_for(format, options)`` returns ``decode(path, *, source, chunk)`` yielding lists of
items in file order: ``UsageRecord``s, and a ``Reject`` (reason, detail, raw bytes,
``where`` = byte offset or line) for each record that could not become one. A file-level
``DecodeError`` propagates after the items before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from billing_oss.adapters.formats import open_file
from billing_oss.adapters.formats.api import DecodedBatch
from billing_oss.core.contract import Reject
from billing_oss.core.records import UsageRecord

Item = UsageRecord | Reject
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


def decoder_for(format: str, options: Mapping[str, Any] | None = None) -> DecodeFn:
    def decode(path: Path, *, source: str, chunk: int) -> Iterator[list[Item]]:
        with open_file(format, path, source=source, options=options,
                       batch_size=max(1, chunk)) as decoded:
            for batch in decoded.batches():
                yield batch_items(batch, line_numbers=format == "csv")

    return decode
