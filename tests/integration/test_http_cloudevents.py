"""`POST /v1/usage` with CloudEvents 1.0 (structured, batch, binary) against a running server:
the real pipeline, PostgreSQL and aiohttp client."""

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from billing_oss.server.store import api_keys
from tests.conftest import serving

A1 = "33611111111"  # the demo catalog's account
USAGE = {"event_time": "2026-03-02T10:00:00Z", "calling": A1, "called": "33612345678",
         "duration_s": 90}


def event(event_id: str | None, source: str = "gw1", **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"specversion": "1.0", "source": source, "type": "com.example.voice",
                         "data": dict(USAGE), **extra}
    if event_id is not None:
        e["id"] = event_id
    return e


@pytest.fixture(scope="module")
async def server(database_url: str) -> AsyncIterator[str]:
    async with serving(database_url) as url:
        yield url


@pytest.fixture(scope="module")
async def db(server: str, database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def token(db: asyncpg.Pool) -> str:
    return (await api_keys.create(db, "ingest", name="gateway", source="gw1")).token


@pytest.fixture(scope="module")
async def open_token(db: asyncpg.Pool) -> str:
    return (await api_keys.create(db, "ingest", name="broker bridge")).token


async def post(url: str, token: str, body: bytes, content_type: str,
               **headers: str) -> tuple[int, Any]:
    hdrs = {"Authorization": f"Bearer {token}", "Content-Type": content_type, **headers}
    async with aiohttp.ClientSession() as http, http.post(f"{url}/v1/usage", data=body,
                                                          headers=hdrs) as r:
        return r.status, await r.json(content_type=None)


async def stored(db: asyncpg.Pool, source: str, key: str) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM usage_records WHERE source = $1"
                                   " AND record_key = $2", source, key)
    return count


async def test_structured_event_is_one_record_and_twice_is_still_one(
        server: str, token: str, db: asyncpg.Pool) -> None:
    key = f"ce-{uuid.uuid4().hex[:8]}"
    body = msgspec.json.encode(event(key))
    status, first = await post(server, token, body, "application/cloudevents+json")
    assert status == 200, first
    assert (first["accepted"], first["duplicate"], first["rejected"]) == (1, 0, 0)
    assert first["counts"]["charged"] == 1
    assert await stored(db, "gw1", key) == 1
    # the same event in another request (another body: time added) is a duplicate
    again = msgspec.json.encode(event(key, time="2026-03-02T10:00:00Z"))
    status, second = await post(server, token, again, "application/cloudevents+json")
    assert status == 200 and second["duplicate"] == 1 and second["accepted"] == 0
    assert await stored(db, "gw1", key) == 1


async def test_batch_maps_each_event_and_time_and_type_fill_the_record(
        server: str, token: str, db: asyncpg.Pool) -> None:
    tag = uuid.uuid4().hex[:8]
    no_time = {k: v for k, v in USAGE.items() if k != "event_time"}
    events = [event(f"{tag}-1"), event(f"{tag}-2", data=no_time, time="2026-03-03T09:00:00Z"),
              event(f"{tag}-3", data={**USAGE, "duration_s": "long"}), event(f"{tag}-1")]
    status, result = await post(server, token, msgspec.json.encode(events),
                                "application/cloudevents-batch+json")
    assert status == 200, result
    assert (result["accepted"], result["duplicate"], result["rejected"]) == (2, 1, 1)
    bad = next(i for i in result["issues"] if i["status"] == "rejected")
    assert bad["reason"] == "BAD_FIELD" and "events[2].data" in bad["detail"]
    row = await db.fetchrow("SELECT kind, event_time FROM usage_records WHERE source = 'gw1'"
                            " AND record_key = $1", f"{tag}-2")
    assert row["kind"] == "voice" and row["event_time"].isoformat() == "2026-03-03T09:00:00+00:00"


async def test_binary_mode_takes_attributes_from_headers(
        server: str, token: str, db: asyncpg.Pool) -> None:
    key = f"bin-{uuid.uuid4().hex[:8]}"
    headers = {"ce-specversion": "1.0", "ce-id": key, "ce-source": "gw1",
               "ce-type": "com.example.usage.voice"}
    body = msgspec.json.encode(USAGE)
    status, result = await post(server, token, body, "application/json", **headers)
    assert status == 200 and result["accepted"] == 1, result
    assert await stored(db, "gw1", key) == 1
    # same data, another id: another event (the position covers the headers)
    other = {**headers, "ce-id": key + "b"}
    status, result = await post(server, token, body, "application/json", **other)
    assert status == 200 and result["accepted"] == 1, result
    msgpack = {**headers, "ce-id": key + "m"}
    status, result = await post(server, token, msgspec.msgpack.encode(USAGE),
                                "application/msgpack", **msgpack)
    assert status == 200 and result["accepted"] == 1, result
    assert await stored(db, "gw1", key + "m") == 1


async def test_data_base64_in_structured_mode(server: str, token: str, db: asyncpg.Pool) -> None:
    key = f"b64-{uuid.uuid4().hex[:8]}"
    e = event(key)
    del e["data"]
    e["data_base64"] = base64.b64encode(msgspec.json.encode(USAGE)).decode()
    status, result = await post(server, token, msgspec.json.encode(e),
                                "application/cloudevents+json")
    assert status == 200 and result["accepted"] == 1, result
    assert await stored(db, "gw1", key) == 1


@pytest.mark.parametrize(("mutate", "attribute"), [
    (lambda e: e.pop("id"), "id"),
    (lambda e: e.update(specversion="0.3"), "specversion"),
    (lambda e: e.pop("source"), "source"),
    (lambda e: e.update(id=7), "id"),
])
async def test_bad_envelope_is_400_naming_the_attribute(
        server: str, token: str, db: asyncpg.Pool, mutate: Any, attribute: str) -> None:
    key = f"bad-{uuid.uuid4().hex[:8]}"
    good, bad = event(key + "-ok"), event(key)
    mutate(bad)
    status, problem = await post(server, token, msgspec.json.encode([good, bad]),
                                 "application/cloudevents-batch+json")
    assert status == 400, problem
    assert problem["code"] == "CLOUDEVENT_INVALID"
    assert f"'{attribute}'" in problem["detail"] or f"{attribute} " in problem["detail"]
    assert "events[1]" in problem["detail"]
    assert problem["errors"][0]["path"] == attribute
    assert await stored(db, "gw1", key + "-ok") == 0  # nothing of the batch is stored


async def test_binary_mode_without_id_header_is_400(server: str, token: str) -> None:
    headers = {"ce-specversion": "1.0", "ce-source": "gw1", "ce-type": "com.example.voice"}
    status, problem = await post(server, token, msgspec.json.encode(USAGE),
                                 "application/json", **headers)
    assert status == 400 and problem["code"] == "CLOUDEVENT_INVALID"
    assert "'ce-id'" in problem["detail"]
    headers = {"ce-id": "x1", "ce-source": "gw1", "ce-type": "com.example.voice"}
    status, problem = await post(server, token, msgspec.json.encode(USAGE),
                                 "application/json", **headers)
    assert status == 400 and "'ce-specversion'" in problem["detail"]
    status, problem = await post(server, token, msgspec.json.encode(USAGE),
                                 "application/json", **{**headers, "ce-specversion": "0.3"})
    assert status == 400 and problem["errors"][0]["path"] == "specversion"


async def test_bound_key_refuses_another_source_and_open_key_takes_the_events_source(
        server: str, token: str, open_token: str, db: asyncpg.Pool) -> None:
    key = f"src-{uuid.uuid4().hex[:8]}"
    body = msgspec.json.encode(event(key, source="urn:meter:other"))
    status, result = await post(server, token, body, "application/cloudevents+json")
    assert status == 200 and result["rejected"] == 1 and result["accepted"] == 0, result
    assert "is not this sender's source" in result["issues"][0]["detail"]
    status, result = await post(server, open_token, body, "application/cloudevents+json")
    assert status == 200 and result["accepted"] == 1, result
    assert await stored(db, "urn:meter:other", key) == 1
