"""CSV CDRs: Asterisk ``Master.csv`` (cdr_csv) by default, any layout through a mapping.

Options (typed in ``adapters.formats.options``): ``columns`` (the file's column names; a
first row equal to them is taken as a header), ``mapping`` (normalised field → column;
``event_time`` takes a list tried in order), ``timezone`` (IANA name the timestamps are
written in, default UTC), ``time_format`` (strptime, default ``%Y-%m-%d %H:%M:%S``),
``delimiter``, ``kind`` (default ``voice``).

Without ``columns`` each line's layout is told by its column count: 21 columns are Asterisk
12+ (``peeraccount``, ``linkedid``, ``sequence`` after ``userfield``), 16 to 18 the older
layout (``uniqueid`` and ``userfield`` may be switched off). A file written across an
Asterisk upgrade holds both; any other count is a problem naming the line.

Asterisk conventions (DESIGN.md §5b): ``duration_s`` = billsec, ``event_time`` = answer
(else start), ``calling``/``called`` = src/dst. ``record_key`` is ``<linkedid>:<sequence>``
where both are present (Asterisk 12+: the sequence is unique per CDR) and otherwise
``sha1:<first 20 hex of the row's SHA-1>``. It is never the ``uniqueid``: Asterisk writes
several CDRs under one channel id (forked dials, retries, Local channels, transfers), and
keying by it counted real calls as duplicates. A ``record_key`` in ``mapping`` names a
column that is unique in the partner's layout.
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
from zoneinfo import ZoneInfo

from billing_oss.adapters.formats import options as parsers
from billing_oss.adapters.formats.api import DecodedBatch, FileInfo, RecordProblem
from billing_oss.adapters.formats.options import KINDS, Option, parse_options
from billing_oss.adapters.formats.registry import Format
from billing_oss.core.errors import DecodeError, Reason
from billing_oss.core.records import Kind, UsageRecord

ASTERISK_COLUMNS = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
    "uniqueid", "userfield",
)
ASTERISK12_COLUMNS = (*ASTERISK_COLUMNS, "peeraccount", "linkedid", "sequence")
ASTERISK_MAPPING: dict[str, Any] = {
    "calling": "src", "called": "dst", "duration_s": "billsec",
    "event_time": ["answer", "start"],
}
_ATTR_COLUMNS = ("accountcode", "dcontext", "channel", "dstchannel", "disposition", "lastapp",
                 "uniqueid", "linkedid", "sequence")


class CsvFile:
    def __init__(
        self, stream: IO[str], *, source: str, options: Mapping[str, Any] | None = None,
        batch_size: int = 4096,
    ) -> None:
        opts = parse_options("csv", options)
        self._fh = stream
        self.source = source
        self.batch_size = batch_size
        self.columns: tuple[str, ...] | None = opts["columns"]
        self.mapping = {**ASTERISK_MAPPING, **(opts["mapping"] or {})}
        self.tz = opts["timezone"]
        self.time_format: str = opts["time_format"]
        self.delimiter: str = opts["delimiter"]
        self.kind = cast(Kind, opts["kind"])
        shown = self.columns or ("asterisk: by column count (18 or 21)",)
        self.info = FileInfo(format="csv", header={"columns": list(shown)})

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
                if not row or (index == 0 and self._is_header(row)):
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

    def _is_header(self, row: list[str]) -> bool:
        names = tuple(c.strip().lower() for c in row)
        layouts = [self.columns] if self.columns else [ASTERISK_COLUMNS, ASTERISK12_COLUMNS]
        return any(names == tuple(c.lower() for c in layout[: len(names)]) for layout in layouts)

    def _layout(self, row: list[str]) -> tuple[str, ...]:
        if self.columns is not None:
            if len(row) > len(self.columns) or len(row) < len(self.columns) - 2:
                raise ValueError(f"{len(row)} columns, expected {len(self.columns)}")
            return self.columns
        if len(row) == len(ASTERISK12_COLUMNS):
            return ASTERISK12_COLUMNS
        if len(ASTERISK_COLUMNS) - 2 <= len(row) <= len(ASTERISK_COLUMNS):
            return ASTERISK_COLUMNS
        raise ValueError(f"{len(row)} columns: neither the Asterisk 18-column nor the "
                         "21-column layout (give the columns option for another one)")

    def _record(self, row: list[str], line: int) -> UsageRecord:
        values = dict(zip(self._layout(row), row, strict=False))

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
            local = _parse_time(when, self.time_format)
        except ValueError:
            raise ValueError(f"bad time {when!r}") from None
        utc = local.replace(tzinfo=self.tz).astimezone(dt.UTC)
        duration_text = col("duration_s")
        if not (duration_text.isascii() and duration_text.isdigit()):
            raise ValueError(f"bad billsec {duration_text!r}")
        key = col("record_key") or _asterisk_key(values, row)
        attrs: dict[str, Any] = {c: values[c] for c in _ATTR_COLUMNS if values.get(c)}
        attrs["line"] = line
        return UsageRecord(
            record_key=key, source=self.source, kind=self.kind,
            event_time=utc.strftime("%Y-%m-%dT%H:%M:%SZ"), duration_s=int(duration_text),
            calling=col("calling") or None, called=col("called") or None, attrs=attrs,
        )


ASTERISK_TIME = "%Y-%m-%d %H:%M:%S"


def _parse_time(text: str, time_format: str) -> dt.datetime:
    """strptime, with a fast path for Asterisk's own format (strptime is most of the cost of
    a line); the shape is checked first, so both accept exactly the same texts."""
    if (time_format == ASTERISK_TIME and len(text) == 19 and text.isascii()
            and text[4] == text[7] == "-" and text[10] == " " and text[13] == text[16] == ":"
            and text[:4].isdigit() and text[5:7].isdigit() and text[8:10].isdigit()
            and text[11:13].isdigit() and text[14:16].isdigit() and text[17:].isdigit()):
        return dt.datetime.fromisoformat(text)
    return dt.datetime.strptime(text, time_format)


def _asterisk_key(values: Mapping[str, str], row: list[str]) -> str:
    linkedid = values.get("linkedid", "").strip()
    sequence = values.get("sequence", "").strip()
    if linkedid and sequence:
        return f"{linkedid}:{sequence}"
    return "sha1:" + hashlib.sha1("\x1f".join(row).encode()).hexdigest()[:20]


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


def sniff(head: bytes) -> bool:
    """An Asterisk ``Master.csv`` line: its first line has 16 to 21 comma-separated columns.
    Other layouts are not recognised by their bytes: they are named (``.csv``, --format)."""
    first, newline, _ = head.partition(b"\n")
    if not newline or first.lstrip()[:1] in (b"{", b"["):
        return False
    try:
        row = next(csv.reader([first.decode("utf-8").rstrip("\r")]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return False
    return 16 <= len(row) <= len(ASTERISK12_COLUMNS)


FORMAT = Format(
    name="csv", title="CSV CDRs: Asterisk Master.csv, or any layout through columns/mapping",
    suffixes=(".csv",), sniff=sniff, open=open_csv, read=csv_from_bytes,
    options=(
        Option(name="columns", type="list of names", default=None, parse=parsers.names,
               help="the file's columns (default: by column count, Asterisk 18 or 21)"),
        Option(name="mapping", type="JSON object", default=None, parse=parsers.mapping,
               help='normalised field -> column, e.g. {"calling":"from","event_time":["t"]}'),
        Option(name="timezone", type="IANA zone", default=ZoneInfo("UTC"), parse=parsers.zone,
               help="the zone the timestamps are written in"),
        Option(name="time_format", type="text", default="%Y-%m-%d %H:%M:%S", parse=parsers.text,
               help="strptime format of the timestamps"),
        Option(name="delimiter", type="one character", default=",", parse=parsers.char,
               help="field separator ('tab' for a tab)"),
        Option(name="kind", type=f"one of {', '.join(KINDS)}", default="voice",
               parse=parsers.choice(*KINDS), help="the kind of usage every line records"),
    ),
    item_count="lines", located_by="line")
