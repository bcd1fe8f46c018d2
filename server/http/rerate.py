"""`/v1/rerate-jobs`: rerate an account or a whole period under the current catalog.

Submitting queues a job (202); the background worker runs it. The job resource shows the
progress (usage done of total) and, per account and currency, the amount before and after.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from aiohttp import web

from billing_oss.core.errors import InvalidRequest
from billing_oss.server import rerate
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import POOL, RERATE_WAKE
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Id, IntId, Money, Timestamp, money
from billing_oss.server.http.validation import decode_body, decode_path, decode_query

JobState = Literal["queued", "running", "done", "failed"]


class RerateRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``account_id`` absent: every account's usage in the period."""

    account_id: Id | None = None
    from_: Timestamp = msgspec.field(name="from")
    to: Timestamp


class JobQuery(msgspec.Struct, frozen=True, kw_only=True):
    state: JobState | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class JobPath(msgspec.Struct, frozen=True):
    rerate_job_id: IntId


class AccountDifference(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    usage_count: int
    usage_changed: int
    before: Money
    after: Money
    difference: Money


class RerateProgress(msgspec.Struct, frozen=True, kw_only=True):
    usage_total: int | None
    usage_done: int
    usage_changed: int
    usage_failed: int


class RerateJob(msgspec.Struct, frozen=True, kw_only=True):
    rerate_job_id: int
    account_id: str | None
    from_: Timestamp = msgspec.field(name="from")
    to: Timestamp
    state: JobState
    requested_by: str
    progress: RerateProgress
    accounts: list[AccountDifference]
    error: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None


class JobPage(msgspec.Struct, frozen=True):
    items: list[RerateJob]
    next_cursor: str | None


async def submit_job(request: web.Request) -> web.Response:
    body = await decode_body_checked(request)
    job = await rerate.submit(request.app[POOL], actor(request), body.account_id, body.from_,
                              body.to)
    wake = request.app.get(RERATE_WAKE)
    if wake is not None:
        wake()
    return reply(_job(job), status=202)


async def get_job(request: web.Request) -> web.Response:
    path = decode_path(request, JobPath)
    return reply(_job(await rerate.get(request.app[POOL], path.rerate_job_id)))


async def list_jobs(request: web.Request) -> web.Response:
    q = decode_query(request, JobQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    rows = await rerate.find(request.app[POOL], state=q.state,
                             after=after[0] if after else None, limit=q.limit)
    items, next_cursor = page(rows, q.limit, lambda j: (j.rerate_job_id,))
    return reply(JobPage([_job(j) for j in items], next_cursor))


async def decode_body_checked(request: web.Request) -> RerateRequest:
    body = await decode_body(request, RerateRequest)
    if body.to <= body.from_:
        raise InvalidRequest("invalid body: $.to: must be after from",
                             errors=[{"location": "body", "path": "$.to",
                                      "message": "must be after from"}])
    return body


def _job(job: rerate.Job) -> RerateJob:
    return RerateJob(
        rerate_job_id=job.rerate_job_id, account_id=job.account_id, from_=job.period_start,
        to=job.period_end, state=job.state,  # type: ignore[arg-type]
        requested_by=job.requested_by,
        progress=RerateProgress(usage_total=job.usage_total, usage_done=job.usage_done,
                          usage_changed=job.usage_changed, usage_failed=job.usage_failed),
        accounts=[
            AccountDifference(
                account_id=a.account_id, usage_count=a.usage_count,
                usage_changed=a.usage_changed, before=money(a.before_micros, a.currency),
                after=money(a.after_micros, a.currency),
                difference=money(a.after_micros - a.before_micros, a.currency))
            for a in job.accounts
        ],
        error=job.error, created_at=job.created_at, started_at=job.started_at,
        finished_at=job.finished_at,
    )


def register(api: Api) -> None:
    tag = "rerate"
    api.add("POST", "/v1/rerate-jobs", submit_job,
            summary="Rerate an account or a period under the current catalog (queued)",
            tag=tag, request=RerateRequest, response=RerateJob, status=202,
            roles=("operator",), errors=(404,))
    api.add("GET", "/v1/rerate-jobs", list_jobs, summary="List rerate jobs", tag=tag,
            query=JobQuery, response=JobPage, roles=("viewer",))
    api.add("GET", "/v1/rerate-jobs/{rerate_job_id}", get_job,
            summary="A rerate job: progress and the difference per account", tag=tag,
            params=JobPath, response=RerateJob, roles=("viewer",))

