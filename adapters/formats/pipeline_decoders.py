"""The file formats of ``adapters.formats`` as the pipeline's decoders (``server.pipeline.ports``).

``FormatDecoder(fmt)`` streams a file's items in file order: each decoded ``UsageRecord``,
and each per-record problem as a ``Reject`` (reason, detail, raw bytes, byte offset or CSV
line) that the pipeline puts in suspense. ``sequence_no(path)`` reads the file's sequence
number from its header (32.297 file sequence number, TAP3 FileSequenceNumber) for
``source_files.sequence_no``.

3GPP partial records: the pipeline groups the parts of one call or bearer by
``attrs["merge_key"]`` and needs ``attrs["partial_last"]`` on each part. The decoder gives
``merge_key`` for packet records and the raw cause code (``attrs["cause"]``); here calls get
their ``merge_key`` (recording entity + call reference) and every part its
``partial_last``, read from the cause code of its record type (``PARTIAL_CAUSES``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from adapters.formats import open_file
from adapters.formats.api import Batch
from server.pipeline.contract import Reject
from server.pipeline.ports import Item
from server.records import UsageRecord

# TS 32.298 cause codes that mean "this is a partial record, more parts follow":
# CauseForTerm (MSC calls) partialRecord(1), partialRecordCallReestablishment(2);
# CauseForRecClosing (S-GW/P-GW) volumeLimit(16), timeLimit(17), servingNodeChange(18),
# maxChangeCond(19), intraSGSNIntersystemChange(21), rATChange(22), mSTimeZoneChange(23),
# sGSNPLMNIDChange(24).
PARTIAL_CAUSES: dict[str, frozenset[int]] = {
    "moCallRecord": frozenset({1, 2}),
    "mtCallRecord": frozenset({1, 2}),
    "sGWRecord": frozenset({16, 17, 18, 19, 21, 22, 23, 24}),
    "pGWRecord": frozenset({16, 17, 18, 19, 21, 22, 23, 24}),
}
_WHERE = {"csv": "line"}


class FormatDecoder:
    """One format of ``adapters.formats`` behind the pipeline's ``Decoder`` protocol."""

    def __init__(self, fmt: str, options: Mapping[str, Any] | None = None) -> None:
        self.fmt = fmt
        self.options = dict(options or {})

    def __call__(self, path: Path, *, source: str, chunk: int) -> Iterator[list[Item]]:
        where = _WHERE.get(self.fmt, "offset")
        partials = self.fmt == "3gpp"
        with open_file(self.fmt, path, source=source, options=self.options,
                       batch_size=chunk) as decoded:
            for batch in decoded.batches():
                if partials:
                    _mark_partials(batch.records)
                yield _items(batch, where)

    def sequence_no(self, path: Path) -> int | None:
        with open_file(self.fmt, path, source="", options=self.options) as decoded:
            number = decoded.info.sequence_number
        return int(number) if number is not None else None


def _items(batch: Batch, where: str) -> list[Item]:
    """Records and problems merged back into file order."""
    if not batch.problems:
        return list(batch.records)
    problems = sorted(batch.problems, key=lambda p: p.index)
    out: list[Item] = []
    p = 0
    for record, index in zip(batch.records, batch.indexes, strict=True):
        while p < len(problems) and problems[p].index < index:
            out.append(_reject(problems[p], where))
            p += 1
        out.append(record)
    out.extend(_reject(problem, where) for problem in problems[p:])
    return out


def _reject(problem: Any, where: str) -> Reject:
    return Reject(reason=problem.reason, detail=problem.detail, raw=problem.raw,
                  where=f"{where} {problem.offset}")


def _mark_partials(records: list[UsageRecord]) -> None:
    for record in records:
        if record.partial_seq is None:
            continue
        attrs = record.attrs
        rtype = attrs.get("record_type", "")
        if "merge_key" not in attrs and "call_reference" in attrs:
            attrs["merge_key"] = (f"{rtype[:6]}:{attrs.get('recording_entity')}:"
                                  f"{attrs['call_reference']}")
        cause = attrs.get("cause")
        attrs["partial_last"] = not (isinstance(cause, int)
                                     and cause in PARTIAL_CAUSES.get(rtype, ()))
