"""`/soap/v1`: the SOAP 1.1 façade for CRMs that speak no REST (its package: the codec,
envelopes and operations).

``GET /soap/v1?wsdl`` serves the WSDL (public, like the OpenAPI document); ``POST /soap/v1``
runs one operation. The key is the REST API's: ``Authorization: Bearer <key>``, or the
password of a WS-Security UsernameToken. Every failure, from bytes that are not XML to a
business rule, is a SOAP 1.1 Fault at HTTP 500 (SOAP 1.1 §6.2) whose detail carries the
error code of core/errors.py; no request gets an HTML or problem+json page. These routes
stay out of the OpenAPI document: their bodies are XML, described by the WSDL.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from billing_oss.core.errors import BillingError, ErrorCode
from billing_oss.server.http.auth import GRANTS, KEY_CACHE, actor, bearer
from billing_oss.server.http.keys import DEADLINE, POOL, PRINCIPAL
from billing_oss.server.http.routing import Api
from billing_oss.server.http.soap import codec, envelope, wsdl
from billing_oss.server.http.soap.envelope import Fault
from billing_oss.server.http.soap.operations import OPERATIONS, Call

log = logging.getLogger(__name__)

PATH = "/soap/v1"
# A CRM's request is a few kilobytes; anything past this is refused before it is parsed.
MAX_REQUEST_BYTES = 256 * 1024
DEADLINE_MARGIN_S = 0.05
XML = f"{envelope.CONTENT_TYPE}; charset=utf-8"


async def soap_wsdl(request: web.Request) -> web.Response:
    address = str(request.url.with_query(None))
    body = wsdl.document(address, ((op.name, op.doc) for op in OPERATIONS.values()))
    return web.Response(body=body, headers={"Content-Type": XML})


async def soap_call(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout_at(_just_before_deadline(request)):
            return web.Response(body=await _call(request), headers={"Content-Type": XML})
    except TimeoutError:
        return _fault(Fault(ErrorCode.TIMEOUT, "the operation did not complete in time; "
                            "a write may or may not have been made: retry it (PostPayment "
                            "by the same reference records it once)"))
    except Fault as f:
        return _fault(f)
    except BillingError as exc:
        element = _element(exc)
        return _fault(Fault(exc.code, exc.message, element=element))
    except Exception:
        log.exception("SOAP operation failed", extra={"fields": {"path": request.path}})
        return _fault(Fault(ErrorCode.INTERNAL, "internal error"))


async def _call(request: web.Request) -> bytes:
    raw = await _body(request)
    parsed = await asyncio.to_thread(envelope.parse, raw)
    token = bearer(request) or parsed.password
    key = await request.app[KEY_CACHE].lookup(request.app[POOL], token) if token else None
    if key is None:
        raise Fault(ErrorCode.UNAUTHORIZED, "a valid API key is required: Authorization: "
                    "Bearer <key>, or a WS-Security UsernameToken whose password is the key")
    op = codec.operation_of(parsed.body)
    if not GRANTS[key.role] & frozenset(op.roles):
        raise Fault(ErrorCode.FORBIDDEN, f"role {key.role} may not call {op.name} (needs "
                    f"{' or '.join(op.roles)})", element=op.name)
    request[PRINCIPAL] = key
    data = await asyncio.to_thread(codec.decode, op, parsed.body)
    result = await op.run(Call(request.app, actor(request)), data)
    return await asyncio.to_thread(lambda: envelope.response(codec.encode(op, result)))


def _just_before_deadline(request: web.Request) -> float | None:
    """A moment before the server's request timeout, so an operation that overruns answers
    a Fault rather than the timeout's problem+json."""
    deadline = request.get(DEADLINE)
    when = deadline.when() if deadline is not None else None
    return None if when is None else when - DEADLINE_MARGIN_S


async def _body(request: web.Request) -> bytes:
    """The request body, at most MAX_REQUEST_BYTES (read in chunks, never more)."""
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        raise _too_large(request.content_length)
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise _too_large(size)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int) -> Fault:
    return Fault(ErrorCode.PAYLOAD_TOO_LARGE, f"the request has {size} bytes or more; at most "
                 f"{MAX_REQUEST_BYTES} are read", element="Envelope")


def _element(exc: BillingError) -> str | None:
    """The element a service's error names: its first ``errors`` path without ``$.``."""
    errors = exc.detail.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        path = str(errors[0].get("path", ""))
        return path.removeprefix("$.").replace(".", "/") or None
    return None


def _fault(f: Fault) -> web.Response:
    return web.Response(status=500, body=envelope.fault(f), headers={"Content-Type": XML})


def register(api: Api) -> None:
    tag = "soap"
    api.add("GET", PATH, soap_wsdl, summary="The SOAP façade's WSDL", tag=tag,
            openapi=False)
    api.add("POST", PATH, soap_call, summary="One SOAP 1.1 operation", tag=tag,
            openapi=False)
