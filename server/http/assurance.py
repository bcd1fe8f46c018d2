"""`/v1/assurance/runs`: run the revenue-assurance controls and read their results.

``POST`` queues a run of the controls named (all by default) as of a time (default: when
it starts) and answers 202 with its ``run_id`` and ``Location``; the background worker runs
it. ``GET /v1/assurance/runs/{run_id}`` shows the run's progress (``state`` queued or
running, ``controls_done`` of ``controls``), then, once ``done``, every control's verdict,
money at stake and evidence; a failing control is a result, not an error. ``GET`` lists
the stored runs, newest first.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec
from aiohttp import web

from billing_oss.core.errors import NotFound
from billing_oss.server.assurance import engine, repo
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import ASSURANCE_WAKE, POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import IntId, Timestamp
from billing_oss.server.http.validation import decode_body, decode_path, decode_query


class RunRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``controls``: control or family names (all when absent); ``as_of``: default now."""

    controls: list[str] | None = None
    as_of: Timestamp | None = None


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    object: str
    currency: str | None
    at_stake: str | None  # decimal string
    detail: str


class ControlResult(msgspec.Struct, frozen=True, kw_only=True):
    control: str
    version: int
    family: str
    status: str  # pass | fail | error
    checked: int | None
    offending: int
    unpriced: int
    at_stake: dict[str, str]  # currency → decimal string
    evidence: list[Evidence]
    evidence_query: str
    error: str | None
    duration_ms: int


class AssuranceRun(msgspec.Struct, frozen=True, kw_only=True):
    """A run; while ``queued`` or ``running``, ``results`` is empty and ``controls_done``
    counts the controls finished so far (``as_of`` is known once it starts)."""

    run_id: int
    state: Literal["queued", "running", "done", "failed"] = "done"
    as_of: Timestamp | None
    trigger: str
    actor: str
    controls: int
    controls_done: int
    failed: int
    started_at: Timestamp | None
    finished_at: Timestamp | None
    error: str | None = None
    results: list[ControlResult]


class RunQuery(msgspec.Struct, frozen=True, kw_only=True):
    limit: Limit = 50
    cursor: Cursor | None = None


class RunPath(msgspec.Struct, frozen=True):
    run_id: IntId


class RunPage(msgspec.Struct, frozen=True):
    items: list[AssuranceRun]
    next_cursor: str | None


async def run_controls(request: web.Request) -> web.Response:
    body = await decode_body(request, RunRequest)
    chosen = engine.select(body.controls)  # an unknown name is refused now, not later
    pool = request.app[POOL]
    job_id = await repo.create_job(pool, actor(request), body.controls, body.as_of,
                                   len(chosen))
    wake = request.app.get(ASSURANCE_WAKE)
    if wake is not None:
        wake()
    job = await repo.job(pool, job_id)
    assert job is not None
    return reply(_job(job), status=202, headers={"Location": f"/v1/assurance/runs/{job_id}"})


async def list_runs(request: web.Request) -> web.Response:
    q = decode_query(request, RunQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    rows = await repo.runs(request.app[POOL], before=after[0] if after else None,
                           limit=q.limit + 1)
    items, next_cursor = page(rows, q.limit, lambda r: (r.run_id,))
    return reply(RunPage([_run(r) for r in items], next_cursor))


async def get_run(request: web.Request) -> web.Response:
    path = decode_path(request, RunPath)
    pool = request.app[POOL]
    job = await repo.job(pool, path.run_id)
    if job is not None and job.state != "done":
        return reply(_job(job))
    try:
        return reply(_run(await repo.get(pool, path.run_id)))
    except NotFound:
        if job is None:
            raise
        return reply(_job(job))  # done, its run not visible yet: a moment's race


def _run(r: repo.Run) -> AssuranceRun:
    data: dict[str, Any] = msgspec.to_builtins(r)
    data.pop("audit_seq", None)
    data["controls_done"] = data["controls"]
    return msgspec.convert(data, AssuranceRun, strict=False)


def _job(j: repo.Job) -> AssuranceRun:
    def stamp(moment: dt.datetime | None) -> str | None:
        return None if moment is None else moment.astimezone(dt.UTC).isoformat()

    return msgspec.convert({
        "run_id": j.run_id, "state": j.state, "as_of": stamp(j.as_of), "trigger": "api",
        "actor": j.requested_by, "controls": j.controls_total,
        "controls_done": j.controls_done, "failed": 0, "started_at": stamp(j.started_at),
        "finished_at": stamp(j.finished_at), "error": j.error, "results": []},
        AssuranceRun, strict=False)


def register(api: Api) -> None:
    tag = "assurance"
    api.add("POST", "/v1/assurance/runs", run_controls,
            summary="Run the revenue-assurance controls in the background (202, Location)",
            tag=tag, request=RunRequest, response=AssuranceRun, status=202,
            roles=("operator",))
    api.add("GET", "/v1/assurance/runs", list_runs, summary="Assurance runs, newest first",
            tag=tag, query=RunQuery, response=RunPage, roles=("viewer",))
    api.add("GET", "/v1/assurance/runs/{run_id}", get_run,
            summary="One assurance run: its progress, then each control's verdict, money at"
                    " stake and evidence",
            tag=tag, params=RunPath, response=AssuranceRun, roles=("viewer",), errors=(404,))
