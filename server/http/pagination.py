"""Keyset pagination behind opaque cursors.

A list is ordered by a unique key (e.g. ``(event_time, usage_id)``); the cursor is the key of
the last item served, base64url-encoded JSON. Clients treat it as opaque; a cursor that does
not decode into the list's key type is a 422 naming ``cursor``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import msgspec

from billing_oss.core.errors import InvalidRequest

T = TypeVar("T")
K = TypeVar("K")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str, msgspec.Meta(max_length=512, pattern="^[A-Za-z0-9_-]*$")]


class ListQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of a list with no filter of its own."""

    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(list(key))).rstrip(b"=").decode()


def decode_cursor(cursor: str | None, key_type: type[K]) -> K | None:
    """The key a cursor carries, as ``key_type`` (a tuple type), or None for the first page."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=key_type)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise InvalidRequest(
            "invalid query: cursor: not a cursor this list handed out",
            errors=[{"location": "query", "path": "cursor", "message": "unknown cursor"}],
        ) from None


def page(rows: Sequence[T], limit: int, key: Callable[[T], Sequence[Any]]) -> tuple[
        list[T], str | None]:
    """Split ``limit + 1`` fetched rows into the page and the cursor of the next one."""
    if len(rows) <= limit:
        return list(rows), None
    items = list(rows[:limit])
    return items, encode_cursor(key(items[-1]))
