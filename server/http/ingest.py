"""``POST /v1/usage``: a batch of usage records (or meter readings) over HTTP, idempotently.

The body is JSON or MessagePack (``Content-Type``), shaped as ``adapters.formats.payload``
describes, or CloudEvents 1.0 in any content mode (``adapters.formats.cloudevents``). The
delivery's position is the ``Idempotency-Key`` header when sent, else the body's digest,
so the same request twice commits once and gets the same answer (the second with
``Idempotent-Replayed: true``); the same ``Idempotency-Key`` with another body is refused
(422 ``IDEMPOTENCY_KEY_REUSED``). Records without a ``record_key`` are keyed
``<Idempotency-Key>#<index>``; without either they are rejected. The key authenticating the
request names the source: its ``source`` if it has one, else ``http:<key id>``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec
from aiohttp import web

from billing_oss.adapters import intake
from billing_oss.adapters.formats import cloudevents, payload
from billing_oss.core.contract import Counts, Delivery, Outcome, Reject
from billing_oss.core.errors import (
    BillingError,
    ErrorCode,
    InvalidValue,
    Reason,
    UnsupportedMediaType,
)
from billing_oss.server.http.keys import (
    CONFIG,
    INGEST_ADMISSION,
    PIPELINE,
    POOL,
    PRINCIPAL,
    lift_deadline,
)
from billing_oss.server.http.routing import Api
from billing_oss.server.store import usage_repo

MAX_IDEMPOTENCY_KEY = 200
# Suspense reasons that mean the sender's input was wrong (rejected), as opposed to usage
# accepted but not chargeable yet (unknown account, no tariff...), which the operator fixes.
REJECTED_REASONS = frozenset({Reason.MALFORMED, Reason.BAD_FIELD})


class RecordIssue(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: str  # duplicate | rejected | suspense
    record_key: str | None = None
    reason: str | None = None
    detail: str | None = None


class IngestResult(msgspec.Struct, kw_only=True):
    accepted: int
    duplicate: int
    rejected: int
    counts: Counts
    issues: list[RecordIssue]  # every record not accepted cleanly, with its reason


class UsageBatch(msgspec.Struct, kw_only=True):
    """The body as documented: a batch of records (JSON or MessagePack). The endpoint also
    takes one record, a bare array of records and meter readings (``adapters.formats.payload``)."""

    records: list[payload.RecordIn]


class PayloadTooLarge(BillingError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class BadHeader(InvalidValue):
    pass


class IdempotencyKeyReused(BillingError):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED


async def post_usage(request: web.Request) -> web.Response:
    """Ingest a batch of usage records; answers per-record outcomes once committed. Admitted
    first (``server.http.admission``): at capacity, 503 at once and nothing is stored."""
    events = cloudevents.is_cloudevent(request.content_type, request.headers)
    encoding: payload.Encoding = "json" if events else _encoding(request)
    async with request.app[INGEST_ADMISSION].admit():
        return await _ingest(request, encoding, events)


async def _ingest(request: web.Request, encoding: payload.Encoding,
                  events: bool = False) -> web.Response:
    limit = request.app[CONFIG].http.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body has {request.content_length} bytes; the limit is {limit}")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes") from None
    # From here the batch is decoded and committed to the end, however long it takes: a
    # timeout now could answer "failed" about usage that was stored.
    lift_deadline(request)
    key = request[PRINCIPAL]
    source = key.source or f"http:{key.key_id}"
    idempotency_key = _idempotency_key(request)
    position = (f"idem:{idempotency_key}" if idempotency_key
                else "body:" + intake.content_position(encoding.encode(), body))
    bind = (functools.partial(_bind_body, request.app[POOL], source, idempotency_key, body)
            if idempotency_key else None)
    if events:
        delivery = await _cloudevents_delivery(request, body, source, key.source,
                                               idempotency_key, bind)
    else:
        delivery = await intake.to_delivery(
            request.app[POOL], body, source=source, position=position, where="body",
            encoding=encoding, key_prefix=idempotency_key, strict=True, on_decoded=bind)
    outcome = (await request.app[PIPELINE].commit([delivery]))[0]
    headers = {"Idempotent-Replayed": "true"} if outcome.replay else {}
    return web.Response(body=msgspec.json.encode(summarise(outcome)),
                        content_type="application/json", headers=headers)


async def _cloudevents_delivery(
        request: web.Request, body: bytes, source: str, bound_source: str | None,
        idempotency_key: str | None, bind: Callable[[], Awaitable[None]] | None) -> Delivery:
    """CloudEvents (structured, batch or binary): the events' own sources and ids key the
    records; a key bound to a source takes only events of that source. The position covers
    the ``ce-*`` headers too (binary mode carries the id there)."""
    decoded = cloudevents.decode(request.content_type, request.headers, body)
    if bound_source is not None:
        kept = []
        for record in decoded.records:
            if record.source == bound_source:
                kept.append(record)
                continue
            decoded.rejects.append(Reject(
                reason=Reason.BAD_FIELD, raw=msgspec.json.encode(record),
                detail=f"event {record.record_key!r}: source {record.source!r} is not this"
                       f" sender's source {bound_source!r}", where="source"))
        decoded.records = kept
    headers = "\n".join(f"{k.lower()}:{v}" for k, v in sorted(request.headers.items())
                        if k.lower().startswith(cloudevents.HEADER_PREFIX))
    position = (f"idem:{idempotency_key}" if idempotency_key else "body:" + intake.content_position(
        b"cloudevents", request.content_type.encode(), headers.encode(), body))
    return await intake.decoded_delivery(request.app[POOL], decoded, source=source,
                                         position=position, own_sources=True, on_decoded=bind)


async def _bind_body(pool: asyncpg.Pool, source: str, key: str, body: bytes) -> None:
    """Bind the key to its first body (once that body parsed: a malformed request may be
    corrected and sent again under its key); another body under the key is refused before
    any of it is stored, rather than answered with the first body's outcome."""
    digest = hashlib.sha256(body).hexdigest()
    bound = await usage_repo.bind_idempotency_key(pool, source, key, digest)
    if bound != digest:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {key!r} was already used with another body; send a new key "
            "for a new batch")


def summarise(outcome: Outcome) -> IngestResult:
    issues: list[RecordIssue] = []
    rejected = 0
    for result in outcome.results:
        if result.status == "duplicate":
            issues.append(RecordIssue(status="duplicate", record_key=result.record_key))
        elif result.status == "suspense":
            status = "rejected" if result.reason in REJECTED_REASONS else "suspense"
            rejected += status == "rejected"
            issues.append(RecordIssue(status=status, record_key=result.record_key,
                                      reason=result.reason, detail=result.detail))
    duplicate = outcome.counts.duplicates
    return IngestResult(accepted=outcome.counts.in_ - duplicate - rejected, duplicate=duplicate,
                        rejected=rejected, counts=outcome.counts, issues=issues)


def _encoding(request: web.Request) -> payload.Encoding:
    content_type = request.content_type  # aiohttp defaults a missing type to octet-stream
    encoding = payload.CONTENT_TYPES.get(content_type)
    if encoding is None:
        known = ", ".join(sorted(payload.CONTENT_TYPES))
        raise UnsupportedMediaType(f"content type {content_type!r} is not one of: {known}")
    return encoding


def _idempotency_key(request: web.Request) -> str | None:
    value = request.headers.get("Idempotency-Key", "").strip()
    if not value:
        return None
    if len(value) > MAX_IDEMPOTENCY_KEY or not value.isprintable():
        raise BadHeader(f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} printable characters")
    return value


def register(api: Api) -> None:
    api.add("POST", "/v1/usage", post_usage, summary="Ingest a batch of usage records",
            tag="ingest", request=UsageBatch, response=IngestResult, roles=("ingest",),
            errors=(400, 413, 415, 422, 503))

