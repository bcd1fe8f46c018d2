"""Authenticated `GET /v1/accounts/{id}` throughput and tail latency, beside two peers.

One command: ``python perf/bench_api.py [--quick] [--database-url DSN] [--workers N]``.

The server runs as its own process (``billing-oss serve``) on loopback; the load comes from
a second process: ``wrk`` when installed (Debian package ``wrk``), else an aiohttp load
generator in a subprocess. Figures measured in the same run:

- ours:   ``GET /v1/accounts/{id}`` with a Bearer key (auth + one PostgreSQL query + JSON);
- peer 1: ``GET /healthz`` on the same server — the unauthenticated, no-database ceiling of
          the same process, middlewares and event loop;
- peer 2: a raw asyncpg loop of the same SELECT from this process — the database ceiling.

Target (issue 6): ≥ 5,000 requests/s with p99 < 20 ms. The exit status is 0 when met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from billing_oss.server.store import accounts_repo, api_keys  # noqa: E402
from billing_oss.server.store.dsn import with_database  # noqa: E402
from billing_oss.server.store.migrate import migrate  # noqa: E402

TARGET_RPS, TARGET_P99_MS = 5000.0, 20.0
CONNECTIONS = 32


class Result:
    def __init__(self, name: str, rps: float, p99_ms: float | None, errors: int) -> None:
        self.name, self.rps, self.p99_ms, self.errors = name, rps, p99_ms, errors

    def line(self) -> str:
        p99 = f"{self.p99_ms:7.2f} ms" if self.p99_ms is not None else "      n/a"
        return f"{self.name:<44} {self.rps:10,.0f} req/s   p99 {p99}   errors {self.errors}"


@contextlib.asynccontextmanager
async def database(url: str | None) -> AsyncIterator[str]:
    """A fresh database on ``url``'s server, or in an embedded server; dropped afterwards."""
    if url is None:
        from billing_oss.server.store.embedded import embedded_postgres

        with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
            async with embedded_postgres(Path(tmp) / "pg", "bench") as dsn:
                yield dsn
        return
    name = f"bench_api_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def prepare(dsn: str) -> tuple[str, str]:
    """Migrate, create an admin key and one account with identifiers; (token, account id)."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await migrate(pool)
        key = await api_keys.create(pool, "admin", name="bench")
        account = accounts_repo.NewAccount(
            account_id="BENCH-1", name="Benchmark customer", status="active", currency="EUR",
            timezone="Europe/Paris", billing_day=1, attrs={"segment": "b2b"},
            identifiers=[accounts_repo.AccountIdentifier("33611111111", "msisdn"),
                         accounts_repo.AccountIdentifier("208011234567890", "imsi")])
        await accounts_repo.create(pool, "bench", account)
    finally:
        await pool.close()
    return key.token, account.account_id


def start_server(dsn: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "false",
           "BILLING_OSS_LOG_LEVEL": "warning"}
    return subprocess.Popen(
        [sys.executable, "-m", "billing_oss", "serve", "--database-url", dsn,
         "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL)


async def wait_ready(url: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url + "/readyz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"server at {url} not ready after {within}s")


def run_wrk(name: str, url: str, token: str | None, seconds: float) -> Result:
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency",
           "--timeout", "5s"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    return Result(name, rps, p99, errors)


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


LOADGEN = r"""
import asyncio, sys, time, aiohttp
url, token, seconds, conns = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
async def main():
    lat, errors = [], 0
    headers = {"Authorization": f"Bearer {token}"} if token != "-" else {}
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(headers=headers,
            connector=aiohttp.TCPConnector(limit=conns)) as http:
        async def worker():
            nonlocal errors
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                async with http.get(url) as r:
                    await r.read()
                    errors += r.status != 200
                lat.append(time.perf_counter() - t)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        took = time.perf_counter() - started
    lat.sort()
    print(len(lat) / took, lat[int(len(lat) * 0.99)] * 1000, errors)
asyncio.run(main())
"""


def run_aiohttp_loadgen(name: str, url: str, token: str | None, seconds: float) -> Result:
    out = subprocess.run([sys.executable, "-c", LOADGEN, url, token or "-", str(seconds),
                          str(CONNECTIONS)], capture_output=True, text=True, check=True).stdout
    rps, p99, errors = out.split()
    return Result(name, float(rps), float(p99), int(errors))


async def asyncpg_peer(dsn: str, account_id: str, seconds: float) -> Result:
    """The same account SELECT straight through asyncpg, CONNECTIONS tasks over a pool."""
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
    assert pool is not None
    done = 0
    deadline = time.perf_counter() + seconds
    lat: list[float] = []

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            await accounts_repo.get(pool, account_id)
            lat.append(time.perf_counter() - t)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    took = time.perf_counter() - started
    await pool.close()
    lat.sort()
    return Result("peer: asyncpg SELECT loop (same query)", done / took,
                  lat[int(len(lat) * 0.99)] * 1000, 0)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (2 s each)")
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_DATABASE_URL"),
                        help="PostgreSQL server to create a scratch database on "
                        "(default: an embedded server)")
    parser.add_argument("--seconds", type=float, help="duration of each measurement")
    parser.add_argument("--loadgen", choices=["wrk", "aiohttp"],
                        default="wrk" if shutil.which("wrk") else "aiohttp")
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    load = run_wrk if args.loadgen == "wrk" else run_aiohttp_loadgen

    async with database(args.database_url) as dsn:
        token, account_id = await prepare(dsn)
        port = _free_port()
        server = start_server(dsn, port)
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_ready(base)
            url = f"{base}/v1/accounts/{account_id}"
            await asyncio.to_thread(load, "warm-up", url, token, 1.0)
            ours = await asyncio.to_thread(
                load, "ours: GET /v1/accounts/{id} (Bearer key)", url, token, seconds)
            ceiling = await asyncio.to_thread(
                load, "peer: GET /healthz (same server, no auth/DB)", f"{base}/healthz", None,
                seconds)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        database_peer = await asyncpg_peer(dsn, account_id, seconds)

    print(f"load generator: {args.loadgen}, {CONNECTIONS} connections, {seconds:g} s each, "
          f"loopback; server: one process")
    for result in (ours, ceiling, database_peer):
        print(result.line())
    print(f"ratio ours / healthz ceiling: {ours.rps / ceiling.rps:.2f}; "
          f"ours / asyncpg loop: {ours.rps / database_peer.rps:.2f}")
    met = ours.rps >= TARGET_RPS and (ours.p99_ms or 0) < TARGET_P99_MS and ours.errors == 0
    print(f"target ≥ {TARGET_RPS:,.0f} req/s and p99 < {TARGET_P99_MS:g} ms: "
          f"{'met' if met else 'NOT met'}")
    return 0 if met or args.quick else 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
