from collections.abc import Iterable
from typing import Any

ROW_FIELDS: tuple[str, ...]
ERRORS: tuple[str, ...]
BER_ERRORS: dict[int, str]
ERR_OK: int
ERR_MALFORMED: int
ERR_NO_EVENT_TIME: int
ERR_BAD_TIMESTAMP: int
ERR_TOO_LONG: int
ERR_BAD_INTEGER: int
ERR_MISSING_FIELD: int
ERR_UNSUPPORTED: int
ERR_UNKNOWN_UTC_CODE: int
ERR_NOT_BER: int
ERR_OVERFLOW: int

class RecordBatch:
    def __init__(self, capacity: int = 4096) -> None: ...
    def clear(self) -> None: ...
    @property
    def capacity(self) -> int: ...
    def __len__(self) -> int: ...
    def rows(self, indexes: Iterable[int] | None = None) -> list[tuple[Any, ...]]: ...
