"""Where one intake path spends its CPU: the pipeline and the intake in this one process,
the PostgreSQL backends' CPU timed around each repository call.

    python perf/profile_intake.py {mqtt,http,jsonl} [--messages 1000] [--profile OUT]
        [--database-url DSN] [--broker-port 1883]

- mqtt: ``--messages`` messages of 100 records published (by ``bench_adapters``' publisher
  process) to a running broker, taken by an ``MqttAdapter`` in this process;
- http: the same records as 1,000-record bodies through ``intake.to_delivery`` and
  ``Pipeline.commit`` (what ``POST /v1/usage`` does), 4 at a time;
- jsonl: the same records as 10,000-line files through ``Pipeline.ingest_file``.

Prints CPU per record of this process and of the database's backends, and the backends'
share by repository call (``/proc/<backend>/schedstat`` read before and after each call:
nanoseconds, so a short call counts). ``--profile`` writes a cProfile of the event loop.
Needs PostgreSQL (the admin DSN, or ``BILLING_OSS_TEST_DATABASE_URL``) on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import functools
import gc
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

import bench_adapters  # noqa: E402  (perf/ is on sys.path)
import bench_ingest  # noqa: E402

from billing_oss.adapters import intake  # noqa: E402
from billing_oss.adapters.mqtt import MqttAdapter  # noqa: E402
from billing_oss.core.sources_config import MqttSource  # noqa: E402
from billing_oss.server import config  # noqa: E402
from billing_oss.server.composition import decoders, rater_factory  # noqa: E402
from billing_oss.server.pipeline.pipeline import Pipeline  # noqa: E402
from billing_oss.server.store import catalog_repo, charge_writes, usage_repo  # noqa: E402
from billing_oss.server.store.dsn import with_database  # noqa: E402
from billing_oss.server.store.migrate import migrate  # noqa: E402

SPENT: collections.Counter[str] = collections.Counter()
CALLS: collections.Counter[str] = collections.Counter()
TIMED = ("ensure_partitions", "claim_offsets", "claim_key_rows", "copy_rows",
         "store_offset_results", "checkpoint_file")


def _on_cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def _timed(module: Any, name: str) -> None:
    """Wrap ``module.name(conn, ...)`` to add its backend's CPU to ``SPENT`` (the pipeline
    calls these through the module, so the wrapper is what it runs)."""
    call: Callable[..., Awaitable[Any]] = getattr(module, name)

    @functools.wraps(call)
    async def timed(conn: Any, *args: Any, **kwargs: Any) -> Any:
        pid = conn.get_server_pid()
        label = f"{name} {args[0]}" if name == "copy_rows" else name
        before = _on_cpu_ns(pid)
        try:
            return await call(conn, *args, **kwargs)
        finally:
            SPENT[label] += _on_cpu_ns(pid) - before
            CALLS[label] += 1
    setattr(module, name, timed)


async def start_mqtt(pipeline: Pipeline, pool: asyncpg.Pool, port: int
                     ) -> tuple[MqttAdapter, asyncio.Event, asyncio.Task[None]]:
    source = f"profile{uuid.uuid4().hex[:6]}"
    adapter = MqttAdapter(source, MqttSource(port=port, topics=[f"usage/{source}/#"],
                                             client_id=source), pipeline, pool)
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    await asyncio.sleep(1.0)  # connected and subscribed before the clock starts
    return adapter, stop, task


async def run_mqtt(adapter: MqttAdapter, messages: int, port: int) -> None:
    publisher = await bench_adapters.publish(port, adapter.name, messages, 0, "t")
    while adapter.committed < messages:  # noqa: ASYNC110  (a counter, as bench_adapters polls)
        await asyncio.sleep(0.005)
    await publisher.wait()


async def run_http(pipeline: Pipeline, pool: asyncpg.Pool, messages: int) -> None:
    tag = uuid.uuid4().hex[:8]
    bodies = [msgspec.json.encode({"records": [bench_adapters.record(f"{tag}-{b}-{i}")
                                               for i in range(1000)]})
              for b in range(messages // 10)]

    async def client() -> None:
        while bodies:
            body = bodies.pop()
            delivery = await intake.to_delivery(
                pool, body, source="profile-http", position=intake.content_position(body),
                where="body", strict=True)
            outcome = (await pipeline.commit([delivery]))[0]
            assert outcome.counts.charged == 1000, outcome.counts

    await asyncio.gather(*(client() for _ in range(4)))


async def run_jsonl(pipeline: Pipeline, folder: Path) -> None:
    for path in sorted(folder.iterdir()):  # noqa: ASYNC240  (written before the clock)
        await pipeline.ingest_file(path, source="profile-jsonl", format="jsonl")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", choices=("mqtt", "http", "jsonl"))
    parser.add_argument("--messages", type=int, default=1000, help="of 100 records each")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the run here")
    parser.add_argument("--broker-port", type=int, default=1883)
    parser.add_argument("--database-url", default=os.environ.get(
        "BILLING_OSS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    for name in TIMED:
        _timed(usage_repo, name)
    _timed(charge_writes, "write")  # charges COPY and rollups (its copy_rows shown apart too)

    name = f"profile_intake_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    folder = Path(tempfile.mkdtemp(prefix="profile-intake-"))
    pool = await asyncpg.create_pool(with_database(args.database_url, name), min_size=8,
                                     max_size=8)
    try:
        await migrate(pool)
        await catalog_repo.load_catalog(pool, bench_ingest.catalog())
        pipeline = Pipeline(pool, config.load(env={}).pipeline, rater_factory=rater_factory(),
                            decoders=decoders())
        await pipeline.raters.current()
        gc.collect()
        gc.freeze()  # as serve does (composition._fewer_collections)
        gc.set_threshold(50_000, *gc.get_threshold()[1:])
        backends = bench_ingest.Backends()
        for row in await pool.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"):
            backends.add(row[0])
        if args.path == "mqtt":
            adapter, stop, task = await start_mqtt(pipeline, pool, args.broker_port)
        if args.path == "jsonl":
            bench_adapters.write_jsonl_files(folder, "f", max(1, args.messages // 100), 10_000)
        SPENT.clear()
        CALLS.clear()
        profile = cProfile.Profile() if args.profile else None
        own, started = time.process_time(), time.monotonic()
        if profile is not None:
            profile.enable()
        if args.path == "mqtt":
            await run_mqtt(adapter, args.messages, args.broker_port)
        elif args.path == "http":
            await run_http(pipeline, pool, args.messages)
        else:
            await run_jsonl(pipeline, folder)
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        elapsed, own = time.monotonic() - started, time.process_time() - own
        server = backends.spent()
        if args.path == "mqtt":
            stop.set()
            await task
        records = args.messages * 100
        print(f"{args.path}: {records:,} records in {elapsed:.2f} s ({records / elapsed:,.0f}/s,"
              f" load average {os.getloadavg()[0]:.1f}); CPU per record: this process"
              f" {own / records * 1e6:.1f} µs, backends {server / records * 1e6:.1f} µs")
        for label, ns in SPENT.most_common():
            print(f"  {label:28} {CALLS[label]:5} calls {ns / records / 1e3:6.2f} µs/record")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
