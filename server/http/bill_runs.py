"""`/v1/bill-runs`: bill a cycle. A real run is a job (202): the server's bill-run worker
runs it in the background, batch by batch, resumable (server.billing.bill_runs); the run resource
shows its state, progress, counts and error. A dry run is a synchronous preview (201).

``GET /v1/bill-runs/{id}?wait=S`` answers as soon as the run is done or failed, or after S
seconds with the run as it stands: a client waits for the end without polling in a loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.billing import bill_runs, views
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import BILL_RUN_WAKE, CONFIG, POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Id, IntId, Period, Timestamp
from billing_oss.server.http.validation import decode_body, decode_path, decode_query

RunState = Literal["queued", "running", "done", "failed"]
# Below the default request timeout (30 s), so a waiting request is never cut by it.
Wait = Annotated[int, msgspec.Meta(ge=0, le=20)]
WAIT_POLL_S = 0.2


class BillRunRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``accounts`` absent: every account not closed."""

    period: Period
    accounts: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=10_000)] | None = None
    dry_run: bool = False
    finalize: bool = False  # the period's drafts whose grace period is over
    force: bool = False  # with finalize: drafts still in their grace period too


class BillRunPreview(msgspec.Struct):
    """What a run would make now; nothing was written."""

    period: str
    dry_run: bool
    accounts: int
    invoices: int
    charges: int
    seconds: float
    frozen: int  # accounts whose draft is past its grace period: a run leaves it unchanged
    previews: list[views.InvoiceView]


class BillRunProgress(msgspec.Struct, frozen=True):
    accounts_total: int | None  # None until the run has started
    accounts_done: int


class BillRun(msgspec.Struct, frozen=True, kw_only=True):
    bill_run_id: int
    period: str
    state: RunState
    requested_by: str
    finalize: bool
    force: bool
    progress: BillRunProgress
    invoices: int
    charges: int
    frozen: int  # accounts whose draft was past its grace period: left unchanged
    error: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None


class BillRunDetail(BillRun, frozen=True, kw_only=True):
    accounts: list[str] | None  # asked for; None: every account not closed
    invoice_ids: list[int]  # drafts the run stored
    finalized: list[int]  # drafts the run finalised
    in_grace: list[int]  # drafts left unfinalised: still in their grace period
    in_grace_until: Timestamp | None  # when the last of them may be finalised


class RunQuery(msgspec.Struct, frozen=True, kw_only=True):
    state: RunState | None = None
    period: Period | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class RunPath(msgspec.Struct, frozen=True):
    bill_run_id: IntId


class RunWait(msgspec.Struct, frozen=True, kw_only=True):
    wait: Wait = 0


class RunPage(msgspec.Struct, frozen=True):
    items: list[BillRun]
    next_cursor: str | None


async def create_bill_run(request: web.Request) -> web.Response:
    body = await decode_body(request, BillRunRequest)
    if body.force and not body.finalize:
        raise InvalidRequest("invalid body: $.force: only goes with finalize", errors=[
            {"location": "body", "path": "$.force", "message": "only goes with finalize"}])
    config = request.app[CONFIG]
    pool = request.app[POOL]
    if body.dry_run:
        settings = bill_runs.run_settings(config.billing)
        started = time.perf_counter()
        result = await bill_runs.preview(pool, body.period, settings.billing,
                                         accounts=body.accounts, batch_size=settings.batch_size,
                                         now=dt.datetime.now(dt.UTC))
        return reply(BillRunPreview(
            period=result.period, dry_run=True, accounts=result.accounts,
            invoices=result.invoices, charges=result.charges,
            seconds=time.perf_counter() - started, frozen=result.frozen,
            previews=[views.draft_view(d) for d in result.previews]), status=201)
    async with pool.acquire() as conn:
        run_id = await bill_runs.submit(conn, actor(request), body.period, body.accounts,
                                   finalize=body.finalize, force=body.force)
        run = await bill_runs.get(conn, run_id)
    wake = request.app.get(BILL_RUN_WAKE)
    if wake is not None:
        wake()
    return reply(_detail(run), status=202, headers={"Location": f"/v1/bill-runs/{run_id}"})


async def get_bill_run(request: web.Request) -> web.Response:
    run_id = decode_path(request, RunPath).bill_run_id
    wait = decode_query(request, RunWait).wait
    pool = request.app[POOL]
    deadline = time.monotonic() + wait
    run = await bill_runs.get(pool, run_id)
    while run.state in ("queued", "running") and time.monotonic() < deadline:
        await asyncio.sleep(min(WAIT_POLL_S, max(0.0, deadline - time.monotonic())))
        run = await bill_runs.get(pool, run_id)
    return reply(_detail(run))


async def list_bill_runs(request: web.Request) -> web.Response:
    q = decode_query(request, RunQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    found = await bill_runs.find(request.app[POOL], state=q.state, period=q.period,
                            after=after[0] if after else None, limit=q.limit)
    items, next_cursor = page(found, q.limit, lambda r: (r.bill_run_id,))
    return reply(RunPage([_summary(r) for r in items], next_cursor))


def _fields(run: bill_runs.Run) -> dict[str, object]:
    return {
        "bill_run_id": run.bill_run_id, "period": run.period, "state": run.state,
        "requested_by": run.requested_by, "finalize": run.finalize, "force": run.force,
        "progress": BillRunProgress(run.accounts_total, run.accounts_done),
        "invoices": run.invoices, "charges": run.charges, "frozen": run.frozen, "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at, "finished_at": run.finished_at,
    }


def _summary(run: bill_runs.Run) -> BillRun:
    return BillRun(**_fields(run))  # type: ignore[arg-type]


def _detail(run: bill_runs.Run) -> BillRunDetail:
    return BillRunDetail(**_fields(run),  # type: ignore[arg-type]
                         accounts=run.accounts, invoice_ids=run.invoice_ids,
                         finalized=run.finalized, in_grace=run.in_grace,
                         in_grace_until=run.in_grace_until)


def register(api: Api) -> None:
    tag = "invoicing"
    api.add("POST", "/v1/bill-runs", create_bill_run, tag=tag, request=BillRunRequest,
            response=BillRunDetail, status=202, alternatives=((201, BillRunPreview),),
            roles=("operator",),
            summary="Bill a cycle in the background (202, Location: the run); "
                    "dry_run: a preview, at once (201)")
    api.add("GET", "/v1/bill-runs", list_bill_runs, tag=tag, query=RunQuery,
            response=RunPage, roles=("viewer",), summary="List bill runs (cursor pagination)")
    api.add("GET", r"/v1/bill-runs/{bill_run_id:\d+}", get_bill_run, tag=tag,
            params=RunPath, query=RunWait, response=BillRunDetail, roles=("viewer",),
            summary="A bill run: state, progress, counts, error (wait: until it ends, ≤ 20 s)")
