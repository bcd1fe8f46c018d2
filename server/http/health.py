"""Orchestration endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import msgspec
import prometheus_client
from aiohttp import web

from billing_oss.server.http.keys import API, POOL
from billing_oss.server.http.routing import Api
from billing_oss.server.store.pool import ping


class Health(msgspec.Struct):
    status: str
    database: str | None = None


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(body=msgspec.json.encode(Health(status="ok")))


async def readyz(request: web.Request) -> web.Response:
    try:
        await ping(request.app[POOL], timeout_s=2)
    except Exception as exc:
        body = Health(status="unavailable", database=type(exc).__name__)
        return web.Response(body=msgspec.json.encode(body), status=503,
                            content_type="application/json")
    return web.Response(body=msgspec.json.encode(Health(status="ready", database="ok")),
                        content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=prometheus_client.generate_latest(),
                        headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=msgspec.json.encode(request.app[API].openapi()),
                        content_type="application/json")


def register(api: Api) -> None:
    api.add("GET", "/healthz", healthz, summary="Liveness probe", tag="ops", response=Health)
    api.add("GET", "/readyz", readyz, summary="Readiness probe: database reachable", tag="ops",
            response=Health, errors=(503,))
    api.add("GET", "/metrics", metrics, summary="Prometheus metrics", tag="ops",
            response=str, content_type="text/plain")
    api.add("GET", "/v1/openapi.json", openapi, summary="This OpenAPI document", tag="ops",
            response=dict)
