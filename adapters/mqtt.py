"""MQTT intake: QoS 1 subscriptions whose PUBACKs wait for the database commit.

The client connects with MQTT v5, a fixed client id, ``clean_start=False`` and a session
expiry, so the broker keeps every unacknowledged message across a crash or a restart of
either side and sends it again. Paho's automatic acknowledgement is turned off: messages
are gathered into batches (``batch_records`` records, or ``flush_ms`` after the first one),
each batch is committed through the pipeline in one transaction, and only then are its
messages acknowledged, in arrival order. Up to ``commits_in_flight`` batches commit at once
(the next batch is gathered and validated while the database writes the earlier ones); a
batch's acknowledgements wait for every earlier batch's, so PUBACKs still follow arrival
order, and a failed commit acknowledges nothing after it. A redelivered message has the
same position (its topic and payload digest), so the pipeline recognises it and nothing is
doubled.

The broker never has more than ``receive_maximum`` unacknowledged messages out to us (MQTT
v5 flow control), which bounds what waits here. A lost connection is retried with
exponential backoff; acknowledgements of messages received on the old connection are
dropped (their packet ids mean nothing on the new one; the broker resends them instead).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import aiomqtt
import asyncpg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from billing_oss.adapters import intake
from billing_oss.core.contract import Delivery, Sink
from billing_oss.core.db_failures import TRANSIENT
from billing_oss.core.metrics import MQTT_ACKED, MQTT_CONNECTED, MQTT_LATENCY, MQTT_RECONNECTS
from billing_oss.core.sources_config import DEFAULT_SHARED_GROUP, MqttSource

log = logging.getLogger(__name__)


class CommitFailed(Exception):
    """The pipeline could not commit a batch: reconnect, and the broker sends it again."""


# A session ending so (the broker, or PostgreSQL while storing meter readings) reconnects.
_SESSION_FAILURES: tuple[type[BaseException], ...] = (aiomqtt.MqttError, CommitFailed,
                                                      *TRANSIENT)

_KINDS = ("voice", "sms", "data", "event")


@dataclass(slots=True)
class _Received:
    client: aiomqtt.Client
    mid: int
    qos: int
    delivery: Delivery
    received: float  # monotonic time of arrival


class MqttAdapter:
    """One MQTT source: ``run(stop)`` until ``stop`` is set, then finish the batch in hand."""

    def __init__(self, name: str, config: MqttSource, sink: Sink, pool: asyncpg.Pool) -> None:
        self.name = name
        self.config = config
        self.sink = sink
        self.pool = pool
        self.client_id = config.client_id or f"billing-oss-{name}"
        self.committed = 0  # messages acknowledged since start (tests and benchmarks read it)

    def filters(self) -> list[str]:
        group = self.config.shared_group
        return [f"$share/{group}/{t}" if group else t for t in self.config.topics]

    def stale_filters(self) -> list[str]:
        """The other form of the filters, which a persistent session may still hold from a
        run with another number of workers: kept, it would send this client every message
        a second time."""
        if self.config.shared_group:
            return list(self.config.topics)
        return [f"$share/{DEFAULT_SHARED_GROUP}/{t}" for t in self.config.topics]

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self.config.reconnect_min_s
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff = self.config.reconnect_min_s
            except _SESSION_FAILURES as exc:
                MQTT_CONNECTED.labels(self.name).set(0)
                MQTT_RECONNECTS.labels(self.name).inc()
                log.warning("mqtt connection lost; retrying", extra={"fields": {
                    "source": self.name, "error": str(exc), "retry_in_s": round(backoff, 2)}})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.config.reconnect_max_s)

    async def _session(self, stop: asyncio.Event) -> None:
        cfg = self.config
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = cfg.session_expiry_s
        properties.ReceiveMaximum = cfg.receive_maximum
        client = aiomqtt.Client(
            cfg.host, cfg.port, identifier=self.client_id, protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False, properties=properties, username=cfg.username or None,
            password=cfg.password or None, keepalive=30, timeout=10,
        )
        client._client.manual_ack_set(True)
        async with client:
            for topic in self.filters():
                await client.subscribe(topic, qos=1)
            for topic in self.stale_filters():
                await client.unsubscribe(topic)
            MQTT_CONNECTED.labels(self.name).set(1)
            log.info("mqtt subscribed", extra={"fields": {
                "source": self.name, "broker": f"{cfg.host}:{cfg.port}", "topics": self.filters(),
                "client_id": self.client_id}})
            inbox: asyncio.Queue[_Received] = asyncio.Queue()
            reader = asyncio.create_task(self._read(client, inbox), name=f"mqtt-read-{self.name}")
            stopping = asyncio.create_task(stop.wait())
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            in_flight: collections.deque[asyncio.Task[None]] = collections.deque()
            try:
                while True:
                    batch = await self._gather(inbox, (reader, stopping, failed))
                    if batch:
                        previous = in_flight[-1] if in_flight else None
                        task = asyncio.create_task(self._commit(batch, previous))
                        task.add_done_callback(functools.partial(_on_commit_done, failed))
                        in_flight.append(task)
                    while in_flight and (in_flight[0].done()
                                         or len(in_flight) >= self.config.commits_in_flight):
                        await asyncio.wait([in_flight[0]])
                        in_flight.popleft().result()  # a failed commit ends the session
                    if stopping.done() or reader.done():
                        break
                while in_flight:  # stopping: the batches in hand commit and acknowledge
                    await asyncio.wait([in_flight[0]])
                    in_flight.popleft().result()
            finally:
                stopping.cancel()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                for task in in_flight:  # a commit failed: what follows it is not acknowledged
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)
            if not stop.is_set() and reader.done() and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]
            # Stopping: what was received but not gathered stays unacknowledged; the broker
            # sends it again to whichever worker holds the session next.

    async def _read(self, client: aiomqtt.Client, inbox: asyncio.Queue[_Received]) -> None:
        async for message in client.messages:
            topic = message.topic.value
            body = message.payload if isinstance(message.payload, bytes) else (
                str(message.payload).encode())
            position = intake.content_position(topic.encode(), body)
            levels = topic.split("/")
            source = levels[1] if len(levels) > 1 and levels[1] else self.name
            kind = levels[2] if len(levels) > 2 else ""
            if kind in _KINDS:
                delivery = await intake.to_delivery(
                    self.pool, body, source=source, position=position, where=f"topic {topic}",
                    kind=kind, key_prefix=position)
            else:  # the topic decides what is charged: without its kind level nothing is
                delivery = intake.refused(
                    body, source=source, position=position, where=f"topic {topic}",
                    why=f"topic {topic!r} has no <kind> level (usage/<source>/<kind>, kind one"
                        f" of {', '.join(_KINDS)})" if not kind else
                        f"topic {topic!r}: kind {kind!r} is not one of {', '.join(_KINDS)}")
            delivery = Delivery(source=self.name, position=position, records=delivery.records,
                                rejects=delivery.rejects)
            await inbox.put(_Received(client, message.mid, message.qos, delivery,
                                      time.monotonic()))

    async def _gather(self, inbox: asyncio.Queue[_Received],
                      ends: tuple[asyncio.Future[Any], ...]) -> list[_Received]:
        """The next batch: at least one message (unless one of ``ends`` is done: stopping,
        the reader ended, a commit failed), then more until ``batch_records`` records or
        ``flush_ms`` after the first."""
        batch: list[_Received] = []
        if inbox.empty():
            getter = asyncio.ensure_future(inbox.get())
            await asyncio.wait([getter, *ends], return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                return self._drain(inbox, batch)
            batch.append(getter.result())
        else:
            batch.append(inbox.get_nowait())
        deadline = batch[0].received + self.config.flush_ms / 1000
        records = len(batch[0].delivery.records)
        while records < self.config.batch_records:
            if inbox.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or any(end.done() for end in ends):
                    break
                try:
                    item = await asyncio.wait_for(inbox.get(), remaining)
                except TimeoutError:
                    break
            else:
                item = inbox.get_nowait()
            batch.append(item)
            records += len(item.delivery.records) + len(item.delivery.rejects)
        return batch

    @staticmethod
    def _drain(inbox: asyncio.Queue[_Received], batch: list[_Received]) -> list[_Received]:
        while not inbox.empty():
            batch.append(inbox.get_nowait())
        return batch

    async def _commit(self, batch: list[_Received], previous: asyncio.Task[None] | None
                      ) -> None:
        """Commit ``batch``; acknowledge its messages once ``previous`` (the batch before
        it) is acknowledged — if that one failed, this one fails too, unacknowledged."""
        try:
            await self.sink.commit([r.delivery for r in batch])
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise CommitFailed(f"commit of {len(batch)} messages failed: {exc}") from exc
        if previous is not None:
            await previous
        now = time.monotonic()
        for item in batch:  # arrival order
            if item.qos > 0:
                item.client._client.ack(item.mid, item.qos)
            MQTT_LATENCY.labels(self.name).observe(now - item.received)
        MQTT_ACKED.labels(self.name).inc(len(batch))
        self.committed += len(batch)


def _on_commit_done(failed: asyncio.Future[None], task: asyncio.Task[None]) -> None:
    """Wake the session up as soon as a commit fails: it ends the session."""
    if not failed.done() and not task.cancelled() and task.exception() is not None:
        failed.set_result(None)
