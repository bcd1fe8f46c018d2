"""Webhook delivery benchmark: outbox events to a loopback aiohttp receiver (in its own
process), beside that receiver's own ceiling — a plain aiohttp client POSTing the same bodies
at the same concurrency, no database, no signature. Targets: ≥ 2,000 deliveries/s; p99
commit-to-delivery latency ≤ 1 s while events commit at 500/s.

    python perf/bench_webhooks.py [--quick] [--repeat N] [--database-url DSN]

Throughput: N events over 500 accounts committed first, then the delivery worker started
and timed until the receiver has every one (signed, in order per account, logged).
Latency: events committed one transaction each at 500/s for 10 s (5 s with --quick) with
the worker running; each event's commit time against its arrival time at the receiver.
Each side runs --repeat times; the median is reported. Without --database-url (or
BILLING_OSS_TEST_DATABASE_URL) an embedded PostgreSQL is used.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
import uuid
from typing import ClassVar

import aiohttp
import asyncpg
import embedded_pg  # perf/ is on sys.path: this script's folder
import msgspec
from aiohttp import web
from served import free_port  # perf/ is on sys.path: this script's folder

from billing_oss.server.config import WebhooksConfig
from billing_oss.server.integrations import outbox, webhooks
from billing_oss.server.integrations.delivery import WebhookDeliverer
from billing_oss.server.integrations.events import DomainEvent
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate

ACCOUNTS = 500
CONCURRENCY = 64
SETTINGS = WebhooksConfig(allow_http=True, allow_private=True, max_concurrency=CONCURRENCY,
                          concurrency=CONCURRENCY, timeout_s=10, rescan_s=5)


class BenchTicked(DomainEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "bench.ticked"
    n: int
    amount: str


# --- the receiver, in a process of its own ---------------------------------------------------

def receiver_main(port: int, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    arrived: dict[str, float] = {}
    state = {"count": 0}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        state["count"] += 1
        event_id = request.headers.get("webhook-id")
        if event_id is not None and event_id not in arrived:
            arrived[event_id] = time.time()
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        body = {"count": state["count"], "arrived": arrived} if request.query.get(
            "full") else {"count": state["count"]}
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")

    async def reset(_: web.Request) -> web.Response:
        arrived.clear()
        state["count"] = 0
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(serve())


class ReceiverStats:
    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url, self.http = url, http

    async def reset(self) -> None:
        async with self.http.post(self.url + "/reset") as r:
            assert r.status == 204

    async def count(self) -> int:
        async with self.http.get(self.url + "/stats") as r:
            return int((await r.json())["count"])

    async def arrived(self) -> dict[str, float]:
        async with self.http.get(self.url + "/stats", params={"full": "1"}) as r:
            return dict((await r.json())["arrived"])

    async def wait_for(self, n: int, within: float) -> float:
        """Seconds until the receiver has counted ``n`` (from now)."""
        started = time.perf_counter()
        while await self.count() < n:
            if time.perf_counter() - started > within:
                raise TimeoutError(f"the receiver got {await self.count()} of {n}")
            await asyncio.sleep(0.01)
        return time.perf_counter() - started


# --- the two sides ---------------------------------------------------------------------------

async def emit_backlog(pool: asyncpg.Pool, n: int) -> None:
    per_tx = 1000
    for start in range(0, n, per_tx):
        async with pool.acquire() as conn, conn.transaction():
            await outbox.emit_many(conn, [
                (BenchTicked(n=i, amount="1.250000"), f"BW{i % ACCOUNTS:04d}")
                for i in range(start, min(n, start + per_tx))])


async def deliver_backlog(pool: asyncpg.Pool, stats: ReceiverStats, n: int) -> float:
    """Deliveries per second: a backlog of ``n`` events, worker started, until all arrive."""
    await emit_backlog(pool, n)
    await stats.reset()
    deliverer = WebhookDeliverer(pool, SETTINGS)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(deliverer.run(stop))
    await stats.wait_for(n, within=max(60.0, n / 100))
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    pending = await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE state <> "
                                  "'delivered'")
    assert pending == 0, f"{pending} deliveries not logged as delivered"
    return n / elapsed


async def plain_client(url: str, n: int, body: bytes) -> float:
    """The receiver's ceiling: ``n`` POSTs of ``body`` at the same concurrency."""
    queue = iter(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            limit=CONCURRENCY)) as http:

        async def worker() -> None:
            for _ in queue:
                async with http.post(url, data=body,
                                     headers={"content-type": "application/json"}) as r:
                    await r.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return n / (time.perf_counter() - started)


async def latency_at(pool: asyncpg.Pool, stats: ReceiverStats, rate: int, seconds: float
                     ) -> tuple[float, float, int]:
    """(p50, p99) seconds from commit to arrival, events committed one per transaction at
    ``rate``/s while the worker delivers; and how many."""
    await stats.reset()
    deliverer = WebhookDeliverer(pool, SETTINGS)
    stop = asyncio.Event()
    task = asyncio.create_task(deliverer.run(stop))
    await asyncio.wait_for(deliverer.leading.wait(), 10)
    committed: dict[str, float] = {}
    total = int(rate * seconds)
    started = time.perf_counter()
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem, pool.acquire() as conn:
            async with conn.transaction():
                event_id = await outbox.emit(conn, BenchTicked(n=i, amount="0.500000"),
                                             account_id=f"BL{i % ACCOUNTS:04d}")
            committed[event_id] = time.time()

    tasks = []
    for i in range(total):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    await stats.wait_for(total, within=60)
    stop.set()
    await task
    arrived = await stats.arrived()
    lat = sorted(arrived[e] - t for e, t in committed.items())
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1], len(lat)


async def main(quick: bool, repeat: int, dsn: str) -> None:
    n = 5_000 if quick else 20_000
    seconds = 5.0 if quick else 10.0
    name = f"bench_webhooks_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    port = free_port()
    ready = multiprocessing.Event()
    receiver = multiprocessing.Process(target=receiver_main, args=(port, ready), daemon=True)
    receiver.start()
    try:
        assert ready.wait(30), "the receiver did not start"
        url = f"http://127.0.0.1:{port}"
        pool = await asyncpg.create_pool(with_database(dsn, name), min_size=4, max_size=20)
        assert pool is not None
        await migrate(pool)
        await webhooks.create(pool, SETTINGS, url + "/hook", ["bench.ticked"],
                              max_concurrency=CONCURRENCY)
        body = _sample_body()
        async with aiohttp.ClientSession() as http:
            stats = ReceiverStats(url, http)
            ours = [await deliver_backlog(pool, stats, n) for _ in range(repeat)]
            peer = [await plain_client(url + "/hook", n, body) for _ in range(repeat)]
            lats = [await latency_at(pool, stats, 500, seconds) for _ in range(repeat)]
        ours_m, peer_m = statistics.median(ours), statistics.median(peer)
        p50 = statistics.median(x[0] for x in lats)
        p99 = statistics.median(x[1] for x in lats)
        print(f"{'webhook deliveries (outbox → signed POST → log)':<50}{ours_m:>9,.0f} /s  "
              f"(target ≥ 2,000; {n:,} events, {ACCOUNTS} accounts, median of {repeat})")
        print(f"{'receiver ceiling (plain aiohttp client, same bodies)':<50}{peer_m:>9,.0f} /s")
        print(f"{'ratio deliveries / ceiling':<50}{ours_m / peer_m:>9.2f}")
        print(f"{'commit → delivery at 500 events/s, p50':<50}{p50 * 1000:>9.0f} ms")
        print(f"{'commit → delivery at 500 events/s, p99':<50}{p99 * 1000:>9.0f} ms  "
              f"(target ≤ 1,000; {lats[0][2]:,} events a run)")
        await pool.close()
    finally:
        receiver.terminate()
        receiver.join(10)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _sample_body() -> bytes:
    data = msgspec.json.encode(BenchTicked(n=1, amount="1.250000")).decode()
    return (f'{{"id":"evt_{uuid.uuid4().hex}","type":"bench.ticked","version":1,'
            f'"timestamp":"2026-12-03T10:00:00.000000Z","account_id":"BW0001",'
            f'"stream":"acct:BW0001","seq":1,"data":{data}}}').encode()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 k events, 5 s of latency")
    parser.add_argument("--repeat", type=int, default=3)
    embedded_pg.add_database_url(parser)
    args = parser.parse_args()
    embedded_pg.run(lambda url: main(args.quick, args.repeat, url), args.database_url)


if __name__ == "__main__":
    cli()
