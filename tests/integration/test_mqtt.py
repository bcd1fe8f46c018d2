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

from server import config, metrics
from server.service import serve
from tests.conftest import Broker, free_port, wait_for_port, wait_until

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
    cfg = config.load(source_config(tmp_path / "c.toml", mqtt_broker, name), env={},
                      overrides={"database.url": database_url, "http.port": free_port()})
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(cfg, stop, started=started))
    await asyncio.wait_for(started.wait(), 60)
    assert await wait_until(lambda: _subscribed(name), within=20)
    yield name
    stop.set()
    await asyncio.wait_for(task, 60)


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
            [sys.executable, "-m", "server.cli", "serve", "--config", str(conf),
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


async def _positive(pool: asyncpg.Pool, sql: str, *args: Any) -> bool:
    return await count(pool, sql, *args) > 0


def test_shared_subscription_filters() -> None:
    from adapters.mqtt import MqttAdapter
    from server.sources_config import MqttSource

    cfg = MqttSource(shared_group="billing")
    adapter = MqttAdapter("n", cfg, None, None)  # type: ignore[arg-type]
    assert adapter.filters() == ["$share/billing/usage/#"]
    assert adapter.client_id == "billing-oss-n"
