from typing import Any

from billing_oss.native._records import RecordBatch

RECORD_TYPES: dict[int, str]
FIELD_TAGS: dict[str, dict[str, int]]
VOLUME_TAGS: dict[str, tuple[int, int]]
STATUS_FULL: int
STATUS_NEED_MORE: int
STATUS_DONE: int
STATUS_ERROR: int
BER_ERRORS: dict[int, str]
MAX_RECORD_BYTES: int

def decode_cdrs(
    buf: bytes | bytearray | memoryview, pos: int, out: RecordBatch, base: int,
    framed: bool, final: bool,
) -> tuple[int, int, str | None]: ...
def parse_file_header(buf: bytes | bytearray | memoryview) -> dict[str, Any]: ...
