"""The server as a user meets it: start on a database, answer the orchestration endpoints."""

from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from tests.conftest import serving


@pytest.fixture(scope="module")
async def server_url(database_url: str) -> AsyncIterator[str]:
    async with serving(database_url, start_s=30) as url:
        yield url


async def test_health_and_readiness(server_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server_url}/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with http.get(f"{server_url}/readyz") as r:
            assert r.status == 200 and (await r.json()) == {"status": "ready", "database": "ok"}


async def test_metrics_count_requests(server_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        await http.get(f"{server_url}/healthz")
        async with http.get(f"{server_url}/metrics") as r:
            text = await r.text()
    assert r.status == 200
    assert 'billing_http_requests_total{method="GET",route="/healthz",status="200"}' in text


async def test_openapi_documents_every_route(server_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server_url}/v1/openapi.json") as r:
            doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    assert {"/healthz", "/readyz", "/metrics", "/v1/openapi.json"} <= set(doc["paths"])


async def test_unknown_route_is_problem_json(server_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server_url}/v1/nothing-here") as r:
            assert r.status == 404
            assert r.content_type == "application/problem+json"
            body = await r.json()
    assert body["status"] == 404 and body["code"] == "NOT_FOUND"
    assert body["instance"] == "/v1/nothing-here"


async def test_demo_catalog_loaded_on_empty_database(server_url: str, database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        tariffs = await conn.fetchval("SELECT count(*) FROM tariffs")
        accounts = await conn.fetchval("SELECT count(*) FROM accounts")
        versions = await conn.fetchval("SELECT count(*) FROM tariff_versions")
    finally:
        await conn.close()
    assert tariffs >= 1 and accounts >= 1 and versions >= 1
