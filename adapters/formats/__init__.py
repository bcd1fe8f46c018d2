"""Usage file formats: 3GPP TS 32.297/32.298 CDR files, TAP 3.11/3.12, CSV CDRs.

Entry points for the pipeline and the CLI:

- ``open_file(format, path, *, source, options=None, batch_size=4096) -> DecodedFile``:
  ``.info`` (``FileInfo``: sequence number, TAP3 sender/recipient, declared record count,
  raw header) and ``.batches()`` yielding ``DecodedBatch``es of ``UsageRecord``s plus per-record
  ``RecordProblem``s (reason, offset, raw bytes) in file order. A file-level failure raises
  ``DecodeError`` (``offset``, ``detail["record_index"]``) only after every batch before it.
  Use as a context manager (closes the file).
- ``decode_bytes(format, data, *, source, options=None) -> Decoded``: one payload in
  memory; records, problems and the file-level error (if any) together.
- Writers for tests and benchmarks: ``adapters.formats.generate`` (32.297/32.298) and
  ``adapters.formats.generate_tap3`` (TAP3).

Formats: ``"3gpp"`` (see ``threegpp``), ``"tap3"`` (see ``tap3``), ``"csv"`` (see
``csvcdr``); each module documents its options and its ``record_key`` scheme.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from billing_oss.adapters.formats.api import (
    Decoded,
    DecodedBatch,
    DecodedFile,
    FileInfo,
    RecordProblem,
    collect,
)
from billing_oss.core.errors import DecodeError

FORMATS = ("3gpp", "tap3", "csv")

__all__ = [
    "FORMATS",
    "Decoded",
    "DecodedBatch",
    "DecodedFile",
    "FileInfo",
    "RecordProblem",
    "decode_bytes",
    "open_file",
]


def open_file(
    format: str, path: Path | str, *, source: str, options: Mapping[str, Any] | None = None,
    batch_size: int = 4096,
) -> DecodedFile:
    path = Path(path)
    if format == "3gpp":
        from billing_oss.adapters.formats.threegpp import open_3gpp

        return open_3gpp(path, source=source, options=options, batch_size=batch_size)
    if format == "tap3":
        from billing_oss.adapters.formats.tap3 import open_tap3

        return open_tap3(path, source=source, options=options, batch_size=batch_size)
    if format == "csv":
        from billing_oss.adapters.formats.csvcdr import open_csv

        return open_csv(path, source=source, options=options, batch_size=batch_size)
    raise DecodeError(f"unknown format {format!r} (one of {', '.join(FORMATS)})")


def decode_bytes(
    format: str, data: bytes, *, source: str, options: Mapping[str, Any] | None = None
) -> Decoded:
    decoded: DecodedFile
    if format == "3gpp":
        from billing_oss.adapters.formats.threegpp import Cdr3gppFile

        decoded = Cdr3gppFile(io.BytesIO(data), source=source, size=len(data), options=options)
    elif format == "tap3":
        from billing_oss.adapters.formats.tap3 import Tap3File

        decoded = Tap3File(data, source=source, options=options)
    elif format == "csv":
        from billing_oss.adapters.formats.csvcdr import csv_from_bytes

        decoded = csv_from_bytes(data, source=source, options=options)
    else:
        raise DecodeError(f"unknown format {format!r} (one of {', '.join(FORMATS)})")
    with decoded:
        return collect(decoded)
