from typing import Any

from billing_oss.native._records import RecordBatch

TAGS: dict[str, int]
EVENT_NAMES: dict[int, str]

class Tap3Walker:
    kind: str
    batch_control: dict[str, Any]
    accounting: dict[str, Any]
    network: dict[str, Any]
    audit: dict[str, Any]
    notification: dict[str, Any]
    events_offset: int
    top_end: int
    audit_offset: int
    def __init__(self, buf: bytes | bytearray | memoryview | Any) -> None: ...
    def next_batch(self, out: RecordBatch, first_index: int = 0) -> bool: ...
