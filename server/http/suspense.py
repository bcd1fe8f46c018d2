"""`/v1/suspense`: records that could not be charged — list, inspect, retry, discard."""

from __future__ import annotations

from typing import Annotated, Literal

import asyncpg
import msgspec
from aiohttp import web

from billing_oss.core.errors import BillingError, Conflict, ErrorCode, InvalidRequest
from billing_oss.core.money import parse_micros
from billing_oss.core.records import UsageRecord, parse_event_time
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import PIPELINE, POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Id, IntId, Money, Reason, Text, money
from billing_oss.server.http.validation import decode_body, decode_path, decode_query
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.pipeline.suspense import RetryResult
from billing_oss.server.store import suspense_repo
from billing_oss.server.store.suspense_repo import State, SuspenseDetail, SuspenseItem


class Unavailable(BillingError):
    code = ErrorCode.UNAVAILABLE


class SuspenseQuery(msgspec.Struct, frozen=True, kw_only=True):
    state: State | None = None
    reason: Annotated[str, msgspec.Meta(max_length=64, pattern="^[A-Z_]+$")] | None = None
    source: Text | None = None
    account_id: Id | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class SuspensePath(msgspec.Struct, frozen=True):
    suspense_id: IntId


class Discard(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Reason


# The decoded record's fields an operator may correct: not its identity (source, record
# key: what makes a redelivery a duplicate), nor a partial's sequence or its attributes.
CorrectableField = Literal["kind", "event_time", "duration_s", "volume_up", "volume_down",
                           "quantity", "unit", "calling", "called", "imsi", "msisdn", "charge"]
Value = Text | Annotated[int, msgspec.Meta(ge=0, le=2**62)] | None


class Correction(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Fields of the decoded record to set (null removes one), and why: the record is then
    retried as corrected."""

    set: Annotated[dict[CorrectableField, Value], msgspec.Meta(min_length=1)]
    reason: Reason


class SuspensePage(msgspec.Struct, frozen=True):
    items: list[SuspenseItem]
    next_cursor: str | None


class RetryOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a retry did: ``charged``, still in ``suspense`` (with the new reason), or a
    ``duplicate`` of usage already charged."""

    status: Literal["charged", "suspense", "duplicate"]
    reason: str | None = None
    detail: str | None = None
    amount: Money | None = None
    item: SuspenseDetail


async def list_suspense(request: web.Request) -> web.Response:
    q = decode_query(request, SuspenseQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    rows = await suspense_repo.find(
        request.app[POOL], state=q.state, reason=q.reason, source=q.source,
        account_id=q.account_id, after=after[0] if after else None, limit=q.limit,
    )
    items, next_cursor = page(rows, q.limit, lambda s: (s.suspense_id,))
    return reply(SuspensePage(items, next_cursor))


async def get_suspense(request: web.Request) -> web.Response:
    path = decode_path(request, SuspensePath)
    return reply(await suspense_repo.get(request.app[POOL], path.suspense_id))


async def retry_suspense(request: web.Request) -> web.Response:
    path = decode_path(request, SuspensePath)
    return reply(await retry(request.app[POOL], request.app.get(PIPELINE), actor(request),
                             path.suspense_id))


async def retry(pool: asyncpg.Pool, pipeline: Pipeline | None, who: str,
                suspense_id: int) -> RetryOutcome:
    """Rate one open record again, audited as ``who`` (the API and the console alike)."""
    if pipeline is None:
        raise Unavailable("suspense retry needs the pipeline, which this server does not run")
    before = await suspense_repo.require_open(pool, suspense_id)
    report = await pipeline.retry_suspense(ids=[suspense_id], limit=1)
    if not report.results:  # another retry or a discard got there first
        raise Conflict(f"suspense record {suspense_id} is no longer open")
    result = report.results[0]
    item = await suspense_repo.get(pool, suspense_id)
    # The pipeline commits the retry in its own transaction; the audit entry follows it.
    await suspense_repo.record_retry(pool, who, before, item, result.status)
    return RetryOutcome(
        status=result.status, reason=result.reason,  # type: ignore[arg-type]
        detail=result.detail, amount=_amount(result), item=item)


async def discard_suspense(request: web.Request) -> web.Response:
    path = decode_path(request, SuspensePath)
    body = await decode_body(request, Discard)
    return reply(await suspense_repo.discard(
        request.app[POOL], actor(request), path.suspense_id, body.reason.strip()))


async def correct_suspense(request: web.Request) -> web.Response:
    path = decode_path(request, SuspensePath)
    body = await decode_body(request, Correction)
    return reply(await correct(request.app[POOL], actor(request), path.suspense_id,
                               {str(k): v for k, v in body.set.items()}, body.reason.strip()))


async def correct(pool: asyncpg.Pool, who: str, suspense_id: int,
                  changes: dict[str, str | int | None], reason: str) -> SuspenseDetail:
    """Correct fields of an open record, audited as ``who`` (the API and the console
    alike); the corrected record must still be a usage record (types, kind, event time)."""
    return await suspense_repo.correct(pool, who, suspense_id, changes, reason, _usage_record)


def _usage_record(record: dict[str, object]) -> None:
    try:
        decoded = msgspec.convert(record, UsageRecord)
        parse_event_time(decoded.event_time)
    except (msgspec.ValidationError, ValueError) as exc:
        raise InvalidRequest(f"the corrected record is not a usage record: {exc}") from None


def _amount(result: RetryResult) -> Money | None:
    if result.amount is None or result.currency is None:
        return None
    return money(parse_micros(result.amount), result.currency)


def register(api: Api) -> None:
    tag = "suspense"
    api.add("GET", "/v1/suspense", list_suspense, summary="List suspense records", tag=tag,
            query=SuspenseQuery, response=SuspensePage, roles=("viewer",))
    api.add("GET", "/v1/suspense/{suspense_id}", get_suspense,
            summary="Inspect a suspense record: raw form (base64), decoded record, reason",
            tag=tag, params=SuspensePath, response=SuspenseDetail, roles=("viewer",))
    api.add("POST", "/v1/suspense/{suspense_id}/retry", retry_suspense,
            summary="Rate an open suspense record again under the current catalog", tag=tag,
            params=SuspensePath, response=RetryOutcome, roles=("operator",), errors=(409,))
    api.add("POST", "/v1/suspense/{suspense_id}/discard", discard_suspense,
            summary="Close an open suspense record without charging it, with a reason",
            tag=tag, params=SuspensePath, request=Discard, response=SuspenseDetail,
            roles=("operator",), errors=(409,))
    api.add("POST", "/v1/suspense/{suspense_id}/correct", correct_suspense,
            summary="Correct fields of an open suspense record's decoded form before a retry",
            tag=tag, params=SuspensePath, request=Correction, response=SuspenseDetail,
            roles=("operator",), errors=(409,))
