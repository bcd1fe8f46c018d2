"""Provisioning commands over MQTT against a real Mosquitto and PostgreSQL: dunning's
suspension reaches a subscriber from inside ``serve`` with the account's state retained; a
broker restart in the middle of a stream loses nothing; each account's commands arrive in
order."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiomqtt
import asyncpg
import msgspec
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from billing_oss.server.collections import dunning, payments
from billing_oss.server.collections.dunning import Step
from billing_oss.server.collections.model import NewPayment
from billing_oss.server.integrations import events, outbox
from billing_oss.server.store import api_keys
from tests.conftest import Broker, serving, wait_until
from tests.integration import collections_seed as seed

EUR = 1_000_000


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    b = Broker(tmp_path_factory.mktemp("provisioning-broker"))
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A device: a persistent MQTT v5 session (QoS 1) that reconnects when the broker goes
    away, keeping every message it receives, in arrival order."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.broker, self.topic = broker, topic
        self.client_id = f"device-{uuid.uuid4().hex[:8]}"
        self.received: list[dict[str, Any]] = []
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = 3600
                async with aiomqtt.Client(self.broker.host, self.broker.port,
                                          identifier=self.client_id, clean_start=False,
                                          protocol=aiomqtt.ProtocolVersion.V5,
                                          properties=props) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        self.received.append(msgspec.json.decode(message.payload))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def subscribed(broker: Broker, topic: str) -> AsyncIterator[Subscriber]:
    sub = Subscriber(broker, topic)
    task = asyncio.create_task(sub.run())
    await asyncio.wait_for(sub.subscribed.wait(), 10)
    try:
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def retained(broker: Broker, topic: str) -> tuple[dict[str, Any], bool]:
    """What a device connecting now gets on ``topic`` (the retained message)."""
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5
                              ) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                return msgspec.json.decode(message.payload), message.retain
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
async def server(pool: asyncpg.Pool, database_url: str, broker: Broker
                 ) -> AsyncIterator[str]:
    async with serving(database_url, {
            "provisioning.enabled": True, "provisioning.host": broker.host,
            "provisioning.port": broker.port, "provisioning.poll_interval_s": 0.1,
            "provisioning.reconnect_max_s": 1.0, "provisioning.batch": 100}) as url:
        yield url


async def test_dunning_suspension_reaches_a_device_with_its_state_retained(
        server: str, pool: asyncpg.Pool, broker: Broker) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "S1")
        invoice_id = await seed.invoice(conn, "S1", 120 * EUR, dt.date(2026, 1, 5),
                                        tax_micros=20 * EUR)
        async with conn.transaction():
            await dunning.put_ladder(conn, "test", "default",
                                     [Step(day=20, action="suspend")])
    async with subscribed(broker, "provisioning/S1/command") as device:
        async with pool.acquire() as conn:
            result = await dunning.run(conn, "test", dt.date(2026, 2, 15))
        assert result.suspended == ["S1"]
        await wait_until(lambda: _ready(device.received), within=10)
        (command,) = device.received
        assert command["command"] == "suspend" and command["account_id"] == "S1"
        assert command["invoice_ids"] == [invoice_id] and command["event_id"].startswith("evt_")
        state, was_retained = await retained(broker, "provisioning/S1/state")
        assert was_retained and state["state"] == "suspended"
        assert state["event_id"] == command["event_id"]

        # paying the debt lifts the suspension: a resume, and the retained state follows
        await payments.record(pool, "test", NewPayment(
            account_id="S1", amount_micros=120 * EUR, received_on=dt.date(2026, 2, 20),
            method="transfer"))
        await wait_until(lambda: _ready(device.received, 2), within=10)
        assert [c["command"] for c in device.received] == ["suspend", "resume"]
        assert device.received[1]["seq"] > device.received[0]["seq"]
    state, was_retained = await retained(broker, "provisioning/S1/state")
    assert was_retained and state["state"] == "active"


async def test_an_operator_command_goes_out_the_same_way(
        server: str, pool: asyncpg.Pool, broker: Broker) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "S2")
    token = (await api_keys.create(pool, "operator", name="noc")).token
    async with subscribed(broker, "provisioning/S2/command") as device:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            async with http.post(f"{server}/v1/accounts/S2/provisioning", json={
                    "action": "terminate", "reason": "contract ended"}) as r:
                assert r.status == 202, await r.text()
                out = await r.json()
            async with http.post(f"{server}/v1/accounts/nobody/provisioning", json={
                    "action": "suspend", "reason": "x"}) as r:
                assert r.status == 404
        assert out["command_topic"] == "provisioning/S2/command"
        await wait_until(lambda: _ready(device.received), within=10)
        assert device.received[0]["command"] == "terminate"
        assert device.received[0]["event_id"] == out["event_id"]
        assert device.received[0]["reason"] == "contract ended"
    state, _ = await retained(broker, "provisioning/S2/state")
    assert state["state"] == "terminated"


async def test_broker_restart_mid_stream_loses_nothing_and_keeps_order_per_account(
        server: str, pool: asyncpg.Pool, broker: Broker) -> None:
    accounts = [f"R{i}" for i in range(5)]
    async with pool.acquire() as conn:
        for a in accounts:
            await seed.account(conn, a)
    n = 400  # per account, alternating suspend and resume
    items: list[tuple[events.DomainEvent, str]] = []
    for i in range(n):
        for a in accounts:
            event = (events.AccountSuspend(reason=f"r{i}", invoice_ids=[i]) if i % 2 == 0
                     else events.AccountResume(reason=f"r{i}"))
            items.append((event, a))
    async with pool.acquire() as conn, conn.transaction():
        ids = await outbox.emit_many(conn, items)

    streams = [f"acct:{a}" for a in accounts]

    async def delivered() -> int:
        done: int = await pool.fetchval("SELECT coalesce(sum(seq), 0) FROM provisioning_cursors"
                                        " WHERE stream = ANY($1::text[])", streams)
        return done

    async with subscribed(broker, "provisioning/+/command") as device:
        assert await wait_until(lambda: _above(delivered, 300), within=30, interval=0.01)
        broker.stop()  # mid-stream: the publisher is cut off between two events
        stopped_at = await delivered()
        await asyncio.sleep(1.0)
        broker.start()
        mine = set(ids)
        assert await wait_until(lambda: _seen(device.received, mine), within=60), (
            f"{len(mine - {m['event_id'] for m in device.received})} events never arrived")
    assert stopped_at < len(ids)  # the restart really came in the middle
    by_account: dict[str, list[int]] = {}
    seen: set[str] = set()
    for m in device.received:
        if m["event_id"] in mine and m["event_id"] not in seen:  # duplicates: at least once
            seen.add(m["event_id"])
            by_account.setdefault(m["account_id"], []).append(m["seq"])
    for account, seqs in by_account.items():
        assert seqs == sorted(seqs) and len(seqs) == n, account

    async def caught_up() -> bool:
        # The cursor moves in its own commit after the broker's ack: the device may hold an
        # account's last event a moment before its cursor says so.
        cursors = await pool.fetch(
            "SELECT c.seq AS done, h.seq AS head FROM provisioning_cursors c"
            " JOIN outbox_heads h USING (stream) WHERE stream = ANY($1::text[])",
            [f"acct:{a}" for a in accounts])
        return len(cursors) == 5 and all(r["done"] == r["head"] for r in cursors)

    assert await wait_until(caught_up, within=30)


async def _ready(received: list[Any], count: int = 1) -> bool:
    return len(received) >= count


async def _above(measure: Any, count: int) -> bool:
    return bool(await measure() >= count)


async def _seen(received: list[dict[str, Any]], ids: set[str]) -> bool:
    return ids <= {m["event_id"] for m in received}

