"""A live admin API on loopback for the test_api_* modules, with one key per role.

Import the fixtures into a test module: ``from tests.integration.api_harness import api``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp import web

from billing_oss.server import config, jobs, rerate
from billing_oss.server.billing import bill_runs
from billing_oss.server.composition import simulation_jobs
from billing_oss.server.http.keys import BILL_RUN_WAKE, RERATE_WAKE, SIMULATION_WAKE
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.pipeline.raters import RaterFactory
from billing_oss.server.store import api_keys
from billing_oss.server.web import create_app
from tests.charge_seed import insert_charges
from tests.conftest import free_port
from tests.pipeline_doubles import FlatRater

ROLES = ("admin", "operator", "viewer", "ingest")


class Api:
    """The server's URL, a token per role and a client session."""

    def __init__(self, url: str, tokens: dict[str, str], http: aiohttp.ClientSession,
                 app: web.Application, bill_run_worker: jobs.Worker) -> None:
        self.url, self.tokens, self.http, self.app = url, tokens, http, app
        self.bill_run_worker = bill_run_worker

    def headers(self, role: str | None = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}

    async def call(self, method: str, path: str, role: str | None = "admin",
                   json: Any = None, params: dict[str, Any] | None = None,
                   data: bytes | None = None,
                   content_type: str | None = None) -> tuple[int, Any]:
        headers = self.headers(role)
        body = data
        if json is not None:
            body = msgspec.json.encode(json)
            headers["Content-Type"] = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        async with self.http.request(method, self.url + path, headers=headers, data=body,
                                     params=params) as r:
            payload = await r.json(content_type=None) if r.content_length != 0 else None
            if r.status >= 400:
                assert r.content_type == "application/problem+json", (r.status, payload)
            return r.status, payload

    async def pages(self, path: str, params: dict[str, Any], role: str = "viewer") -> list[
            list[Any]]:
        """Every page of a list, following next_cursor."""
        out, cursor = [], None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            status, body = await self.call("GET", path, role, params=query)
            assert status == 200, body
            out.append(body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                return out


@contextlib.asynccontextmanager
async def live_api(pool: asyncpg.Pool, database_url: str,
                   rater_factory: RaterFactory = FlatRater, *,
                   overrides: dict[str, Any] | None = None,
                   job_grace_s: float = jobs.STOP_GRACE_S,
                   simulations: bool = False) -> AsyncIterator[Api]:
    """The app with a pipeline, a rerate worker on ``rater_factory`` and a bill-run worker
    (and a simulation worker with ``simulations``), on a free port. ``overrides``:
    configuration keys ({"billing.batch_size": 1})."""
    port = free_port()
    cfg = config.load(env={}, overrides={"database.url": database_url, "http.port": port,
                                         **(overrides or {})})
    pipeline = Pipeline(pool, cfg.pipeline, rater_factory=rater_factory, decoders={})
    billing = bill_runs.BillRuns(pool, bill_runs.run_settings(cfg.billing))
    async with contextlib.AsyncExitStack() as stack:
        worker = await stack.enter_async_context(rerate.running_worker(pool, pipeline.raters))
        billing_worker = await stack.enter_async_context(
            jobs.running_worker(pool, billing, job_grace_s))
        app = create_app(cfg, pool, pipeline)
        app[RERATE_WAKE] = worker.wake
        app[BILL_RUN_WAKE] = billing_worker.wake
        if simulations:
            app[SIMULATION_WAKE] = (await stack.enter_async_context(jobs.running_worker(
                pool, simulation_jobs(pool, cfg), job_grace_s))).wake
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        tokens = {role: (await api_keys.create(pool, role, name=f"test {role}")).token
                  for role in ROLES}
        try:
            async with aiohttp.ClientSession() as http:
                yield Api(f"http://127.0.0.1:{port}", tokens, http, app, billing_worker)
        finally:
            await runner.cleanup()


@pytest.fixture(scope="module")
async def api(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[Api]:
    async with live_api(pool, database_url) as client:
        yield client

async def seed_usage(pool: asyncpg.Pool, account_id: str, event_time: str, *,
                     amount_micros: int | None, kind: str = "voice", duration_s: int = 60,
                     called: str = "33612345678", currency: str = "EUR",
                     tariff_version_id: int | None = None, source: str = "test") -> int:
    """One usage row (and its charge unless ``amount_micros`` is None); the usage id."""
    async with pool.acquire() as conn, conn.transaction():
        for table in ("usage_records", "charges"):
            await conn.execute("SELECT ensure_month_partition($1::regclass,"
                               " $2::text::timestamptz::date)", table, event_time)
        usage_id: int = await conn.fetchval("SELECT nextval('usage_id_seq')")
        await conn.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind, duration_s, calling, called) VALUES ($1, $2, $3::text::timestamptz, $4, $5,"
            " $6, $7, '33611111111', $8)",
            account_id, usage_id, event_time, source, f"{source}-{usage_id}", kind,
            duration_s, called)
        if amount_micros is not None:
            when = await conn.fetchval("SELECT $1::text::timestamptz", event_time)
            await insert_charges(conn, ("account_id", "event_time", "usage_id", "kind",
                                        "amount_micros", "currency", "tariff_version_id"),
                                 [(account_id, when, usage_id, "charge",
                                   amount_micros, currency, tariff_version_id)])
    return usage_id
