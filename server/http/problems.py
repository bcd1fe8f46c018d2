"""RFC 9457 problem details: the one place where errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from billing_oss.core.errors import BillingError, ErrorCode
from billing_oss.server.http.keys import STREAMING

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document; ``code`` repeats the stable error code for clients."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_for(
    code: ErrorCode, title: str, detail: str | None = None,
    *, instance: str | None = None, headers: dict[str, str] | None = None,
) -> web.Response:
    """The problem document for one of the table's codes, at the table's HTTP status."""
    return problem_response(code.http_status, code, title, detail, instance=instance,
                            headers=headers)


def problem_response(
    status: int, code: str, title: str, detail: str | None = None,
    *, instance: str | None = None, errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = Problem(
        type=f"/problems/{code.lower().replace('_', '-')}", title=title, status=status,
        code=code, detail=detail, instance=instance, errors=errors,
    )
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type=PROBLEM_TYPE,
        headers=headers,
    )


def from_error(exc: BillingError, instance: str | None = None) -> web.Response:
    errors = exc.detail.get("errors") if isinstance(exc.detail.get("errors"), list) else None
    retry_after = exc.detail.get("retry_after")
    return problem_response(
        exc.http_status, exc.code, exc.code.replace("_", " ").capitalize(), exc.message,
        instance=instance, errors=errors,  # type: ignore[arg-type]
        headers={"Retry-After": retry_after} if isinstance(retry_after, str) else None,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def nul_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a percent-encoded NUL in the path or query string before any route sees it:
    PostgreSQL text cannot hold one, and no identifier or filter contains one."""
    if "%00" in request.raw_path:
        return problem_for(ErrorCode.MALFORMED, "Malformed",
                           "the URL contains a NUL character (%00)", instance=request.path)
    return await handler(request)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        if request.get(STREAMING):
            # A streamed body is under way (server.http.streams): a problem response now
            # would be spliced into it. Raised on, aiohttp drops the connection.
            log.exception("streamed response broken off", extra={"fields": {
                "path": request.path}})
            raise
        return _problem(request, exc)


def _problem(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The problem response ``exc`` is (called while it is being handled)."""
    if isinstance(exc, BillingError):
        return from_error(exc, instance=request.path)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = exc.reason.upper().replace(" ", "_").replace("-", "_")
        return problem_response(
            exc.status, code, exc.reason, exc.text if exc.text != f"{exc.status}: {exc.reason}"
            else None, instance=request.path, headers=_kept_headers(exc),
        )
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError):
        # Text PostgreSQL cannot store (a NUL byte) that slipped past a route's validation.
        return problem_for(ErrorCode.MALFORMED, "Malformed",
                           "text must not contain NUL characters", instance=request.path)
    log.exception("unhandled error", extra={"fields": {"path": request.path}})
    return problem_for(ErrorCode.INTERNAL, "Internal error", instance=request.path)


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    kept = ("Allow", "WWW-Authenticate", "Retry-After")
    return {k: v for k, v in exc.headers.items() if k in kept}
