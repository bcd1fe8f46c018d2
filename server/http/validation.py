"""Request decoding into msgspec types: body, query string and path parameters.

A failure names the field: ``{"location": "body", "path": "$.identifiers[0].kind",
"message": ...}`` in the ``errors`` of a 422 problem. Field constraints (lengths, patterns,
ranges) live on the types as ``Meta`` so the OpenAPI document states the same limits.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from billing_oss.core.errors import (
    DecodeError,
    InvalidRequest,
    NotFound,
    UnsupportedMediaType,
)

T = TypeVar("T")

async def decode_body(request: web.Request, type_: type[T]) -> T:
    """The JSON body as ``type_``; 415 for another media type, 400 for bad JSON, 422 invalid."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"send the body as application/json (got {request.content_type or 'nothing'})"
        )
    raw = await request.read()
    try:
        value = msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise _invalid("body", exc) from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"request body is not valid JSON: {exc}") from None
    return _in_utc(value, "$", "body")  # type: ignore[no-any-return]


def decode_query(request: web.Request, type_: type[T]) -> T:
    """The query string as ``type_`` (strings converted to the declared field types).

    A parameter given twice is refused rather than one value silently winning, and so is the
    word ``null``, which lax conversion would turn into "no filter" (listing everything)."""
    for name in request.query:
        if len(request.query.getall(name)) > 1:
            raise _query_error(name, "given more than once")
        if request.query[name] == "null":
            raise _query_error(name, "null is not a value: leave the parameter out")
    try:
        value = msgspec.convert(dict(request.query), type_, strict=False)
    except msgspec.ValidationError as exc:
        raise _invalid("query", exc) from None
    if isinstance(value, msgspec.Struct):
        # Lax conversion reads a bare number as Unix time; the contract is RFC 3339 only.
        for name, key in zip(value.__struct_fields__, value.__struct_encode_fields__,
                             strict=True):
            if isinstance(getattr(value, name), dt.datetime) and ":" not in request.query[key]:
                raise _query_error(key, "expected an RFC 3339 timestamp")
    return _in_utc(value, "", "query")  # type: ignore[no-any-return]


def _query_error(name: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"invalid query: {name}: {message}",
                          errors=[{"location": "query", "path": name, "message": message}])


def decode_path(request: web.Request, type_: type[T]) -> T:
    """Path parameters as ``type_``; a value that cannot name anything is a 404."""
    try:
        return msgspec.convert(dict(request.match_info), type_, strict=False)
    except msgspec.ValidationError:
        raise NotFound(f"nothing is found at {request.path}") from None


def _in_utc(value: Any, path: str, location: str) -> Any:
    """``value`` with every timestamp in its structs converted to UTC.

    Stored and compared timestamps are UTC; an offset PostgreSQL cannot parse (beyond ±15:59)
    or an instant outside years 1–9999 once in UTC is a 422 naming the field, not a 500.
    """
    if isinstance(value, msgspec.Struct):
        changes = {}
        for name, field in zip(value.__struct_fields__, value.__struct_encode_fields__,
                               strict=True):
            item = getattr(value, name)
            where = f"{path}.{field}" if path else field
            fixed = _in_utc(item, where, location)
            if fixed is not item:
                changes[name] = fixed
        return msgspec.structs.replace(value, **changes) if changes else value
    if isinstance(value, dt.datetime):
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:
            raise InvalidRequest(
                f"invalid {location}: {path}: out of range once in UTC",
                errors=[{"location": location, "path": path,
                         "message": "timestamp out of range once converted to UTC"}],
            ) from None
    if isinstance(value, list) and value and isinstance(value[0], msgspec.Struct):
        fixed_items = [_in_utc(v, f"{path}[{i}]", location) for i, v in enumerate(value)]
        return value if all(a is b for a, b in zip(fixed_items, value, strict=True)) \
            else fixed_items
    return value


def _invalid(location: str, exc: msgspec.ValidationError) -> InvalidRequest:
    message, sep, where = str(exc).rpartition(" - at `")
    path = where.rstrip("`") if sep else "$"
    text = message if sep else str(exc)
    if location == "query" and path.startswith("$."):
        path = path[2:]
    return InvalidRequest(
        f"invalid {location}: {path}: {text}",
        errors=[{"location": location, "path": path, "message": text}],
    )

