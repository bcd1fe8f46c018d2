"""MQTT intake against a real Mosquitto and the real pipeline: ack after commit, exactly once
through a broker restart and through a SIGKILL of the server between receive and commit."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import asyncpg
import msgspec
import pytest

from billing_oss.core import metrics
from billing_oss.server import config
from tests.conftest import Broker, free_port, serving, wait_for_port, wait_until

A1 = "33611111111"


def voice(key: str) -> dict[str, Any]:
    return {"record_key": key, "kind": "voice", "event_time": "2026-03-02T10:00:00Z",
            "calling": A1, "called": "33612345678", "duration_s": 61}


def source_config(path: Path, broker: Broker, name: str, **extra: Any) -> Path:
    lines = [f"[sources.{name}]", 'type = "mqtt"', f'host = "{broker.host}"',
             f"port = {broker.port}", f'topics = ["usage/{name}/#"]',
             f'client_id = "test-{name}"', "reconnect_max_s = 1.0"]
    lines += [f"{k} = {msgspec.json.encode(v).decode()}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


async def publish(broker: Broker, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"pub-{uuid.uuid4().hex}",
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        for topic, body in messages:
            await client.publish(topic, body, qos=1)


async def count(pool: asyncpg.Pool, sql: str, *args: Any) -> int:
    value: int = await pool.fetchval(sql, *args)
    return value


@pytest.fixture(scope="module")
async def db(pool: asyncpg.Pool) -> asyncpg.Pool:
    return pool


@pytest.fixture
async def running(database_url: str, mqtt_broker: Broker, tmp_path: Path
                  ) -> AsyncIterator[str]:
    """A server in this process with one MQTT source; yields the source's name."""
    name = f"s{uuid.uuid4().hex[:10]}"
    async with serving(database_url, config_file=source_config(tmp_path / "c.toml", mqtt_broker,
                                                               name), stop_s=60):
        assert await wait_until(lambda: _subscribed(name), within=20)
        yield name


async def test_batch_single_msgpack_and_malformed(running: str, mqtt_broker: Broker,
                                                   db: asyncpg.Pool) -> None:
    name = running
    await publish(mqtt_broker, [
        (f"usage/{name}/voice", msgspec.json.encode({"records": [voice("b1"), voice("b2")]})),
        (f"usage/{name}/voice", b"{this is not json"),
        (f"usage/{name}/voice", msgspec.msgpack.encode(voice("m1"))),
        (f"usage/{name}/sms", msgspec.json.encode({"event_time": "2026-03-02T10:00:00Z",
                                                   "calling": A1, "called": "33612345678"})),
    ])
    sql = "SELECT count(*) FROM usage_keys WHERE source = $1"
    assert await wait_until(lambda: _equals(db, 4, sql, name), within=20)
    suspense = await db.fetchrow("SELECT reason, detail, raw FROM suspense WHERE source = $1"
                                 " AND reason = 'MALFORMED'", name)
    assert f"topic usage/{name}/voice" in suspense["detail"]
    assert bytes(suspense["raw"]) == b"{this is not json"
    # the sms took its kind from its topic
    kinds = await db.fetch("SELECT kind FROM usage_records WHERE source = $1 UNION ALL"
                           " SELECT record->>'kind' FROM suspense WHERE source = $1"
                           " AND reason <> 'MALFORMED' ORDER BY 1", name)
    assert [k["kind"] for k in kinds] == ["sms", "voice", "voice", "voice"]


async def test_malformed_array_goes_to_suspense_and_the_subscription_lives_on(
        running: str, mqtt_broker: Broker, db: asyncpg.Pool) -> None:
    name = running
    topic = f"usage/{name}/voice"
    await publish(mqtt_broker, [(topic, b"[1, }"), (topic, b"\x92\x01\xc1"),
                                (topic, msgspec.json.encode(voice("after1"))),
                                (topic, msgspec.json.encode(voice("after2")))])
    sql = "SELECT count(*) FROM usage_keys WHERE source = $1"
    assert await wait_until(lambda: _equals(db, 2, sql, name), within=20)
    rows = await db.fetch("SELECT detail, raw FROM suspense WHERE source = $1"
                          " AND reason = 'MALFORMED' ORDER BY detail", name)
    assert sorted(bytes(r["raw"]) for r in rows) == sorted([b"[1, }", b"\x92\x01\xc1"])
    assert all(r["detail"].startswith(f"topic {topic}: not a valid array") for r in rows)
    assert metrics.MQTT_RECONNECTS.labels(name)._value.get() == 0


async def test_a_record_naming_another_source_than_its_topic_is_rejected(
        running: str, mqtt_broker: Broker, db: asyncpg.Pool) -> None:
    name = running
    await publish(mqtt_broker, [
        (f"usage/{name}/voice", msgspec.json.encode({**voice("x1"), "source": "victim"})),
        (f"usage/{name}/voice", msgspec.json.encode({**voice("x2"), "source": name}))])
    sql = "SELECT count(*) FROM suspense WHERE source = $1 AND reason = 'BAD_FIELD'"
    assert await wait_until(lambda: _equals(db, 1, sql, name), within=20)
    detail = await db.fetchval("SELECT detail FROM suspense WHERE source = $1", name)
    assert f"source 'victim' is not this sender's source '{name}'" in detail
    assert await wait_until(lambda: _equals(
        db, 1, "SELECT count(*) FROM usage_keys WHERE source = $1 AND record_key = 'x2'", name),
        within=20)
    assert await count(db, "SELECT count(*) FROM usage_keys WHERE source = 'victim'"
                       " AND record_key = 'x1'") == 0


async def _subscribed(name: str, port: int | None = None) -> bool:
    """The source's subscription is in place (read from /metrics when in another process)."""
    if port is None:
        return bool(metrics.MQTT_CONNECTED.labels(name)._value.get())
    try:
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{port}/metrics") as r:
            return f'billing_mqtt_connected{{source="{name}"}} 1.0' in await r.text()
    except aiohttp.ClientError:
        return False


async def _equals(pool: asyncpg.Pool, expected: int, sql: str, *args: Any) -> bool:
    return await count(pool, sql, *args) == expected


async def test_broker_restart_mid_stream_loses_and_doubles_nothing(
        running: str, mqtt_broker: Broker, db: asyncpg.Pool) -> None:
    name = running
    first = [(f"usage/{name}/voice", msgspec.json.encode(
        {"records": [voice(f"a{i}-{j}") for j in range(20)]})) for i in range(300)]
    await publish(mqtt_broker, first)
    mqtt_broker.stop()  # while the server is still committing and acknowledging
    await asyncio.sleep(0.5)
    mqtt_broker.start()
    second = [(f"usage/{name}/voice", msgspec.json.encode(
        {"records": [voice(f"b{i}-{j}") for j in range(20)]})) for i in range(100)]
    await publish(mqtt_broker, second)
    sql = "SELECT count(*) FROM usage_keys WHERE source = $1"
    assert await wait_until(lambda: _equals(db, 8000, sql, name), within=60), \
        await count(db, sql, name)
    assert await count(db, "SELECT count(*) FROM source_offsets WHERE source = $1", name) == 400
    assert await count(db, "SELECT count(*) FROM usage_records WHERE source = $1", name) == 8000
    assert await count(db, "SELECT count(*) FROM suspense WHERE source = $1", name) == 0


async def test_sigkill_between_receive_and_commit_then_redelivery_exactly_once(
        database_url: str, mqtt_broker: Broker, db: asyncpg.Pool, tmp_path: Path) -> None:
    name = f"k{uuid.uuid4().hex[:10]}"
    conf = source_config(tmp_path / "c.toml", mqtt_broker, name, flush_ms=200,
                         batch_records=5000)
    messages = [(f"usage/{name}/voice", msgspec.json.encode(
        {"records": [voice(f"k{i}-{j}") for j in range(50)]})) for i in range(400)]

    def start() -> subprocess.Popen[bytes]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "billing_oss", "serve", "--config", str(conf),
             "--database-url", database_url, "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("BILLING_OSS_")})
        wait_for_port(port, timeout=60)
        ports.append(port)
        return proc

    ports: list[int] = []

    proc = start()
    try:
        assert await wait_until(lambda: _subscribed(name, ports[-1]), within=20)
        sql = "SELECT count(*) FROM usage_keys WHERE source = $1"
        publisher = asyncio.create_task(publish(mqtt_broker, messages))
        # Kill once some batches are committed and more are received but not yet committed.
        assert await wait_until(lambda: _positive(db, sql, name), within=30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = await count(db, sql, name)
        await publisher
        assert killed_at < 20000, "the server finished before it was killed"
        proc = start()
        assert await wait_until(lambda: _equals(db, 20000, sql, name), within=90), \
            await count(db, sql, name)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert await count(db, "SELECT count(*) FROM usage_records WHERE source = $1", name) == 20000
    assert await count(db, "SELECT count(*) FROM source_offsets WHERE source = $1", name) == 400
    charges = await count(db, "SELECT count(*) FROM charges c JOIN usage_records u"
                          " USING (account_id, usage_id) WHERE u.source = $1", name)
    assert charges == 20000


class _GatedSink:
    """The real pipeline, with the first commit held until ``release`` is set and, when
    ``fail_first``, then failing (as a dropped database connection would)."""

    def __init__(self, sink: Any, *, fail_first: bool = False) -> None:
        self.sink, self.fail_first = sink, fail_first
        self.release = asyncio.Event()
        self.calls = 0

    async def commit(self, deliveries: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            await self.release.wait()
            if self.fail_first:
                raise OSError("connection lost")
        return await self.sink.commit(deliveries)

    async def ingest_file(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def _run_gated(db: asyncpg.Pool, broker: Broker, monkeypatch: pytest.MonkeyPatch,
                     *, fail_first: bool) -> tuple[list[int], int, str, int]:
    """Three one-message batches committed concurrently, the first held back. Returns the
    packet ids acknowledged (in order), the acks seen while the first was held, the source
    name and the records committed meanwhile by the later batches."""
    import paho.mqtt.client as paho

    from billing_oss.adapters.mqtt import MqttAdapter
    from billing_oss.core.sources_config import MqttSource
    from billing_oss.server.composition import load_demo_catalog, make_pipeline

    acked: list[int] = []
    original = paho.Client.ack

    def ack(self: paho.Client, mid: int, qos: int) -> Any:
        acked.append(mid)
        return original(self, mid, qos)

    monkeypatch.setattr(paho.Client, "ack", ack)
    cfg = config.load(env={})
    await load_demo_catalog(cfg, db)
    name = f"g{uuid.uuid4().hex[:10]}"
    sink = _GatedSink(make_pipeline(cfg, db), fail_first=fail_first)
    source = MqttSource(host=broker.host, port=broker.port, topics=[f"usage/{name}/#"],
                        client_id=f"test-{name}", batch_records=1, flush_ms=0,
                        commits_in_flight=3, reconnect_min_s=0.05)
    adapter = MqttAdapter(name, source, sink, db)
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    try:
        assert await wait_until(lambda: _subscribed(name), within=20)
        await publish(broker, [(f"usage/{name}/voice", msgspec.json.encode(
            {"records": [voice(f"g{i}-{j}") for j in range(10)]})) for i in range(3)])
        sql = "SELECT count(*) FROM usage_keys WHERE source = $1"
        assert await wait_until(lambda: _equals(db, 20, sql, name), within=20)
        committed_meanwhile = await count(db, sql, name)
        await asyncio.sleep(0.2)  # acks the later batches would send, if they did not wait
        held = len(acked)
        sink.release.set()
        assert await wait_until(lambda: _equals(db, 30, sql, name), within=30)
        assert await wait_until(lambda: _true(adapter.committed >= 3), within=30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    return acked, held, name, committed_meanwhile


async def _true(value: bool) -> bool:
    return value


async def test_pipelined_commits_acknowledge_in_arrival_order(
        db: asyncpg.Pool, mqtt_broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    acked, held, name, meanwhile = await _run_gated(db, mqtt_broker, monkeypatch,
                                                    fail_first=False)
    assert meanwhile == 20  # the two later batches committed while the first was held...
    assert held == 0  # ...but acknowledged nothing before it
    assert acked == sorted(acked) and len(acked) == 3
    assert await count(db, "SELECT count(*) FROM source_offsets WHERE source = $1", name) == 3


async def test_failed_commit_acknowledges_nothing_after_it_and_redelivery_is_exact(
        db: asyncpg.Pool, mqtt_broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    acked, held, name, _ = await _run_gated(db, mqtt_broker, monkeypatch, fail_first=True)
    assert held == 0
    # The later batches were committed, yet not acknowledged: the broker sent all three
    # again on the new connection; two were replays, nothing doubled.
    assert await count(db, "SELECT count(*) FROM usage_records WHERE source = $1", name) == 30
    assert await count(db, "SELECT count(*) FROM source_offsets WHERE source = $1", name) == 3
    assert len(acked) >= 3


async def _positive(pool: asyncpg.Pool, sql: str, *args: Any) -> bool:
    return await count(pool, sql, *args) > 0


def test_shared_subscription_filters() -> None:
    from billing_oss.adapters.mqtt import MqttAdapter
    from billing_oss.core.sources_config import MqttSource

    cfg = MqttSource(shared_group="billing")
    adapter = MqttAdapter("n", cfg, None, None)  # type: ignore[arg-type]
    assert adapter.filters() == ["$share/billing/usage/#"]
    assert adapter.client_id == "billing-oss-n"


async def test_topic_without_kind_plain_text_and_foreign_source_go_to_the_topics_suspense(
        db: asyncpg.Pool, mqtt_broker: Broker) -> None:
    """A topic missing its <kind> level charges nothing; plain text is named as such, not as
    a MessagePack type error; a rejected record claiming another source is filed under the
    topic's source."""
    from billing_oss.adapters.mqtt import MqttAdapter
    from billing_oss.core.sources_config import MqttSource
    from billing_oss.server.composition import load_demo_catalog, make_pipeline

    cfg = config.load(env={})
    await load_demo_catalog(cfg, db)
    name = f"t{uuid.uuid4().hex[:10]}"
    device = f"{name}-dev"
    source = MqttSource(host=mqtt_broker.host, port=mqtt_broker.port,
                        topics=[f"usage/{name}/#", f"usage/{device}/#"],
                        client_id=f"test-{name}", flush_ms=0)
    adapter = MqttAdapter(name, source, make_pipeline(cfg, db), db)
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    try:
        assert await wait_until(lambda: _subscribed(name), within=20)
        await publish(mqtt_broker, [
            (f"usage/{name}", msgspec.json.encode(voice("nokind"))),
            (f"usage/{name}/bogus", msgspec.json.encode(voice("badkind"))),
            (f"usage/{name}/voice", b"hello, meter 7 here"),
            (f"usage/{device}/voice", msgspec.json.encode({**voice("f1"), "source": "victim"})),
            (f"usage/{device}/voice", msgspec.json.encode(voice("ok1")))])
        assert await wait_until(lambda: _true(adapter.committed >= 5), within=20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    rows = await db.fetch("SELECT source, reason, detail FROM suspense WHERE source = ANY($1)"
                          " ORDER BY suspense_id", [name, device, "victim"])
    found = [(r["source"], r["reason"], r["detail"]) for r in rows]
    assert len(found) == 4, found

    def one(text: str) -> tuple[str, str, str]:
        [row] = [f for f in found if text in f[2]]
        return row

    assert one(f"topic 'usage/{name}' has no <kind> level")[:2] == (name, "MALFORMED")
    assert one("kind 'bogus' is not one of")[:2] == (name, "MALFORMED")
    text = one("got one starting with b'hello, meter 7 here'")
    assert text[0] == name and "expected a JSON object or array" in text[2]
    assert "Expected" not in text[2]
    assert one("source 'victim' is not this sender's source")[:2] == (device, "BAD_FIELD")
    keys = await db.fetch("SELECT source, record_key FROM usage_keys WHERE source = ANY($1)",
                          [name, device, "victim"])
    assert [tuple(k) for k in keys] == [(device, "ok1")]
