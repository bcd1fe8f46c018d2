"""Ingest into one PostgreSQL and into a Citus cluster, in one run.

    python perf/bench_scale.py [--records N] [--runs R] [--worker-records N]
                               [--database-url DSN] [--citus-url DSN]

The same 3GPP file (``perf/bench_ingest.py``'s generator: 1,000 accounts, every record
chargeable) is ingested by the pipeline into a fresh database on one PostgreSQL
(``--database-url``, else ``BILLING_OSS_TEST_DATABASE_URL``, else an embedded server) and
into a fresh database on a Citus coordinator (``--citus-url``, else
``BILLING_OSS_CITUS_URL``; ``./run.sh citus`` and ``../shared/citus/cluster.sh`` start one),
``--runs`` times each (median, with the range). Prints records/s for both and their ratio.

What one box can and cannot show: the one-box cluster puts the coordinator and both workers
on the same cores as the ingest process, so its figure is the cost Citus adds per record
(routing every row by the hash of its account, two-phase commit over the nodes a batch
touched, more connections) — not the gain from more machines. That gain needs workers on
their own hardware; what this run does show is that the same server, unchanged, ingests
into a cluster and at what per-record overhead.

Then, in the same run, ``serve --workers 1`` and ``--workers 2`` take the same MQTT traffic
into one PostgreSQL (``perf/bench_workers.py``'s measurement, ``--worker-records`` records; 0
skips it). On one box the second worker shares the cores with the first and with PostgreSQL,
so the ratio says what the processes cost each other here, not what a machine with free cores
would gain.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from billing_oss.server.store import catalog_repo  # noqa: E402
from billing_oss.server.store.dsn import with_database  # noqa: E402
from billing_oss.server.store.migrate import migrate  # noqa: E402
from perf.bench_ingest import catalog, generate_3gpp, ours, server  # noqa: E402
from perf.bench_workers import print_rates, workers_rates  # noqa: E402
from tests.citus.cluster import create_citus_database, drop_citus_database  # noqa: E402


async def _prepared(dsn: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2,
                                     server_settings={"timezone": "UTC"})
    assert pool is not None
    await migrate(pool)
    await catalog_repo.load_catalog(pool, catalog())
    await pool.close()


async def plain_run(admin_dsn: str, path: Path) -> float:
    name = f"scale_one_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = with_database(admin_dsn, name)
        await _prepared(dsn)
        elapsed, count, charged = await ours(dsn, path, "3gpp")
        assert charged == count, (charged, count)
        return count / elapsed
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def citus_run(admin_dsn: str, path: Path) -> float:
    name = f"scale_citus_{uuid.uuid4().hex[:8]}"
    dsn = await create_citus_database(admin_dsn, name)
    try:
        await _prepared(dsn)
        elapsed, count, charged = await ours(dsn, path, "3gpp")
        assert charged == count, (charged, count)
        return count / elapsed
    finally:
        await drop_citus_database(admin_dsn, name)


def _line(label: str, rates: list[float]) -> str:
    return (f"{label:<34} {statistics.median(rates):>10,.0f} records/s"
            f"   (runs {min(rates):,.0f}–{max(rates):,.0f})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker-records", type=int, default=40_000,
                        help="MQTT records for the 1 vs 2 worker processes line (0: skip)")
    parser.add_argument("--database-url",
                        default=os.environ.get("BILLING_OSS_TEST_DATABASE_URL"))
    parser.add_argument("--citus-url", default=os.environ.get("BILLING_OSS_CITUS_URL"))
    args = parser.parse_args()
    if not args.citus_url:
        parser.error("no Citus coordinator: pass --citus-url or set BILLING_OSS_CITUS_URL "
                     "(../shared/citus/cluster.sh start DIR prints one)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.cdr"
        generate_3gpp(path, args.records)
        one: list[float] = []
        cluster: list[float] = []
        conn = await asyncpg.connect(args.citus_url)
        workers = await conn.fetchval(
            "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary'")
        await conn.close()
        async with server(args.database_url) as admin_dsn:
            for _ in range(args.runs):  # interleaved: both sides see the same machine load
                started = time.perf_counter()
                one.append(await plain_run(admin_dsn, path))
                cluster.append(await citus_run(args.citus_url, path))
                print(f"  run {len(one)}: {time.perf_counter() - started:.0f} s", flush=True)
            rates = (await workers_rates(admin_dsn, args.worker_records)
                     if args.worker_records else None)
    print(f"ingest of {args.records:,} 3GPP records, {os.cpu_count()} cores, "
          f"median of {args.runs} runs")
    print(_line("one PostgreSQL", one))
    print(_line(f"Citus, coordinator + {workers} workers", cluster))
    print(f"{'cluster / one':<34} {statistics.median(cluster) / statistics.median(one):>10.2f}")
    if rates is not None:
        print("worker processes, one PostgreSQL:")
        print_rates(args.worker_records, rates)
    print("one box: the cluster's nodes share these cores with the ingest, so this is "
          "Citus's per-record cost, not the scale-out gain of workers on their own machines")


if __name__ == "__main__":
    asyncio.run(main())
