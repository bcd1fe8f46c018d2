"""`POST /v1/usage` against a running server: the real pipeline, PostgreSQL and aiohttp client."""

import asyncio
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


def voice(key: str | None, *, calling: str = A1, duration: int = 90,
          **extra: Any) -> dict[str, Any]:
    record = {"kind": "voice", "event_time": "2026-03-02T10:00:00Z", "calling": calling,
              "called": "33612345678", "duration_s": duration, **extra}
    if key is not None:
        record["record_key"] = key
    return record


@pytest.fixture(scope="module")
async def server(database_url: str) -> AsyncIterator[str]:
    async with serving(database_url, {"http.max_body_bytes": 65536}) as url:
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


async def post(url: str, token: str, body: bytes, content_type: str = "application/json",
               **headers: str) -> tuple[int, str, Any, dict[str, str]]:
    hdrs = {"Authorization": f"Bearer {token}", "Content-Type": content_type, **headers}
    async with aiohttp.ClientSession() as http, http.post(f"{url}/v1/usage", data=body,
                                                          headers=hdrs) as r:
        return r.status, r.content_type, await r.json(content_type=None), dict(r.headers)


async def test_batch_counts_and_same_request_twice_changes_nothing(
        server: str, token: str, db: asyncpg.Pool) -> None:
    tag = uuid.uuid4().hex[:8]
    records = [voice(f"{tag}-1"), voice(f"{tag}-2", calling="49999"),
               voice(f"{tag}-3", duration=-5), voice(f"{tag}-1")]
    body = msgspec.json.encode({"records": records})
    status, _, first, headers = await post(server, token, body)
    assert status == 200, first
    assert (first["accepted"], first["duplicate"], first["rejected"]) == (2, 1, 1)
    assert first["counts"] == {"in": 4, "charged": 1, "suspense": 2, "duplicates": 1,
                               "filtered": 0, "pending": 0}
    by_status = {i["status"]: i for i in first["issues"]}
    assert by_status["suspense"]["reason"] == "UNKNOWN_ACCOUNT"
    assert by_status["rejected"]["reason"] == "BAD_FIELD"
    assert "Idempotent-Replayed" not in headers
    status, _, second, headers = await post(server, token, body)
    assert status == 200 and second == first and headers["Idempotent-Replayed"] == "true"
    rows = await db.fetchval("SELECT count(*) FROM usage_keys WHERE source = 'gw1'"
                             " AND record_key LIKE $1", f"{tag}-%")
    suspense = await db.fetchval("SELECT count(*) FROM suspense WHERE record_key LIKE $1",
                                 f"{tag}-%")
    assert (rows, suspense) == (3, 2)


async def test_msgpack_with_idempotency_key_names_the_records(
        server: str, token: str, db: asyncpg.Pool) -> None:
    key = f"batch-{uuid.uuid4().hex}"
    body = msgspec.msgpack.encode([voice(None), voice(None, duration=30)])
    for attempt in range(2):
        status, _, result, headers = await post(server, token, body, "application/msgpack",
                                                **{"Idempotency-Key": key})
        assert status == 200 and result["accepted"] == 2, result
        assert headers.get("Idempotent-Replayed") == ("true" if attempt else None)
    keys = await db.fetch("SELECT record_key FROM usage_keys WHERE record_key LIKE $1"
                          " ORDER BY 1", f"{key}#%")
    assert [r["record_key"] for r in keys] == [f"{key}#0", f"{key}#1"]
    amount = await db.fetchval(
        "SELECT sum(amount_micros) FROM charges c JOIN usage_records u USING (account_id, usage_id)"
        " WHERE u.record_key LIKE $1", f"{key}#%")
    assert amount > 0


async def test_records_without_any_key_are_rejected_with_reason(server: str, token: str) -> None:
    body = msgspec.json.encode({"records": [voice(None), {"kind": "voice", "duration_s": "x"}]})
    status, _, result, _ = await post(server, token, body)
    assert status == 200
    assert result["rejected"] == 2 and result["accepted"] == 0
    details = " ".join(i["detail"] for i in result["issues"])
    assert "record_key is required" in details and "records[1]" in details


async def test_a_record_naming_another_source_is_rejected(server: str, db: asyncpg.Pool
                                                          ) -> None:
    victim, attacker = (f"{who}-{uuid.uuid4().hex[:6]}" for who in ("victim", "attacker"))
    stolen = (await api_keys.create(db, "ingest", source=attacker)).token
    owner = (await api_keys.create(db, "ingest", source=victim)).token
    body = msgspec.json.encode({"records": [voice("k1", source=victim),
                                            voice("k2", source=attacker)]})
    status, _, result, _ = await post(server, stolen, body)
    assert status == 200 and (result["accepted"], result["rejected"]) == (1, 1), result
    [issue] = result["issues"]
    assert (issue["status"], issue["reason"]) == ("rejected", "BAD_FIELD")
    assert f"source '{victim}' is not this sender's source '{attacker}'" in issue["detail"]
    # the victim's own record with that key is still its to send
    status, _, result, _ = await post(server, owner, msgspec.json.encode(voice("k1")))
    assert status == 200 and result["accepted"] == 1 and not result["issues"], result
    owners = await db.fetch("SELECT source FROM usage_keys WHERE record_key IN ('k1', 'k2')"
                            " AND source IN ($1, $2) ORDER BY record_key", victim, attacker)
    assert [r["source"] for r in owners] == [victim, attacker]


@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    (b"{not json", "application/json", 400, "MALFORMED"),
    (b'{"records": 5}', "application/json", 400, "MALFORMED"),
    (b"[1, }", "application/json", 400, "MALFORMED"),
    (b"\x92\x01\xc1", "application/msgpack", 400, "MALFORMED"),
    (b"<usage/>", "application/xml", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (b"[" + b" " * 70000 + b"]", "application/json", 413, "PAYLOAD_TOO_LARGE"),
])
async def test_bad_requests_are_problem_json(server: str, token: str, body: bytes,
                                             content_type: str, status: int, code: str) -> None:
    got, ctype, problem, _ = await post(server, token, body, content_type)
    assert (got, ctype, problem["code"]) == (status, "application/problem+json", code)
    assert problem["detail"]


@pytest.mark.parametrize("body", [
    b"[" * 30000 + b"]" * 30000,  # beyond what the parser's stack takes
    b'{"records": [' + b'{"attrs": ' * 5000 + b"1" + b"}" * 5000 + b"]}",
    msgspec.json.encode({"records": [voice("deep", attrs={"a": [[[[[[[[[[[[[[[[[[[[
        [[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]})]}),  # 33 levels in all
    b"\x91" * 30000 + b"\x90",
])
async def test_deeply_nested_bodies_are_refused_with_the_depth_named(
        server: str, token: str, body: bytes) -> None:
    content_type = "application/msgpack" if body[:1] == b"\x91" else "application/json"
    got, ctype, problem, _ = await post(server, token, body, content_type)
    assert (got, ctype, problem["code"]) == (400, "application/problem+json", "MALFORMED")
    assert "more than 32 levels" in problem["detail"] or "deeper than 32 levels" in \
        problem["detail"], problem


async def test_attrs_nested_up_to_the_bound_are_accepted(
        server: str, token: str, db: asyncpg.Pool) -> None:
    key = f"nest-{uuid.uuid4().hex[:8]}"
    attrs = {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]}  # 32 levels
    status, _, result, _ = await post(server, token, msgspec.json.encode(
        {"records": [voice(key, attrs=attrs)]}))
    assert status == 200 and result["accepted"] == 1, result


async def test_meter_readings_become_usage_by_difference(
        server: str, token: str, db: asyncpg.Pool) -> None:
    meter = f"M-{uuid.uuid4().hex[:6]}"

    def reading(value: str, ts: str, **extra: Any) -> dict[str, Any]:
        return {"meter": meter, "reading": value, "unit": "kWh", "ts": ts, **extra}

    readings = [reading("100.5", "2026-03-01T00:00:00Z"), reading("130", "2026-03-02T00:00:00Z"),
                reading("120", "2026-03-03T00:00:00Z"),
                reading("5", "2026-03-04T00:00:00Z", rollover="1000", serial="OLD"),
                reading("7", "2026-03-05T00:00:00Z", serial="NEW", start="2")]
    for r in readings:  # one message per reading, as a meter sends them
        status, _, result, _ = await post(server, token, msgspec.json.encode(r))
        assert status == 200, result
    usage = await db.fetch(
        "SELECT record_key, quantity::text AS q, NULL AS reason FROM usage_records"
        " WHERE record_key LIKE $1 UNION ALL"
        " SELECT coalesce(record_key, ''), record->>'quantity', reason FROM suspense"
        " WHERE record_key LIKE $1 OR detail LIKE $2", f"meter:{meter}:%", f"meter {meter}:%")
    got = sorted((r["q"] or "", r["reason"]) for r in usage)
    # baseline, difference, negative (suspense, not stored), rollover, replacement; the meter
    # events belong to no account, so the usage waits in suspense as UNKNOWN_ACCOUNT
    assert got == sorted([("0", "UNKNOWN_ACCOUNT"), ("29.5", "UNKNOWN_ACCOUNT"),
                          ("", "NEGATIVE_DELTA"), ("875", "UNKNOWN_ACCOUNT"),
                          ("5", "UNKNOWN_ACCOUNT")]), got
    # a replay of the second reading changes nothing
    status, _, result, headers = await post(server, token, msgspec.json.encode(readings[1]))
    assert status == 200 and headers["Idempotent-Replayed"] == "true"


async def test_batches_of_the_same_meters_in_opposite_orders_do_not_deadlock(
        server: str, db: asyncpg.Pool) -> None:
    source = f"meters-{uuid.uuid4().hex[:6]}"
    token = (await api_keys.create(db, "ingest", source=source)).token
    meters = [f"M-{i}" for i in range(200)]

    def batch(order: list[str], ts: str) -> bytes:
        return msgspec.json.encode({"readings": [
            {"meter": m, "reading": "10", "unit": "kWh", "ts": ts} for m in order]})

    for day in range(1, 4):  # a deadlock is likely, not certain, in any one round
        answers = await asyncio.gather(
            post(server, token, batch(meters, f"2026-03-0{day}T00:00:00Z")),
            post(server, token, batch(meters[::-1], f"2026-03-0{day}T00:00:01Z")))
        assert [a[0] for a in answers] == [200, 200], [a[2] for a in answers]
    stored = await db.fetchval("SELECT count(*) FROM meter_readings WHERE source = $1", source)
    # the later batch may win a meter: the earlier reading is then OUT_OF_ORDER, in suspense
    late = await db.fetchval("SELECT count(*) FROM suspense WHERE source = $1 "
                             "AND reason = 'OUT_OF_ORDER'", source)
    assert stored + late == 200 * 6 and stored >= 200 * 3


async def test_an_idempotency_key_sent_again_with_another_body_is_refused(
        server: str, db: asyncpg.Pool) -> None:
    source = f"idem-{uuid.uuid4().hex[:6]}"
    token = (await api_keys.create(db, "ingest", source=source)).token
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}

    def reading(value: str, ts: str) -> bytes:
        return msgspec.json.encode({"readings": [
            {"meter": "M-1", "reading": value, "unit": "kWh", "ts": ts}]})

    first = reading("100", "2026-03-02T00:00:00Z")
    status, _, result, _ = await post(server, token, first, **key)
    assert status == 200 and result["accepted"] == 1, result
    status, _, again, headers = await post(server, token, first, **key)
    assert (status, again, headers["Idempotent-Replayed"]) == (200, result, "true")
    for other in (reading("150", "2026-03-02T01:00:00Z"),
                  msgspec.json.encode({"records": [voice("idem-r2")]})):
        status, ctype, problem, _ = await post(server, token, other, **key)
        assert (status, ctype, problem["code"]) == (
            422, "application/problem+json", "IDEMPOTENCY_KEY_REUSED"), problem
    # nothing of the refused bodies was kept: not the reading, not the record
    readings = await db.fetch("SELECT reading::text FROM meter_readings WHERE source = $1",
                              source)
    assert [r["reading"] for r in readings] == ["100"]
    assert await db.fetchval("SELECT count(*) FROM usage_keys WHERE source = $1", source) == 1
    # a body that did not parse binds nothing: corrected, it goes under the same key
    fixed = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    assert (await post(server, token, b"[1, }", **fixed))[0] == 400
    status, _, result, _ = await post(server, token, reading("160", "2026-03-02T02:00:00Z"),
                                      **fixed)
    assert status == 200 and result["accepted"] == 1, result


async def test_a_columnar_batch_resent_under_another_key_charges_only_the_new_record(
        server: str, token: str, db: asyncpg.Pool) -> None:
    # Every record chargeable: the batch goes by column (server.pipeline.json_columns); the
    # second body repeats two keys under a new position, which the writer finds taken and
    # sorts out through the object path.
    tag = uuid.uuid4().hex[:8]
    first = [voice(f"{tag}-{i}", duration=60 + i) for i in range(2)]
    status, _, result, _ = await post(server, token, msgspec.json.encode(first))
    assert status == 200 and result["accepted"] == 2 and not result["issues"], result
    again = [*first, voice(f"{tag}-2", duration=62)]
    status, _, result, _ = await post(server, token, msgspec.json.encode({"records": again}))
    assert status == 200, result
    assert result["counts"] == {"in": 3, "charged": 1, "suspense": 0, "duplicates": 2,
                                "filtered": 0, "pending": 0}
    charges = await db.fetch(
        "SELECT u.record_key, c.amount_micros FROM charges c JOIN usage_records u"
        " USING (account_id, usage_id) WHERE u.record_key LIKE $1 ORDER BY 1", f"{tag}-%")
    assert [r["record_key"] for r in charges] == [f"{tag}-0", f"{tag}-1", f"{tag}-2"]
    assert all(r["amount_micros"] > 0 for r in charges)
