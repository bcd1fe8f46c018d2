"""CSV CDRs: Asterisk ``Master.csv`` (cdr_csv) by default, any layout through a mapping.

Options: ``columns`` (the file's column names, default ``ASTERISK_COLUMNS``; a first row
equal to them is taken as a header), ``mapping`` (normalised field → column;
``event_time`` takes a list tried in order), ``timezone`` (IANA name the timestamps are
written in, default UTC), ``time_format`` (strptime, default ``%Y-%m-%d %H:%M:%S``),
``delimiter``, ``kind`` (default ``voice``).

Asterisk conventions (DESIGN.md §5b): ``duration_s`` = billsec, ``event_time`` = answer
(else start), ``calling``/``called`` = src/dst, ``record_key`` = uniqueid where present,
else ``sha1:<first 20 hex of the row's SHA-1>`` (identical rows are the same call).
Problems are reported per line (``RecordProblem.offset`` is the 1-based line number).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing_oss.adapters.formats.api import DecodedBatch, FileInfo, RecordProblem
from billing_oss.core.errors import DecodeError, Reason
from billing_oss.core.records import Kind, UsageRecord

ASTERISK_COLUMNS = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
    "uniqueid", "userfield",
)
ASTERISK_MAPPING: dict[str, Any] = {
    "calling": "src", "called": "dst", "duration_s": "billsec",
    "event_time": ["answer", "start"], "record_key": "uniqueid",
}
_ATTR_COLUMNS = ("accountcode", "dcontext", "channel", "dstchannel", "disposition", "lastapp")


class CsvFile:
    def __init__(
        self, stream: IO[str], *, source: str, options: Mapping[str, Any] | None = None,
        batch_size: int = 4096,
    ) -> None:
        opts = dict(options or {})
        self._fh = stream
        self.source = source
        self.batch_size = batch_size
        self.columns = tuple(opts.get("columns", ASTERISK_COLUMNS))
        self.mapping = {**ASTERISK_MAPPING, **opts.get("mapping", {})}
        try:
            self.tz = ZoneInfo(str(opts.get("timezone", "UTC")))
        except (ZoneInfoNotFoundError, ValueError):
            raise DecodeError(f"unknown timezone {opts.get('timezone')!r}") from None
        self.time_format = str(opts.get("time_format", "%Y-%m-%d %H:%M:%S"))
        self.delimiter = str(opts.get("delimiter", ","))
        self.kind = cast(Kind, opts.get("kind", "voice"))
        self.info = FileInfo(format="csv", header={"columns": list(self.columns)})

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    def batches(self) -> Iterator[DecodedBatch]:
        reader = csv.reader(self._fh, delimiter=self.delimiter)
        out = DecodedBatch(first_index=0, records=[])
        index = 0
        try:
            for row in reader:
                line = reader.line_num
                if not row or (index == 0 and tuple(row) == self.columns[: len(row)]):
                    continue
                try:
                    out.records.append(self._record(row, line))
                    out.indexes.append(index)
                except ValueError as exc:
                    out.problems.append(RecordProblem(
                        index=index, offset=line, reason=Reason.BAD_FIELD,
                        detail=f"line {line}: {exc}",
                        raw=self.delimiter.join(row).encode()))
                index += 1
                if len(out.records) + len(out.problems) >= self.batch_size:
                    yield out
                    out = DecodedBatch(first_index=index, records=[])
        except csv.Error as exc:
            if out.records or out.problems:
                yield out
            raise DecodeError(f"line {reader.line_num}: {exc}", offset=reader.line_num,
                              record_index=index) from None
        if out.records or out.problems:
            yield out

    def _record(self, row: list[str], line: int) -> UsageRecord:
        if len(row) > len(self.columns) or len(row) < len(self.columns) - 2:
            raise ValueError(f"{len(row)} columns, expected {len(self.columns)}")
        values = dict(zip(self.columns, row, strict=False))

        def col(field: str) -> str:
            name = self.mapping.get(field)
            return values.get(name, "").strip() if isinstance(name, str) else ""

        when = ""
        for name in self.mapping.get("event_time", []):
            when = values.get(name, "").strip()
            if when:
                break
        if not when:
            raise ValueError("no event time (answer/start empty)")
        try:
            local = dt.datetime.strptime(when, self.time_format)
        except ValueError:
            raise ValueError(f"bad time {when!r}") from None
        utc = local.replace(tzinfo=self.tz).astimezone(dt.UTC)
        duration_text = col("duration_s")
        if not duration_text.isdigit():
            raise ValueError(f"bad billsec {duration_text!r}")
        key = col("record_key")
        if not key:
            key = "sha1:" + hashlib.sha1("\x1f".join(row).encode()).hexdigest()[:20]
        attrs = {c: values[c] for c in _ATTR_COLUMNS if values.get(c)}
        attrs["line"] = line
        return UsageRecord(
            record_key=key, source=self.source, kind=self.kind,
            event_time=utc.strftime("%Y-%m-%dT%H:%M:%SZ"), duration_s=int(duration_text),
            calling=col("calling") or None, called=col("called") or None, attrs=attrs,
        )


def open_csv(
    path: Path, *, source: str, options: Mapping[str, Any] | None = None, batch_size: int = 4096
) -> CsvFile:
    fh = open(path, encoding="utf-8", errors="replace", newline="")
    return CsvFile(fh, source=source, options=options, batch_size=batch_size)


def csv_from_bytes(
    data: bytes, *, source: str, options: Mapping[str, Any] | None = None
) -> CsvFile:
    text = io.StringIO(data.decode("utf-8", errors="replace"), newline="")
    return CsvFile(text, source=source, options=options)
