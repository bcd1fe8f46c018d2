"""Authenticated `GET /v1/accounts/{id}` throughput and tail latency, beside two peers.

One command: ``python perf/bench_api.py [--quick] [--database-url DSN] [--accounts N]
[--runs R]``.

The server runs as its own process (``billing-oss serve``) on loopback; the load comes from
a second process: ``wrk`` when installed (Debian package ``wrk``), else an aiohttp load
generator in a subprocess. Figures measured in the same run:

- ours, cache-cold: ``GET /v1/accounts/{id}`` with a Bearer key over ``--accounts``
  (10,000) accounts, each requested once, on a server just started: every request misses
  the account cache and reads PostgreSQL (auth + query + JSON);
- ours, warm: the same requests spread over the same accounts for the measurement's
  duration (served from the cache while an entry lives, ``TTL_SECONDS``);
- ours, one account: the same account over and over (the cache's best case);
- peer 1: ``GET /healthz`` on the same server — the unauthenticated, no-database ceiling of
          the same process, middlewares and event loop;
- peer 2: a raw asyncpg loop of the same SELECT over the same accounts from this process —
          the database ceiling.

Each run starts a fresh server process; every figure is taken once per run, ``--runs``
(default 3) runs, and the median of each is printed. Target (issue 6): ≥ 5,000 requests/s
with p99 < 20 ms, judged on the warm spread figure. The exit status is 0 when met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from served import free_port, wait_ready  # noqa: E402  (perf/ is on sys.path)

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
        return f"{self.name:<52} {self.rps:10,.0f} req/s   p99 {p99}   errors {self.errors}"

    @staticmethod
    def median(results: list[Result]) -> Result:
        """Median rate and p99 of the runs (each taken separately); errors summed."""
        p99s = [r.p99_ms for r in results if r.p99_ms is not None]
        return Result(results[0].name, statistics.median(r.rps for r in results),
                      statistics.median(p99s) if p99s else None,
                      sum(r.errors for r in results))


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


def spread_id(i: int) -> str:
    return f"SPREAD-{i:06d}"


async def prepare(dsn: str, spread: int) -> tuple[str, str]:
    """Migrate, create an admin key, one account with identifiers and ``spread`` more
    accounts for the spread runs; (token, the single account's id)."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=8)
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
        todo = iter(range(spread))

        async def creator() -> None:
            for i in todo:
                await accounts_repo.create(pool, "bench", accounts_repo.NewAccount(
                    account_id=spread_id(i), name=f"Customer {i}", status="active",
                    currency="EUR", timezone="Europe/Paris", billing_day=1 + i % 28,
                    attrs={"segment": "b2c"}, identifiers=[
                        accounts_repo.AccountIdentifier(f"3370{i:07d}", "msisdn")]))

        await asyncio.gather(*(creator() for _ in range(8)))
    finally:
        await pool.close()
    return key.token, account.account_id


def start_server(dsn: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "false",
           "BILLING_OSS_LOG_LEVEL": "warning"}
    return subprocess.Popen(
        [sys.executable, "-m", "billing_oss", "serve", "--database-url", dsn,
         "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL)


WRK_SPREAD = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, string.format("/v1/accounts/SPREAD-%06d", counter % {n}))
end
"""


def run_wrk(name: str, url: str, token: str | None, seconds: float, spread: int = 0) -> Result:
    """``spread`` > 0: cycle over that many SPREAD accounts (``url`` is then the base)."""
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency",
           "--timeout", "5s"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if spread:
            script.write(WRK_SPREAD.replace("{n}", str(spread)))
            script.flush()
            cmd += ["-s", script.name]
        out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    return Result(name, rps, p99, errors)


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


# argv: url (with {i} for the spread account), token, seconds (0: one pass, each i once),
# connections, spread (how many accounts; 0: the url as is).
LOADGEN = r"""
import asyncio, itertools, sys, time, aiohttp
url, token, seconds, conns = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
spread = int(sys.argv[5])
def urls():
    if not spread:
        return itertools.repeat(url)
    ids = range(spread) if seconds == 0 else itertools.cycle(range(spread))
    return (url.replace("{i}", f"{i:06d}") for i in ids)
async def main():
    lat, errors = [], 0
    headers = {"Authorization": f"Bearer {token}"} if token != "-" else {}
    deadline = time.perf_counter() + (seconds or 1e9)
    todo = urls()
    async with aiohttp.ClientSession(headers=headers,
            connector=aiohttp.TCPConnector(limit=conns)) as http:
        async def worker():
            nonlocal errors
            for target in todo:
                if time.perf_counter() >= deadline:
                    break
                t = time.perf_counter()
                async with http.get(target) as r:
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


def run_aiohttp_loadgen(name: str, url: str, token: str | None, seconds: float,
                        spread: int = 0) -> Result:
    """``seconds`` 0 with ``spread``: one pass, each of the ``spread`` accounts once."""
    if spread:
        url += "/v1/accounts/SPREAD-{i}"
    out = subprocess.run([sys.executable, "-c", LOADGEN, url, token or "-", str(seconds),
                          str(CONNECTIONS), str(spread)], capture_output=True, text=True,
                         check=True).stdout
    rps, p99, errors = out.split()
    return Result(name, float(rps), float(p99), int(errors))


async def asyncpg_peer(dsn: str, spread: int, seconds: float) -> Result:
    """The same account SELECT straight through asyncpg over the same spread accounts,
    CONNECTIONS tasks over a pool."""
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
    assert pool is not None
    done = 0
    deadline = time.perf_counter() + seconds
    lat: list[float] = []

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            await accounts_repo.get(pool, spread_id(done % spread))
            lat.append(time.perf_counter() - t)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    took = time.perf_counter() - started
    await pool.close()
    lat.sort()
    return Result("peer: asyncpg SELECT loop (same query, spread)", done / took,
                  lat[int(len(lat) * 0.99)] * 1000, 0)


async def one_run(dsn: str, token: str, account_id: str, spread: int, seconds: float,
                  loadgen: str) -> list[Result]:
    """One fresh server: cold pass, warm spread, one account, /healthz; then the asyncpg
    peer. Same order every run."""
    port = free_port()
    server = start_server(dsn, port)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base)
        # Warm the process up on an account outside the spread, so the spread stays cold.
        single = f"{base}/v1/accounts/{account_id}"
        await asyncio.to_thread(run_aiohttp_loadgen, "warm-up", single, token, 1.0)
        # The cold pass needs "each account exactly once", which only our generator does.
        cold = await asyncio.to_thread(
            run_aiohttp_loadgen, f"ours: GET /v1/accounts/{{id}} cold, {spread:,} accts",
            base, token, 0.0, spread)
        load = run_wrk if loadgen == "wrk" else run_aiohttp_loadgen
        warm = await asyncio.to_thread(
            load, f"ours: GET /v1/accounts/{{id}} warm, {spread:,} accts", base, token,
            seconds, spread)
        one = await asyncio.to_thread(
            load, "ours: GET /v1/accounts/{id} one account", single, token, seconds)
        ceiling = await asyncio.to_thread(
            load, "peer: GET /healthz (same server, no auth/DB)", f"{base}/healthz", None,
            seconds)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    database_peer = await asyncpg_peer(dsn, spread, seconds)
    return [cold, warm, one, ceiling, database_peer]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short smoke run (2 s each, 2,000 accounts)")
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_DATABASE_URL"),
                        help="PostgreSQL server to create a scratch database on "
                        "(default: an embedded server)")
    parser.add_argument("--seconds", type=float, help="duration of each measurement")
    parser.add_argument("--accounts", type=int, help="accounts to spread requests over "
                        "(default 10,000; 2,000 with --quick)")
    parser.add_argument("--runs", type=int, default=3, help="runs of every figure (median)")
    parser.add_argument("--loadgen", choices=["wrk", "aiohttp"],
                        default="wrk" if shutil.which("wrk") else "aiohttp")
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    spread = args.accounts or (2_000 if args.quick else 10_000)

    runs: list[list[Result]] = []
    async with database(args.database_url) as dsn:
        token, account_id = await prepare(dsn, spread)
        for _ in range(args.runs):
            runs.append(await one_run(dsn, token, account_id, spread, seconds, args.loadgen))
    cold, warm, one, ceiling, database_peer = (Result.median(list(figure))
                                                for figure in zip(*runs, strict=True))

    print(f"load generator: {args.loadgen} (cold pass: aiohttp, each account once), "
          f"{CONNECTIONS} connections, {seconds:g} s each, loopback; server: one process, "
          f"restarted each run; median of {args.runs} runs")
    for result in (cold, warm, one, ceiling, database_peer):
        print(result.line())
    print(f"ratio ours / healthz ceiling: cold {cold.rps / ceiling.rps:.2f}, "
          f"warm {warm.rps / ceiling.rps:.2f}, one account {one.rps / ceiling.rps:.2f}; "
          f"warm / asyncpg loop: {warm.rps / database_peer.rps:.2f}")
    met = (warm.rps >= TARGET_RPS and (warm.p99_ms or 0) < TARGET_P99_MS
           and warm.errors == cold.errors == 0)
    print(f"target ≥ {TARGET_RPS:,.0f} req/s and p99 < {TARGET_P99_MS:g} ms (warm, spread): "
          f"{'met' if met else 'NOT met'}")
    return 0 if met or args.quick else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
