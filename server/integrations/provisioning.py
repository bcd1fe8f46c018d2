"""Provisioning commands over MQTT: the outbox's ``account.suspend``, ``account.resume`` and
``account.terminate`` events (dunning's, and an operator's ``send``) published to the
network elements and meters that act on them.

For each event, in order per account, at least once:

- ``<prefix>/<account>/command`` (QoS 1, not retained): what to do now;
- ``<prefix>/<account>/state`` (QoS 1, retained): what the account's service should be, so
  a device that connects later learns it at once.

Both carry JSON: ``{"event_id", "account_id", "seq", "command" | "state", "reason",
"invoice_ids", "issued_at"}``; ``seq`` is the event's number in the account's stream, rising
by account, and ``event_id`` its stable id (a device drops what it has seen: delivery is at
least once). The stream's cursor (``provisioning_cursors``) moves past an event only after
the broker acknowledged both publishes, so a crash, a lost connection or a broker restart
publishes again from the first unacknowledged event. One process publishes at a time (a
PostgreSQL advisory lock); the others stand by.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from collections.abc import AsyncIterator
from typing import Literal

import aiomqtt
import asyncpg
import msgspec

from billing_oss.core.errors import NotFound
from billing_oss.server.config import ProvisioningConfig
from billing_oss.server.integrations import events, outbox
from billing_oss.server.integrations import provisioning_repo as repo
from billing_oss.server.integrations.repo import StoredEvent
from billing_oss.server.store import audit

log = logging.getLogger(__name__)

Action = Literal["suspend", "resume", "terminate"]
# event type -> (command, the state it leaves the account's service in)
COMMANDS: dict[str, tuple[str, str]] = {
    "account.suspend": ("suspend", "suspended"),
    "account.resume": ("resume", "active"),
    "account.terminate": ("terminate", "terminated"),
}
assert tuple(COMMANDS) == repo.TYPES
INFLIGHT = 200  # QoS 1 publishes awaiting their PUBACK at once


class Command(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    account_id: str
    seq: int
    command: str
    reason: str
    invoice_ids: list[int]
    issued_at: str  # RFC 3339 UTC: when the event was emitted


class State(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    account_id: str
    seq: int
    state: str
    reason: str
    issued_at: str


class _Payload(msgspec.Struct, frozen=True):
    reason: str = ""
    invoice_ids: list[int] = []


def messages(event: StoredEvent, prefix: str) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """The (topic, payload) of an event's command and of its retained state."""
    command, state = COMMANDS[event.type]
    body = msgspec.json.decode(event.payload, type=_Payload)
    account = event.account_id or ""
    issued = event.occurred_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    cmd = Command(event_id=event.event_id, account_id=account, seq=event.seq, command=command,
                  reason=body.reason, invoice_ids=body.invoice_ids, issued_at=issued)
    st = State(event_id=event.event_id, account_id=account, seq=event.seq, state=state,
               reason=body.reason, issued_at=issued)
    base = f"{prefix}/{account}"
    return ((f"{base}/command", msgspec.json.encode(cmd)),
            (f"{base}/state", msgspec.json.encode(st)))


class Publisher:
    """Reads the outbox and publishes until ``stop``; reconnects with backoff."""

    def __init__(self, pool: asyncpg.Pool, config: ProvisioningConfig) -> None:
        self.pool, self.config = pool, config
        self.published = 0  # events acknowledged since start (tests read it)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self.config.reconnect_min_s
        while not stop.is_set():
            try:
                async with self._leading(stop) as leading:
                    if leading:
                        await self._session(stop)
                backoff = self.config.reconnect_min_s
            except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
                log.warning("provisioning broker unreachable; retrying", extra={"fields": {
                    "broker": f"{self.config.host}:{self.config.port}", "error": str(exc),
                    "retry_in_s": round(backoff, 2)}})
                await _pause(stop, backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.config.reconnect_max_s)

    @contextlib.asynccontextmanager
    async def _leading(self, stop: asyncio.Event) -> AsyncIterator[bool]:
        """Yields True while this process holds the publisher's lock; False after a pause
        when another holds it."""
        async with self.pool.acquire() as conn:
            if not await repo.try_lead(conn):
                await _pause(stop, max(self.config.poll_interval_s, 1.0))
                yield False
                return
            try:
                yield True
            finally:
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError,
                                         OSError):
                    await repo.unlead(conn)

    async def _session(self, stop: asyncio.Event) -> None:
        cfg = self.config
        client = aiomqtt.Client(
            cfg.host, cfg.port, identifier=cfg.client_id, protocol=aiomqtt.ProtocolVersion.V5,
            username=cfg.username or None, password=cfg.password or None, keepalive=30,
            timeout=cfg.publish_timeout_s, max_inflight_messages=INFLIGHT)
        async with client:
            log.info("provisioning publisher connected", extra={"fields": {
                "broker": f"{cfg.host}:{cfg.port}"}})
            while not stop.is_set():
                if await self.deliver(client) < cfg.batch:
                    await _pause(stop, cfg.poll_interval_s)

    async def deliver(self, client: aiomqtt.Client) -> int:
        """Publish what is pending, one batch; returns how many events were read.

        The batch's publishes go out pipelined, in order (the broker keeps one client's
        order); each stream's cursor then moves to its last event whose messages were all
        acknowledged, and not past the first that was not."""
        pending = await repo.pending(self.pool, self.config.batch)
        sends = [asyncio.ensure_future(client.publish(
                     topic, payload, qos=1, retain=topic.endswith("/state"),
                     timeout=self.config.publish_timeout_s))
                 for event in pending
                 for topic, payload in messages(event, self.config.topic_prefix)]
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
        done: dict[str, int] = {}
        broken: set[str] = set()
        failure: BaseException | None = None
        for i, event in enumerate(pending):
            error = next((o for o in outcomes[2 * i:2 * i + 2] if isinstance(o, BaseException)),
                         None)
            if error is not None:
                failure = failure or error
                broken.add(event.stream)
            elif event.stream not in broken:
                done[event.stream] = event.seq
                self.published += 1
        await repo.advance(self.pool, done)
        if failure is not None:
            raise failure
        return len(pending)


async def send(pool: asyncpg.Pool, actor: str, account_id: str, action: Action,
               reason: str) -> str:
    """An operator's command: the event goes out like dunning's; returns its id."""
    event: events.DomainEvent
    if action == "suspend":
        event = events.AccountSuspend(reason=reason, invoice_ids=[])
    elif action == "resume":
        event = events.AccountResume(reason=reason)
    else:
        event = events.AccountTerminate(reason=reason, invoice_ids=[])
    async with pool.acquire() as conn, conn.transaction():
        if not await repo.account_exists(conn, account_id):
            raise NotFound(f"no account {account_id}")
        event_id = await outbox.emit(conn, event, account_id=account_id)
        await audit.record(conn, actor, f"provisioning.{action}", f"account:{account_id}",
                           None, {"event_id": event_id, "reason": reason})
    return event_id


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
