"""The ``jsonl`` format: one normalised usage record (DESIGN.md §5b) per line.

It is what ``billing-oss decode`` prints, so decoded files can be replayed, and what tests and
tools use to feed the pipeline. A line that is not a valid record becomes a ``Reject`` naming
the line and the problem; it goes to suspense with the line as its raw form.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec

from server.errors import Reason
from server.pipeline.contract import Reject
from server.pipeline.ports import Item
from server.records import UsageRecord

_decoder = msgspec.json.Decoder(UsageRecord)


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
