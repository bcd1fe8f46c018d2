from array import array

STATUS_OK: int
STATUS_UNKNOWN_ACCOUNT: int
STATUS_NO_TARIFF: int
STATUS_NO_ZONE: int
STATUS_NO_RATE: int
STATUS_OVERFLOW: int
STATUS_BAD_FIELD: int
CALLED_WIDTH: int
MAX_PREFIX_DIGITS: int
RULE_COLUMNS: dict[str, str]

_Table = array[int] | bytearray | bytes | memoryview

class Lpm:
    def __init__(self, prefixes: list[str], zone_ids: _Table) -> None: ...
    def lookup(self, called: bytes) -> int: ...
    def lookup_batch(self, called: _Table, out: _Table) -> None: ...
    @property
    def segments(self) -> int: ...
    @property
    def nbytes(self) -> int: ...

class Kernel:
    def __init__(self, tables: dict[str, array[int] | list[int]], lpms: list[Lpm]) -> None: ...
    def rate(
        self,
        tariff: _Table,
        event_us: _Table,
        kind: _Table,
        usage: _Table,
        called: _Table,
        status: _Table,
        amount: _Table,
        version: _Table,
        zone: _Table,
        band: _Table,
    ) -> None: ...
