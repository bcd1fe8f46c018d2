"""Overload on `POST /v1/usage`: many connections posting big batches, with and without
admission control, side by side.

One command: ``python perf/load_http_ingest.py [--connections 200] [--records 1000]
[--seconds 60] [--database-url DSN]``.

The server runs as its own process (``billing-oss serve``) on loopback; this process is the
load: ``--connections`` clients each posting ``--records``-record batches back to back for
``--seconds``. Two runs on fresh databases, the same load:

- ours:  the defaults (``http.ingest_concurrency`` 16, ``http.ingest_queue`` 16): work past
         the slots and the queue is answered 503 OVERLOADED at once;
- peer:  no admission (concurrency and queue as large as the load): every request is taken,
         as before admission existed.

Printed per run: answers by status, records stored, median and p99 latency of the 200s, the
server's peak RSS (VmHWM), and the check that matters: records stored for requests answered
503 (must be 0) and for those answered 200 (must equal what they accepted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import msgspec

PERF = Path(__file__).resolve().parent
REPO = PERF.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(PERF))

from bench_api import database  # noqa: E402
from served import free_port, wait_ready  # noqa: E402

from billing_oss.server.store import api_keys  # noqa: E402
from billing_oss.server.store.migrate import migrate  # noqa: E402

PLACEHOLDER = b"TAGXXXXXXXXX"


@dataclass
class Run:
    name: str
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # of the 200s
    ok_tags: list[str] = field(default_factory=list)
    shed_tags: list[str] = field(default_factory=list)
    accepted: int = 0
    stored_ok: int = 0
    stored_shed: int = 0
    peak_rss_mb: float = 0.0

    def line(self) -> str:
        lat = sorted(self.latencies)
        median = statistics.median(lat) if lat else float("nan")
        p99 = lat[int(0.99 * (len(lat) - 1))] if lat else float("nan")
        answers = " ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()))
        return (f"{self.name:<22} answers {answers:<28} median {median:6.2f} s  p99 {p99:6.2f} s"
                f"  peak RSS {self.peak_rss_mb:7.1f} MB  stored {self.stored_ok}/{self.accepted}"
                f" accepted, {self.stored_shed} of 503s")


def template(records: int) -> bytes:
    return msgspec.json.encode({"records": [
        {"record_key": f"{PLACEHOLDER.decode()}-{i}", "kind": "voice",
         "event_time": "2026-03-02T10:00:00Z", "calling": "33611111111",
         "called": "33612345678", "duration_s": 60 + i % 600} for i in range(records)]})


async def client(url: str, token: str, body: bytes, deadline: float, run: Run,
                 http: aiohttp.ClientSession) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    while time.monotonic() < deadline:
        tag = uuid.uuid4().hex[:12]
        started = time.monotonic()
        try:
            async with http.post(url + "/v1/usage", data=body.replace(PLACEHOLDER, tag.encode()),
                                 headers=headers) as r:
                payload = await r.read()
                status = r.status
                retry_after = float(r.headers.get("Retry-After", "0") or 0)
        except (aiohttp.ClientError, TimeoutError):
            status, payload, retry_after = 0, b"", 0.0
        run.statuses[status] = run.statuses.get(status, 0) + 1
        if status == 200:
            run.latencies.append(time.monotonic() - started)
            run.ok_tags.append(tag)
            run.accepted += msgspec.json.decode(payload)["accepted"]
        elif status == 503:
            run.shed_tags.append(tag)
            await asyncio.sleep(min(retry_after, max(0.0, deadline - time.monotonic())))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(dsn: str, port: int, settings: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BILLING_OSS_LOG_LEVEL": "warning", **settings}
    return subprocess.Popen(
        [sys.executable, "-m", "billing_oss", "serve", "--database-url", dsn,
         "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL)


async def one_run(name: str, url_base: str | None, settings: dict[str, str],
                  args: argparse.Namespace) -> Run:
    run = Run(name)
    async with database(url_base) as dsn:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        assert pool is not None
        try:
            await migrate(pool)
            key = await api_keys.create(pool, "ingest", name="load")
            port = free_port()
            server = start_server(dsn, port, settings)
            url = f"http://127.0.0.1:{port}"
            try:
                await wait_ready(url, within=60)
                body = template(args.records)
                deadline = time.monotonic() + args.seconds
                connector = aiohttp.TCPConnector(limit=args.connections)
                timeout = aiohttp.ClientTimeout(total=args.seconds * 3 + 60)
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                    await asyncio.gather(*(client(url, key.token, body, deadline, run, http)
                                           for _ in range(args.connections)))
                run.peak_rss_mb = peak_rss_mb(server.pid)
            finally:
                server.terminate()
                server.wait(timeout=60)
            source = f"http:{key.key.key_id}"
            count = ("SELECT count(*) FROM usage_keys WHERE source = $1"
                     " AND split_part(record_key, '-', 1) = ANY($2::text[])")
            run.stored_ok = await pool.fetchval(count, source, run.ok_tags)
            run.stored_shed = await pool.fetchval(count, source, run.shed_tags)
        finally:
            await pool.close()
    return run


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    print(f"{args.connections} connections x {args.records}-record batches for "
          f"{args.seconds:g} s, on {os.cpu_count()} cores", flush=True)
    unbounded = str(args.connections * 10)
    peer = await one_run("peer: no admission", args.database_url, {
        "BILLING_OSS_HTTP_INGEST_CONCURRENCY": unbounded,
        "BILLING_OSS_HTTP_INGEST_QUEUE": unbounded}, args)
    print(peer.line(), flush=True)
    ours = await one_run("ours: admission", args.database_url, {}, args)
    print(ours.line(), flush=True)
    exact = all(r.stored_shed == 0 and r.stored_ok == r.accepted for r in (ours, peer))
    print("every 503 stored nothing and every 200 stored what it accepted:",
          "yes" if exact else "NO")
    return 0 if ours.stored_shed == 0 and ours.stored_ok == ours.accepted else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
