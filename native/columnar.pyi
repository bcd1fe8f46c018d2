from array import array
from collections.abc import Mapping
from typing import Any

from billing_oss.native._records import RecordBatch

OPTIONAL: tuple[tuple[str, int], ...]


class Names:
    def __init__(self, names: list[str] | list[bytes]) -> None: ...
    def __len__(self) -> int: ...

def classify(batch: RecordBatch, role: bytearray, event_us: array[int], kind: bytearray,
             usage: array[int], called: bytearray, width: int) -> None: ...
def resolve(batch: RecordBatch, role: bytearray, event_us: array[int],
            by_identifier: Mapping[str, Any], tariff_index: dict[str, int],
            tariff: array[int], account: array[int], names: list[str]) -> None: ...
def render_keys(batch: RecordBatch, role: bytearray, offsets: array[int]) -> bytes: ...
def duplicates(keys: bytes, offsets: array[int], role: bytearray, extra: list[bytes]) -> bool: ...
def optional(batch: RecordBatch, role: bytearray) -> int: ...
def months(batch: RecordBatch, role: bytearray) -> set[tuple[int, int]]: ...
def encode(
    batch: RecordBatch, role: bytearray, ids: array[int], object_keys: list[bytes],
    source: bytes, keys: bytes, offsets: array[int], account: array[int], accounts: Names,
    tariff: array[int], version: array[int], zone: array[int], band: array[int],
    amount: array[int], version_ids: array[int], zone_base: array[int], band_base: array[int],
    currencies: Names, zones: Names, bands: Names, optional: int, source_file_id: int | None,
) -> tuple[bytes, bytes, bytes, dict[int, int]]: ...
def rollup(
    role: bytearray, account: array[int], accounts: Names, event_us: array[int],
    kind: bytearray, usage: array[int], tariff: array[int], amount: array[int],
    version: array[int], zone: array[int], version_ids: array[int], zone_base: array[int],
    zone_key: array[int], zones: Names, currency_key: array[int], currencies: Names,
) -> tuple[bytes, int, bytes, int, bytes, int] | None: ...
