from typing import Any

KINDS: str

def encode(rows: list[tuple[Any, ...]], kinds: str) -> bytes: ...
