"""`/v1/assurance/runs`: run the revenue-assurance controls and read their results.

``POST`` runs the controls named (all by default) as of a time (default now) and answers
the stored run (201); a failing control is a result, not an error. ``GET`` lists runs,
newest first, and shows one with every control's verdict, money at stake and evidence.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from billing_oss.server import assurance
from billing_oss.server.assurance import engine, repo
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import CONFIG, POOL
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
    run_id: int
    as_of: Timestamp
    trigger: str
    actor: str
    controls: int
    failed: int
    started_at: Timestamp
    finished_at: Timestamp
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
    ctx = assurance.context(request.app[CONFIG].assurance, body.as_of)
    done = await engine.run(request.app[POOL], ctx, controls=body.controls, trigger="api",
                            actor=actor(request))
    return reply(_run(done), status=201)


async def list_runs(request: web.Request) -> web.Response:
    q = decode_query(request, RunQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    rows = await repo.runs(request.app[POOL], before=after[0] if after else None,
                           limit=q.limit + 1)
    items, next_cursor = page(rows, q.limit, lambda r: (r.run_id,))
    return reply(RunPage([_run(r) for r in items], next_cursor))


async def get_run(request: web.Request) -> web.Response:
    path = decode_path(request, RunPath)
    return reply(_run(await repo.get(request.app[POOL], path.run_id)))


def _run(r: repo.Run) -> AssuranceRun:
    data: dict[str, Any] = msgspec.to_builtins(r)
    data.pop("audit_seq", None)
    return msgspec.convert(data, AssuranceRun, strict=False)


def register(api: Api) -> None:
    tag = "assurance"
    api.add("POST", "/v1/assurance/runs", run_controls,
            summary="Run the revenue-assurance controls and store their results", tag=tag,
            request=RunRequest, response=AssuranceRun, status=201, roles=("operator",))
    api.add("GET", "/v1/assurance/runs", list_runs, summary="Assurance runs, newest first",
            tag=tag, query=RunQuery, response=RunPage, roles=("viewer",))
    api.add("GET", "/v1/assurance/runs/{run_id}", get_run,
            summary="One assurance run: each control's verdict, money at stake and evidence",
            tag=tag, params=RunPath, response=AssuranceRun, roles=("viewer",), errors=(404,))
