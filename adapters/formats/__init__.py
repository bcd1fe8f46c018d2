"""Usage file formats: 3GPP TS 32.297/32.298 CDR files, TAP 3.11/3.12, CSV CDRs, JSON lines.

Each format is one module defining ``FORMAT`` (``registry.Format``: name, name endings,
sniffing, opener, header, partial key, completeness, typed options), listed once in
``registry.BUILTIN``. Entry points for the pipeline and the CLI:

- ``open_file(format, path, *, source, options=None, batch_size=4096) -> DecodedFile``:
  ``.info`` (``FileInfo``: sequence number, TAP3 sender/recipient, declared record count,
  raw header) and ``.batches()`` yielding ``DecodedBatch``es of ``UsageRecord``s plus per-record
  ``RecordProblem``s (reason, offset, raw bytes) in file order. A file-level failure raises
  ``DecodeError`` (``offset``, ``detail["record_index"]``) only after every batch before it.
  Use as a context manager (closes the file).
- ``decode_bytes(format, data, *, source, options=None) -> Decoded``: one payload in
  memory; records, problems and the file-level error (if any) together.
- ``registry.guess(path)``: a file's format by its name ending and first bytes.
- ``items.FormatDecoder(format)``: a format as the pipeline's decoder port.
- Writers for tests and benchmarks: ``tests.generators`` (32.297/32.298, TAP3).

Each format module documents its options and its ``record_key`` scheme.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from billing_oss.adapters.formats.api import (
    Decoded,
    DecodedBatch,
    DecodedFile,
    FileInfo,
    RecordProblem,
    collect,
)
from billing_oss.adapters.formats.registry import open_file, read_bytes

__all__ = [
    "Decoded",
    "DecodedBatch",
    "DecodedFile",
    "FileInfo",
    "RecordProblem",
    "decode_bytes",
    "open_file",
]


def decode_bytes(
    format: str, data: bytes, *, source: str, options: Mapping[str, Any] | None = None
) -> Decoded:
    with read_bytes(format, data, source=source, options=options) as decoded:
        return collect(decoded)
