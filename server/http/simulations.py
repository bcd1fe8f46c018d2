"""`/v1/simulations`: price a period's real usage under a candidate catalog.

Submitting queues the simulation (202 + ``Location``); the background worker runs it in
one read-only snapshot and stores the comparison on the simulation, which ``GET`` shows
(``result`` is the same document ``billing-oss simulate --format json`` prints).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import POOL, SIMULATION_WAKE
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import AttrKey, Id, IntId, Period, Text
from billing_oss.server.http.validation import decode_body, decode_path
from billing_oss.server.simulation import candidate as candidates
from billing_oss.server.simulation import engine, repo

State = Literal["queued", "running", "done", "failed"]
Percent = Annotated[str, msgspec.Meta(pattern="^[0-9]{1,4}(\\.[0-9]{1,4})?$", examples=["20"])]


class SimulationRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``candidate``: a catalog document laid over the catalog in force (tariffs, products,
    discounts, tax rates, account moves). ``from``..``to``: billing periods, included."""

    candidate: dict[str, Any]
    from_: Period = msgspec.field(name="from")
    to: Period | None = None
    accounts: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=10_000)] | None = None
    segment: Annotated[dict[AttrKey, Text], msgspec.Meta(max_length=10)] | None = None
    by: Annotated[list[AttrKey], msgspec.Meta(max_length=10)] = []
    shock_percent: Percent = "20"
    top: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10


class SimulationPath(msgspec.Struct, frozen=True):
    simulation_id: IntId


class SimulationProgress(msgspec.Struct, frozen=True, kw_only=True):
    """How far a simulation is: ``percent`` (decimal string, "100" once done) of its work,
    records read (of those its periods hold, as the analytics rollups count them), then
    account cycles priced under both catalogs."""

    phase: Literal["reading", "pricing"] | None = None
    percent: str
    records_read: int | None = None
    records_expected: int | None = None
    cycles_priced: int | None = None
    cycles: int | None = None


class Simulation(msgspec.Struct, frozen=True, kw_only=True):
    simulation_id: int
    state: State
    progress: SimulationProgress | None  # None: queued, or not started reporting
    requested_by: str
    request: dict[str, Any]
    result: dict[str, Any] | None
    run: dict[str, Any] | None
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


async def create_simulation(request: web.Request) -> web.Response:
    body = await decode_body(request, SimulationRequest)
    stored = await launch(request.app[POOL], request.app.get(SIMULATION_WAKE), actor(request),
                          body)
    return reply(_view(stored), status=202,
                 headers={"Location": f"/v1/simulations/{stored.simulation_id}"})


async def launch(pool: asyncpg.Pool, wake: Callable[[], None] | None, who: str,
                 body: SimulationRequest) -> repo.Stored:
    """Queue a simulation requested by ``who`` (the API and the console alike)."""
    wanted = engine.Request(
        candidate=body.candidate, period_from=body.from_, period_to=body.to or body.from_,
        accounts=body.accounts, segment=body.segment, by=body.by,
        shock_percent=body.shock_percent, top=body.top)  # type: ignore[arg-type]
    engine.periods_between(wanted.period_from, wanted.period_to)
    candidates.check(body.candidate)
    simulation_id = await repo.create(pool, who, msgspec.to_builtins(wanted))
    if wake is not None:
        wake()
    return await repo.get(pool, simulation_id)


async def get_simulation(request: web.Request) -> web.Response:
    path = decode_path(request, SimulationPath)
    return reply(_view(await repo.get(request.app[POOL], path.simulation_id)))


def _view(s: repo.Stored) -> Simulation:
    return Simulation(
        simulation_id=s.simulation_id, state=s.state,  # type: ignore[arg-type]
        progress=msgspec.convert(s.progress, SimulationProgress) if s.progress else (
            SimulationProgress(percent="100") if s.state == "done" else None),
        requested_by=s.requested_by, request=s.request, result=s.result, run=s.run,
        error=s.error, created_at=s.created_at, started_at=s.started_at,
        finished_at=s.finished_at)


def register(api: Api) -> None:
    tag = "simulations"
    api.add("POST", "/v1/simulations", create_simulation,
            summary="Simulate a candidate catalog on a period's real usage (queued)",
            tag=tag, request=SimulationRequest, response=Simulation, status=202,
            roles=("operator",), errors=(404,))
    api.add("GET", "/v1/simulations/{simulation_id}", get_simulation,
            summary="A simulation: its state and, once done, the comparison", tag=tag,
            params=SimulationPath, response=Simulation, roles=("viewer",), errors=(404,))
