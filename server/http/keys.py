"""Typed application state (aiohttp ``AppKey``s) shared by the route modules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from billing_oss.server.config import Config
from billing_oss.server.http.admission import Admission
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.store.api_keys import ApiKey

if TYPE_CHECKING:
    from billing_oss.server.http.routing import Api

POOL = web.AppKey("pool", asyncpg.Pool)
CONFIG = web.AppKey("config", Config)
API: web.AppKey[Api] = web.AppKey("api")
# The process's mediation pipeline (a ``contract.Sink``): ingest routes commit through it.
PIPELINE = web.AppKey("pipeline", Pipeline)
# Wakes the rerate worker when a job is submitted (absent: the worker polls).
RERATE_WAKE: web.AppKey[Callable[[], None]] = web.AppKey("rerate_wake")
# Wakes the bill-run worker when a run is submitted (absent: the worker polls).
BILL_RUN_WAKE: web.AppKey[Callable[[], None]] = web.AppKey("bill_run_wake")
# Wakes the simulation worker when a simulation is submitted (absent: the worker polls).
SIMULATION_WAKE: web.AppKey[Callable[[], None]] = web.AppKey("simulation_wake")
ASSURANCE_WAKE: web.AppKey[Callable[[], None]] = web.AppKey("assurance_wake")
# Admission to POST /v1/usage: slots at work and a bounded queue (``server.http.admission``).
INGEST_ADMISSION = web.AppKey("ingest_admission", Admission)
# The request's timeout (``asyncio.Timeout``): ``reschedule(None)`` once cancelling it would
# leave its effect unknown (an ingest batch about to commit).
DEADLINE: web.RequestKey[asyncio.Timeout] = web.RequestKey("deadline")


# Set once a streamed response's status line is out (``server.http.streams``): from then on
# an error drops the connection rather than answering with a problem.
STREAMING = web.RequestKey("streaming", bool)


def lift_deadline(request: web.Request) -> None:
    """Let the request run to its end: past its point of no return a timeout could only
    misreport a batch committed, or cut a streamed file whose status line is already out
    (the client would wait on a short file instead of reading a 503)."""
    if (deadline := request.get(DEADLINE)) is not None:
        deadline.reschedule(None)

# The API key that authenticated this request (set by server.http.auth on protected routes).
PRINCIPAL = web.RequestKey("principal", ApiKey)
