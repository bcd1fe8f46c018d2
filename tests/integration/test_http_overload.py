"""Overload on `POST /v1/usage`: admitted up to the configured slots and queue, the rest
refused at once (503 OVERLOADED, Retry-After) with nothing stored; an admitted batch commits
and answers its outcome even past the request timeout."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from billing_oss.server.http.keys import PIPELINE
from tests.integration.api_harness import Api, live_api


@pytest.fixture
async def tight(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[Api]:
    overrides = {"http.ingest_concurrency": 1, "http.ingest_queue": 1,
                 "http.request_timeout_s": 0.5}
    async with live_api(pool, database_url, overrides=overrides) as api:
        yield api


def batch(tag: str, n: int = 3) -> bytes:
    return msgspec.json.encode({"records": [
        {"record_key": f"{tag}-{i}", "kind": "voice", "event_time": "2026-03-02T10:00:00Z",
         "calling": "33611111111", "called": "33612345678", "duration_s": 60}
        for i in range(n)]})


async def post(api: Api, body: bytes) -> tuple[int, dict[str, str], Any]:
    headers = {**api.headers("ingest"), "Content-Type": "application/json"}
    async with api.http.post(api.url + "/v1/usage", data=body, headers=headers) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


async def stored(pool: asyncpg.Pool, tag: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM usage_keys WHERE record_key LIKE $1",
                                   f"{tag}-%"))


async def test_past_the_slots_and_queue_requests_are_shed_at_once_and_not_stored(
        tight: Api, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = tight.app[PIPELINE]
    release, entered = asyncio.Event(), asyncio.Event()
    commit = pipeline.commit

    async def held_commit(deliveries: Any) -> Any:
        entered.set()
        await release.wait()  # a slow database: longer than the request timeout
        return await commit(deliveries)

    monkeypatch.setattr(pipeline, "commit", held_commit)
    tag = uuid.uuid4().hex[:8]
    working = asyncio.create_task(post(tight, batch(f"{tag}a")))
    await asyncio.wait_for(entered.wait(), 10)
    queued = asyncio.create_task(post(tight, batch(f"{tag}b")))
    await asyncio.sleep(0.1)  # the second waits in the queue
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, headers, problem = await post(tight, batch(f"{tag}c"))
    assert loop.time() - started < 0.4  # answered at once, not after a timeout
    assert (status, problem["code"], headers["Retry-After"]) == (503, "OVERLOADED", "1")
    assert "nothing of this request was stored" in problem["detail"]
    await asyncio.sleep(0.6)  # past the request timeout: the committing batch is not cut off
    release.set()
    first, second = await working, await queued
    assert first[0] == 200 and first[2]["accepted"] == 3, first
    # the queued one waited past its timeout before any work: 503, and it stored nothing
    assert second[0] in (200, 503), second
    assert await stored(pool, f"{tag}a") == 3
    assert await stored(pool, f"{tag}b") == (3 if second[0] == 200 else 0)
    assert await stored(pool, f"{tag}c") == 0


async def test_a_batch_committing_past_the_timeout_answers_its_outcome(
        tight: Api, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = tight.app[PIPELINE]
    commit = pipeline.commit

    async def slow_commit(deliveries: Any) -> Any:
        await asyncio.sleep(1.0)  # twice the request timeout
        return await commit(deliveries)

    monkeypatch.setattr(pipeline, "commit", slow_commit)
    tag = uuid.uuid4().hex[:8]
    status, _, result = await post(tight, batch(tag))
    assert status == 200 and result["accepted"] == 3, result
    assert await stored(pool, tag) == 3


async def test_openapi_declares_the_503(tight: Api) -> None:
    async with aiohttp.ClientSession() as http, http.get(tight.url + "/v1/openapi.json") as r:
        doc = await r.json()
    assert "503" in doc["paths"]["/v1/usage"]["post"]["responses"]
