"""The webhook delivery worker: outbox → deliveries → signed POSTs, at least once, in order
per endpoint and stream (an account's events arrive in the order they committed).

One process delivers at a time (a PostgreSQL advisory lock; the others stand by), so order
is kept without row locks. Its parts, all on the server's event loop:

- an ``OutboxFollower`` (``cursors``) turns each committed event into one pending delivery
  per subscribed endpoint, in the transaction that moves its cursor;
- a scheduler keeps, per endpoint and stream, the queue of pending deliveries and sends the
  head of each: never two of one stream at once, at most ``max_concurrency`` per endpoint
  and ``webhooks.concurrency`` in all, so a slow or failing receiver holds its own streams
  and nothing else;
- a failed attempt (timeout, error, non-2xx, redirect) is retried after the configured
  pauses, then dead-lettered and the stream moves on; an endpoint dead-lettered
  ``disable_after_dead_letters`` times in a row is disabled, with an event saying so;
- every attempt's outcome is written in batches (the delivery log). A crash between a
  receiver's 2xx and that write sends the event again after restart: at least once; the
  ``webhook-id`` header lets the receiver drop the repeat.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
from typing import Any

import aiohttp
import asyncpg
import msgspec

from billing_oss.server.config import WebhooksConfig
from billing_oss.server.integrations import outbox, webhook_repo
from billing_oss.server.integrations.cursors import OutboxFollower
from billing_oss.server.integrations.events import WebhookEndpointDisabled
from billing_oss.server.integrations.repo import StoredEvent
from billing_oss.server.integrations.targets import (
    PolicyResolver,
    Signer,
    TargetRefused,
    check_url,
)
from billing_oss.server.integrations.webhook_repo import Delivery, LiveEndpoint, Outcome
from billing_oss.server.store.pool import Connection

log = logging.getLogger(__name__)

CONSUMER = "webhooks"
LEADER_LOCK = 0x77656268  # pg_advisory_lock key of the one delivering process ("webh")
FLUSH_S = 0.05
Key = tuple[int, str]  # (endpoint_id, stream)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def body_of(d: Delivery) -> str:
    """The POST body: the event's envelope around its stored payload (not re-encoded)."""
    enc = msgspec.json.encode
    return (f'{{"id":{enc(d.event_id).decode()},"type":{enc(d.event_type).decode()},'
            f'"version":{d.version},"timestamp":{enc(d.occurred_at).decode()},'
            f'"account_id":{enc(d.account_id).decode()},"stream":{enc(d.stream).decode()},'
            f'"seq":{d.seq},"data":{d.payload}}}')


class _Endpoint:
    def __init__(self, live: LiveEndpoint, settings: WebhooksConfig) -> None:
        self.in_flight = 0  # attempts in flight hold this object: it is updated, not replaced
        self.update(live, settings)

    def update(self, live: LiveEndpoint, settings: WebhooksConfig) -> None:
        self.live = live
        self.signer = Signer(live.secrets)
        try:
            check_url(live.url, allow_http=settings.allow_http,
                      allow_private=settings.allow_private)
            self.refused: str | None = None
        except TargetRefused as exc:
            self.refused = str(exc)  # the configuration changed since it was registered


class WebhookDeliverer:
    def __init__(self, pool: asyncpg.Pool, settings: WebhooksConfig) -> None:
        self.pool = pool
        self.settings = settings
        self._endpoints: dict[int, _Endpoint] = {}
        self._queues: dict[Key, collections.deque[Delivery]] = {}
        self._ready: dict[int, collections.deque[str]] = {}
        self._busy: set[Key] = set()  # head in flight or waiting for its retry
        self._known: dict[int, int] = {}  # delivery id → endpoint, held until logged
        # Per endpoint: deliveries held (at most webhooks.in_memory); past that, new ones stay
        # in the table only ("overflow") until a refill reads them back in delivery order.
        self._held: dict[int, int] = {}
        self._overflow: set[int] = set()
        self._loading: dict[int, list[Delivery]] = {}  # endpoint → committed during a refill
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcomes: list[Outcome] = []
        # Deliveries finished (their outcome written) while a read of pending deliveries was
        # in flight: that read may still hold them as pending, and must not send them again.
        self._reads = 0
        self._finished: set[int] = set()
        self._outcome_ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._staged: list[Delivery] = []
        self._total = 0
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None
        self.leading = asyncio.Event()  # set while this process holds the delivery lock

    # --- running --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, whenever this process holds the lock."""
        while not stop.is_set():
            try:
                async with self.pool.acquire() as lock_conn:
                    if await webhook_repo.try_lead(lock_conn, LEADER_LOCK):
                        try:
                            await self._lead(stop, lock_conn)
                        finally:
                            with contextlib.suppress(Exception):
                                await webhook_repo.stop_leading(lock_conn, LEADER_LOCK)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("webhook delivery lost the database; retrying",
                            extra={"fields": {"error": str(exc)}})
            except Exception:  # a defect must not end delivery for the process's life
                log.exception("webhook delivery failed; restarting it")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)

    async def _lead(self, stop: asyncio.Event, lock_conn: Connection) -> None:
        log.info("delivering webhooks")
        self.leading.set()
        self._stopping = False
        inner_stop = asyncio.Event()
        await lock_conn.add_listener(webhook_repo.CHANGED, self._on_changed)
        connector = aiohttp.TCPConnector(limit=self.settings.concurrency, limit_per_host=0,
                                         resolver=PolicyResolver(self.settings.allow_private))
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s))
        follower = OutboxFollower(self.pool, CONSUMER, self._fan_out, committed=self._commit,
                                  rescan_s=self.settings.rescan_s)
        try:
            await self._reload(everything=True)
            workers = [asyncio.create_task(follower.run(inner_stop), name="webhook-follower"),
                       asyncio.create_task(self._write_outcomes(inner_stop),
                                           name="webhook-log"),
                       asyncio.create_task(self._watch(inner_stop, lock_conn),
                                           name="webhook-watch")]
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*workers, stopped],
                                         return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            await self._wind_down(inner_stop, workers)
            for task in done:
                if task is not stopped and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            self.leading.clear()
            await self._session.close()
            self._session = None
            with contextlib.suppress(Exception):
                await lock_conn.remove_listener(webhook_repo.CHANGED, self._on_changed)
            self._forget_all()

    async def _wind_down(self, inner_stop: asyncio.Event, workers: list[asyncio.Task[Any]]
                         ) -> None:
        """Stop starting attempts, let those in flight finish (bounded by their timeout),
        write their outcomes, then stop the follower and the writer."""
        self._stopping = True
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.settings.timeout_s + 1)
        inner_stop.set()
        self._outcome_ready.set()
        _, late = await asyncio.wait(workers, timeout=10)
        for task in late:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _forget_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        self._timers.clear()
        self._queues.clear()
        self._ready.clear()
        self._busy.clear()
        self._known.clear()
        self._held.clear()
        self._overflow.clear()
        self._loading.clear()
        self._endpoints.clear()
        self._outcomes.clear()
        self._total = 0

    def _on_changed(self, *_: object) -> None:
        self._changed.set()

    async def _watch(self, stop: asyncio.Event, lock_conn: Connection) -> None:
        """Reload endpoints (and replayed deliveries) when they change, and every
        ``rescan_s`` so an expired secret stops signing; notice a lost lock connection."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.settings.rescan_s)
            if stop.is_set():
                return
            if lock_conn.is_closed():
                raise ConnectionError("the delivery lock's connection closed")
            self._changed.clear()
            await self._reload(everything=False)

    async def _reload(self, *, everything: bool) -> None:
        self._reads += 1
        found: list[Delivery] = []
        try:
            async with self.pool.acquire() as conn:
                live = await webhook_repo.live_endpoints(conn)
                for e in live:  # at start: what is pending; later: what was replayed
                    if everything or not (e.endpoint_id in self._overflow
                                          or e.endpoint_id in self._loading):
                        found += await webhook_repo.pending(
                            conn, e.endpoint_id, replays_only=not everything,
                            exclude=[], limit=self.settings.in_memory + 1)
        finally:
            found = self._unfinished(found)
        old, self._endpoints = self._endpoints, {}
        for e in live:
            if ep := old.get(e.endpoint_id):
                ep.update(e, self.settings)
            else:
                ep = _Endpoint(e, self.settings)
            self._endpoints[e.endpoint_id] = ep
        for key in [k for k in self._queues if k[0] not in self._endpoints]:
            self._drop(key)  # the endpoint was deleted
        self._take(found)

    # --- the outbox side ------------------------------------------------------------------

    async def _fan_out(self, conn: Connection, events: list[StoredEvent]) -> None:
        self._staged = await webhook_repo.fan_out(conn, events)

    def _commit(self) -> None:
        staged, self._staged = self._staged, []
        self._take(staged)

    def _take(self, deliveries: list[Delivery]) -> None:
        """Hold ``deliveries`` (in delivery order) up to each endpoint's limit; an endpoint
        past it overflows: its later deliveries wait in the table for ``_refill``."""
        for d in deliveries:
            eid = d.endpoint_id
            if eid in self._loading:
                self._loading[eid].append(d)
            elif eid in self._overflow:
                continue
            elif self._held.get(eid, 0) >= self.settings.in_memory:
                self._overflow.add(eid)
            else:
                self._enqueue(d)
        self._pump()

    def _unfinished(self, found: list[Delivery]) -> list[Delivery]:
        """End a read of pending deliveries: those of ``found`` not finished meanwhile."""
        found = [d for d in found if d.delivery_id not in self._finished]
        self._reads -= 1
        if not self._reads:
            self._finished.clear()
        return found

    def _forget(self, delivery_id: int) -> None:
        eid = self._known.pop(delivery_id, None)
        if eid is None:
            return
        self._held[eid] -= 1
        if (eid in self._overflow and eid not in self._loading
                and self._held[eid] <= self.settings.in_memory // 2):
            self._loading[eid] = []  # from now on, until the refill has read the table
            self._overflow.discard(eid)
            task = asyncio.create_task(self._refill(eid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _refill(self, eid: int) -> None:
        """Read an overflowing endpoint's next pending deliveries back, in delivery order.
        Those committed meanwhile join them if the table held no more."""
        room = self.settings.in_memory - self._held.get(eid, 0)
        self._reads += 1
        try:
            async with self.pool.acquire() as conn:
                found = await webhook_repo.pending(
                    conn, eid, replays_only=False,
                    exclude=[i for i, e in self._known.items() if e == eid], limit=room)
        except BaseException:
            self._unfinished([])
            self._loading.pop(eid, None)
            self._overflow.add(eid)
            raise
        found = self._unfinished(found)
        meanwhile = self._loading.pop(eid)
        more = len(found) >= room  # more wait in the table: later ones come after them
        if not more:
            seen = {d.delivery_id for d in found}
            found += [d for d in meanwhile if d.delivery_id not in seen]
            found.sort(key=lambda d: d.delivery_id)
        self._take(found)
        if more:
            self._overflow.add(eid)

    # --- scheduling -----------------------------------------------------------------------

    def _enqueue(self, d: Delivery) -> None:
        if d.delivery_id in self._known:
            return
        self._known[d.delivery_id] = d.endpoint_id
        self._held[d.endpoint_id] = self._held.get(d.endpoint_id, 0) + 1
        key = (d.endpoint_id, d.stream)
        queue = self._queues.setdefault(key, collections.deque())
        queue.append(d)
        if len(queue) == 1 and key not in self._busy:
            self._due(key, d)

    def _due(self, key: Key, d: Delivery) -> None:
        """Make ``key`` ready now, or when its head's next attempt is due."""
        delay = (d.next_attempt_at - utcnow()).total_seconds()
        if delay > 0:
            self._busy.add(key)
            self._timers[key] = asyncio.get_running_loop().call_later(delay, self._wake, key)
        else:
            self._ready.setdefault(key[0], collections.deque()).append(key[1])

    def _wake(self, key: Key) -> None:
        self._timers.pop(key, None)
        self._busy.discard(key)
        if self._queues.get(key):
            self._ready.setdefault(key[0], collections.deque()).append(key[1])
            self._pump()

    def _drop(self, key: Key) -> None:
        if timer := self._timers.pop(key, None):
            timer.cancel()
        self._busy.discard(key)
        for d in self._queues.pop(key, ()):
            self._forget(d.delivery_id)

    def _pump(self) -> None:
        """Start the attempts that limits allow: a stream's head at a time."""
        if self._stopping:
            return
        limit = self.settings.concurrency
        for eid, ready in self._ready.items():
            ep = self._endpoints.get(eid)
            if ep is None or not ep.live.enabled:
                continue
            while ready and ep.in_flight < ep.live.max_concurrency and self._total < limit:
                stream = ready.popleft()
                key = (eid, stream)
                queue = self._queues.get(key)
                if not queue or key in self._busy:
                    continue
                self._busy.add(key)
                ep.in_flight += 1
                self._total += 1
                task = asyncio.create_task(self._attempt(ep, key, queue[0]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _attempt(self, ep: _Endpoint, key: Key, d: Delivery) -> None:
        loop = asyncio.get_running_loop()
        now = utcnow()
        started = loop.time()
        status, error = await self._post(ep, d, now)
        latency_ms = (loop.time() - started) * 1000
        ep.in_flight -= 1
        self._total -= 1
        self._busy.discard(key)
        d.attempts += 1
        schedule = self.settings.retry_schedule_s
        if error is None:
            state = "delivered"
        elif d.attempts > len(schedule):
            state = "dead"
            log.warning("webhook delivery dead-lettered", extra={"fields": {
                "endpoint_id": d.endpoint_id, "event_id": d.event_id, "error": error}})
        else:
            state = "pending"
            d.next_attempt_at = now + dt.timedelta(seconds=schedule[d.attempts - 1])
        self._outcomes.append(Outcome(d.delivery_id, d.attempts, d.endpoint_id, now, status,
                                      latency_ms, error, state, d.next_attempt_at))
        self._outcome_ready.set()
        queue = self._queues.get(key)
        if queue and queue[0] is d:
            if state != "pending":
                queue.popleft()
            if queue:
                self._due(key, queue[0])
            else:
                del self._queues[key]
        self._pump()

    async def _post(self, ep: _Endpoint, d: Delivery, now: dt.datetime
                    ) -> tuple[int | None, str | None]:
        """One signed POST: (HTTP status, None) on a 2xx, else (status or None, why)."""
        if ep.refused:
            return None, f"target refused: {ep.refused}"
        if not ep.signer.webhooks:
            return None, "the endpoint has no live secret"
        assert self._session is not None
        body = body_of(d)
        try:  # the session's ClientTimeout(total) bounds the whole attempt
            async with self._session.post(
                    ep.live.url, data=body.encode(), allow_redirects=False,
                    headers=ep.signer.headers(d.event_id, body, now)) as resp:
                await resp.content.readany()  # the answer is not ours to keep
                status = resp.status
                if 300 <= status < 400:
                    return status, (f"redirect to {resp.headers.get('Location', '?')} not "
                                    "followed")
                if not 200 <= status < 300:
                    return status, f"HTTP {status}"
                return status, None
        except TimeoutError:
            return None, f"no answer within {self.settings.timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]

    # --- the delivery log -----------------------------------------------------------------

    async def _write_outcomes(self, stop: asyncio.Event) -> None:
        """Write attempts' outcomes in batches; a failed write is kept and tried again."""
        while True:
            if not self._outcomes:
                if stop.is_set():
                    return
                self._outcome_ready.clear()
                await self._outcome_ready.wait()
                continue
            await asyncio.sleep(FLUSH_S)  # let a batch gather
            batch, self._outcomes = self._outcomes, []
            try:
                await self._record(batch)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("the webhook delivery log could not be written; retrying",
                            extra={"fields": {"error": str(exc)}})
                self._outcomes[:0] = batch
                if stop.is_set():
                    return
                await asyncio.sleep(1.0)
                continue
            for o in batch:
                if o.state != "pending":
                    if self._reads:
                        self._finished.add(o.delivery_id)
                    self._forget(o.delivery_id)

    async def _record(self, batch: list[Outcome]) -> None:
        runs: dict[int, tuple[int, bool]] = {}  # endpoint → (dead since a success, success?)
        for o in batch:
            dead, ok = runs.get(o.endpoint_id, (0, False))
            if o.state == "delivered":
                runs[o.endpoint_id] = (0, True)
            elif o.state == "dead":
                runs[o.endpoint_id] = (dead + 1, ok)
        async with self.pool.acquire() as conn, conn.transaction():
            await webhook_repo.record(conn, batch)
            for eid, (dead, ok) in runs.items():
                if not dead and not ok:
                    continue
                count = await webhook_repo.mark_dead(conn, eid, dead, ok)
                if dead and count >= self.settings.disable_after_dead_letters:
                    await self._disable(conn, eid, count)

    async def _disable(self, conn: Connection, endpoint_id: int, count: int) -> None:
        reason = f"{count} deliveries dead-lettered in a row"
        endpoint = await webhook_repo.disable(conn, endpoint_id, reason)
        if endpoint is None:
            return
        log.warning("webhook endpoint disabled", extra={"fields": {
            "endpoint_id": endpoint_id, "url": endpoint.url, "reason": reason}})
        await outbox.emit(conn, WebhookEndpointDisabled(
            endpoint_id=endpoint_id, url=endpoint.url, reason=reason, dead_in_a_row=count),
            stream=f"webhook:{endpoint_id}")
