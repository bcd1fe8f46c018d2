"""Request decoding into msgspec types: body, query string and path parameters.

A failure names the field: ``{"location": "body", "path": "$.identifiers[0].kind",
"message": ...}`` in the ``errors`` of a 422 problem. Field constraints (lengths, patterns,
ranges) live on the types as ``Meta`` so the OpenAPI document states the same limits.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from aiohttp import web

from server.errors import BillingError, DecodeError, InvalidRequest, NotFound

T = TypeVar("T")

class UnsupportedMediaType(BillingError):
    code = "UNSUPPORTED_MEDIA_TYPE"


async def decode_body(request: web.Request, type_: type[T]) -> T:
    """The JSON body as ``type_``; 415 for another media type, 400 for bad JSON, 422 invalid."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"send the body as application/json (got {request.content_type or 'nothing'})"
        )
    raw = await request.read()
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise _invalid("body", exc) from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"request body is not valid JSON: {exc}") from None


def decode_query(request: web.Request, type_: type[T]) -> T:
    """The query string as ``type_`` (strings converted to the declared field types)."""
    try:
        return msgspec.convert(dict(request.query), type_, strict=False)
    except msgspec.ValidationError as exc:
        raise _invalid("query", exc) from None


def decode_path(request: web.Request, type_: type[T]) -> T:
    """Path parameters as ``type_``; a value that cannot name anything is a 404."""
    try:
        return msgspec.convert(dict(request.match_info), type_, strict=False)
    except msgspec.ValidationError:
        raise NotFound(f"nothing is found at {request.path}") from None


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

