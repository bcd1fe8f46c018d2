"""The ``jsonl`` format: one normalised usage record (DESIGN.md §5b) per line.

It is what ``billing-oss decode`` prints, so decoded files can be replayed, and what tests and
tools use to feed the pipeline. A line that is not a valid record becomes a ``Reject`` naming
the line and the problem; it goes to suspense with the line as its raw form.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec

from billing_oss.core.contract import Reject
from billing_oss.core.errors import Reason
from billing_oss.core.ports import FileHeader, Item
from billing_oss.core.records import UsageRecord

_decoder = msgspec.json.Decoder(UsageRecord)


class JsonlDecoder:
    """``decode_jsonl`` with the header the pipeline asks of a file: no sequence number, and
    its line count as the item count (blank lines included: an estimate)."""

    def __call__(self, path: Path, *, source: str, chunk: int) -> Iterator[list[Item]]:
        return decode_jsonl(path, source=source, chunk=chunk)

    def header(self, path: Path, *, count: bool) -> FileHeader:
        return FileHeader(None, line_count(path) if count else None)


def line_count(path: Path) -> int:
    """Lines of ``path`` (a last line without a newline counts), read in 1 MiB blocks."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def decode_jsonl(path: Path, *, source: str, chunk: int) -> Iterator[list[Item]]:
    """Records of ``path`` in chunks of ``chunk``; a record without a source gets ``source``."""
    items: list[Item] = []
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            items.append(_decode_line(line, number, source))
            if len(items) >= chunk:
                yield items
                items = []
    if items:
        yield items


def _decode_line(line: bytes, number: int, source: str) -> Item:
    try:
        record = _decoder.decode(line)
    except msgspec.ValidationError as exc:
        return Reject(reason=Reason.BAD_FIELD, detail=str(exc), raw=line, where=f"line {number}")
    except msgspec.DecodeError as exc:
        return Reject(reason=Reason.MALFORMED, detail=str(exc), raw=line, where=f"line {number}")
    if not record.source:
        record.source = source
    return record
