"""The aiohttp application: route modules, middlewares and typed state in one place.

A route module exposes ``register(api)``; adding one means listing it in ``ROUTE_MODULES``.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from billing_oss.core import metrics
from billing_oss.core.errors import ErrorCode
from billing_oss.server.config import Config
from billing_oss.server.http.account_cache import ACCOUNT_CACHE, AccountCache, listen_for_changes
from billing_oss.server.http.admission import Admission
from billing_oss.server.http.auth import KEY_CACHE, KeyCache, listen_for_revocations
from billing_oss.server.http.keys import (
    API,
    CONFIG,
    DEADLINE,
    INGEST_ADMISSION,
    PIPELINE,
    POOL,
    STREAMING,
)
from billing_oss.server.http.problems import (
    Handler,
    nul_middleware,
    problem_for,
    problem_middleware,
)
from billing_oss.server.http.routing import Api
from billing_oss.server.pipeline.pipeline import Pipeline

ROUTE_MODULES: tuple[str, ...] = (
    "billing_oss.server.http.health",
    "billing_oss.server.http.accounts",
    "billing_oss.server.http.account_usage",
    "billing_oss.server.http.subscriptions",
    "billing_oss.server.http.tariffs",
    "billing_oss.server.http.products",
    "billing_oss.server.http.tax_rates",
    "billing_oss.server.http.discounts",
    "billing_oss.server.http.adjustments",
    "billing_oss.server.http.traffic",
    "billing_oss.server.http.suspense",
    "billing_oss.server.http.rerate",
    "billing_oss.server.http.simulations",
    "billing_oss.server.http.files",
    "billing_oss.server.http.api_keys",
    "billing_oss.server.http.bill_runs",
    "billing_oss.server.http.invoices",
    "billing_oss.server.http.credit_notes",
    "billing_oss.server.http.settlement",
    "billing_oss.server.http.collections",
    "billing_oss.server.http.direct_debit",
    "billing_oss.server.http.psp",
    "billing_oss.server.http.reports",
    "billing_oss.server.http.soap.routes",
    "billing_oss.server.http.ledger",
    "billing_oss.server.http.provisioning",
    "billing_oss.server.http.webhooks",
    "billing_oss.server.http.assurance",
    "billing_oss.server.http.ingest",
    "billing_oss.server.http.archives",
)

API_TITLE = "billing-oss"
API_VERSION = "1"


def build_api() -> Api:
    api = Api(API_TITLE, API_VERSION)
    for name in ROUTE_MODULES:
        importlib.import_module(name).register(api)
    return api


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    metrics.HTTP_LATENCY.labels(name).observe(time.perf_counter() - started)
    metrics.HTTP_REQUESTS.labels(request.method, name, str(response.status)).inc()
    return response


def timeout_middleware(seconds: float) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def timeout(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            async with asyncio.timeout(seconds) as deadline:
                request[DEADLINE] = deadline  # a handler past its point of no return lifts it
                return await handler(request)
        except TimeoutError:
            if request.get(STREAMING):  # a stalled reader (server.http.streams): drop it
                raise
            return problem_for(
                ErrorCode.TIMEOUT, "Request timed out",
                f"the request did not complete within {seconds:g} s", instance=request.path,
                headers={"Retry-After": "1"},
            )

    return timeout


def create_api_app(
    config: Config, pool: asyncpg.Pool, pipeline: Pipeline | None = None
) -> web.Application:
    app = web.Application(
        client_max_size=config.http.max_body_bytes,
        middlewares=[metrics_middleware, problem_middleware, nul_middleware,
                     timeout_middleware(config.http.request_timeout_s)],
    )
    api = build_api()
    app[CONFIG] = config
    app[POOL] = pool
    app[API] = api
    app[KEY_CACHE] = KeyCache()
    app[ACCOUNT_CACHE] = AccountCache()
    app.cleanup_ctx.append(listen_for_changes)
    app.cleanup_ctx.append(listen_for_revocations)
    if pipeline is not None:
        app[PIPELINE] = pipeline
    app[INGEST_ADMISSION] = Admission(config.http.ingest_concurrency, config.http.ingest_queue)
    api.install(app)
    return app
