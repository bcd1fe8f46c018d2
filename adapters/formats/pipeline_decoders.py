"""The formats' pipeline decoders (``adapters.formats.items``) with what the file pipeline
also asks of them: the file's own sequence number, and a group key for partial calls.

``FormatDecoder(fmt)`` is a ``core.ports.SequencedDecoder``: called, it streams the
file's items in file order (``items.batch_items``: records, and a ``Reject`` with reason,
detail, raw bytes and byte offset / CSV line for each record that could not become one);
``header(path)`` reads the header's sequence number (32.297 file sequence number, TAP3
FileSequenceNumber) for ``source_files.sequence_no``, and the record count the file declares
(32.297 header, TAP3 audit; for CSV its line count) as the progress display's total.

3GPP partial records are grouped by ``attrs["merge_key"]``: the decoder gives it for packet
records (gateway + charging id); partial MSC calls get recording entity + call reference
here, the parts of one call sharing both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from billing_oss.adapters.formats import open_file
from billing_oss.adapters.formats.items import batch_items
from billing_oss.core.ports import FileHeader, Item
from billing_oss.core.records import UsageRecord
from billing_oss.server.pipeline.jsonlines import line_count


class FormatDecoder:
    """One format of ``adapters.formats`` behind the pipeline's decoder protocol."""

    def __init__(self, fmt: str, options: Mapping[str, Any] | None = None) -> None:
        self.fmt = fmt
        self.options = dict(options or {})

    def __call__(self, path: Path, *, source: str, chunk: int) -> Iterator[list[Item]]:
        lines = self.fmt == "csv"
        calls = self.fmt == "3gpp"
        with open_file(self.fmt, path, source=source, options=self.options,
                       batch_size=max(1, chunk)) as decoded:
            for batch in decoded.batches():
                if calls:
                    _key_partial_calls(batch.records)
                yield batch_items(batch, line_numbers=lines)

    def header(self, path: Path, *, count: bool) -> FileHeader:
        with open_file(self.fmt, path, source="", options=self.options) as decoded:
            number, items = decoded.info.sequence_number, decoded.info.declared_count
        if self.fmt == "csv" and count:
            items = line_count(path)  # the column header line included: an estimate
        return FileHeader(int(number) if number is not None else None,
                          int(items) if items is not None and count else None)


def _key_partial_calls(records: list[UsageRecord]) -> None:
    for record in records:
        if record.partial_seq is None:
            continue
        attrs = record.attrs
        if "merge_key" not in attrs and "call_reference" in attrs:
            attrs["merge_key"] = (f"{record.record_key.split(':', 1)[0]}:"
                                  f"{attrs.get('recording_entity')}:{attrs['call_reference']}")
