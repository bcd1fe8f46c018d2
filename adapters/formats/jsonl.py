"""The ``jsonl`` format: one normalised usage record (DESIGN.md §5b) per line.

It is what ``billing-oss decode`` prints, so decoded files can be replayed, and what tests and
tools use to feed the pipeline. A line that is not a valid record becomes a problem naming
the line and what is wrong with it; it goes to suspense with the line as its raw form.
Blank lines are skipped. A record without a ``source`` gets the one the file is read for.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import msgspec

from billing_oss.adapters.formats.api import DecodedBatch, FileInfo, RecordProblem
from billing_oss.adapters.formats.options import parse_options
from billing_oss.adapters.formats.registry import Format
from billing_oss.core.errors import Reason
from billing_oss.core.ports import Item
from billing_oss.core.records import UsageRecord

_decoder = msgspec.json.Decoder(UsageRecord)


class JsonlFile:
    """JSON lines opened for batch decoding (``DecodedFile``)."""

    def __init__(self, stream: IO[bytes], *, source: str,
                 options: Mapping[str, Any] | None = None, batch_size: int = 4096) -> None:
        parse_options("jsonl", options)  # it declares none: any given is refused by name
        self._fh = stream
        self.source = source
        self.batch_size = batch_size
        self.info = FileInfo(format="jsonl")

    def __enter__(self) -> JsonlFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    def batches(self) -> Iterator[DecodedBatch]:
        index, size, source = 0, self.batch_size, self.source
        out = DecodedBatch(first_index=0, records=[])
        for number, line in enumerate(self._fh, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                record = _decoder.decode(line)
            except msgspec.ValidationError as exc:
                out.problems.append(RecordProblem(index=index, offset=number,
                                                  reason=Reason.BAD_FIELD, detail=str(exc),
                                                  raw=line))
            except msgspec.DecodeError as exc:
                out.problems.append(RecordProblem(index=index, offset=number,
                                                  reason=Reason.MALFORMED, detail=str(exc),
                                                  raw=line))
            else:
                if not record.source:
                    record.source = source
                out.records.append(record)
                out.indexes.append(index)
            index += 1
            if index - out.first_index >= size:
                yield out
                out = DecodedBatch(first_index=index, records=[])
        if out.records or out.problems:
            yield out


def open_jsonl(path: Path, *, source: str, options: Mapping[str, Any] | None = None,
               batch_size: int = 4096) -> JsonlFile:
    return JsonlFile(path.open("rb"), source=source, options=options, batch_size=batch_size)


def _from_bytes(data: bytes, *, source: str, options: Mapping[str, Any] | None = None
                ) -> JsonlFile:
    return JsonlFile(io.BytesIO(data), source=source, options=options)


def decode_jsonl(path: Path, *, source: str, chunk: int) -> Iterator[list[Item]]:
    """The items of ``path`` in chunks of ``chunk`` (the pipeline's ``Decoder`` shape)."""
    from billing_oss.adapters.formats.items import FormatDecoder

    return FormatDecoder("jsonl")(path, source=source, chunk=chunk)


def sniff(head: bytes) -> bool:
    """A JSON object first (after blank space)."""
    return head.lstrip()[:1] == b"{"


FORMAT = Format(
    name="jsonl", title="JSON lines: one normalised usage record per line, as decode prints",
    suffixes=(".jsonl", ".json"), sniff=sniff, open=open_jsonl, read=_from_bytes,
    item_count="lines", located_by="line")
