"""Collection adapters end to end into PostgreSQL, each beside the pipeline's own file-ingest
rate measured in the same run:

- MQTT: 100-record messages through Mosquitto into a `billing-oss serve` process;
- HTTP: 1,000-record batches POSTed to the same server (4 concurrent clients);
- SFTP: 3GPP TS 32.297 files collected from an in-process asyncssh server by the poller,
  beside the direct ingest of other files of the same shape;
- latency: MQTT at a steady 10,000 records/s, publish → committed charge, p50/p99.

    python perf/bench_adapters.py [--quick] [--only files,http,mqtt,latency] [--database-url DSN]

Runs against ``--database-url`` (or BILLING_OSS_TEST_DATABASE_URL) where given — a database is
created and dropped there — else an embedded PostgreSQL in a temporary directory, tuned as
``billing-oss serve`` tunes its own. Needs ``mosquitto`` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import asyncssh
import msgspec

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

import bench_ingest  # noqa: E402  (perf/ is on sys.path: this script's folder)
from served import free_port  # noqa: E402  (perf/ is on sys.path)

from billing_oss.adapters.sftp import SftpPoller  # noqa: E402
from billing_oss.core.sources_config import SftpSource  # noqa: E402
from billing_oss.server import config  # noqa: E402
from billing_oss.server.composition import decoders, rater_factory  # noqa: E402
from billing_oss.server.pipeline.pipeline import Pipeline  # noqa: E402
from billing_oss.server.store import api_keys, catalog_repo  # noqa: E402
from billing_oss.server.store.dsn import with_database  # noqa: E402
from billing_oss.server.store.migrate import migrate  # noqa: E402
from tests.generators.threegpp_files import write_3gpp_file  # noqa: E402

A1 = "33610000001"  # an account of bench_ingest.catalog()


def record(key: str, **extra: Any) -> dict[str, Any]:
    return {"record_key": key, "kind": "voice", "event_time": "2026-03-02T10:00:00Z",
            "calling": A1, "called": "33612345678", "duration_s": 95, **extra}


async def wait_count(pool: asyncpg.Pool, source: str, expected: int, last_key: str,
                     within: float) -> float:
    """When ``expected`` records of ``source`` are committed. The last record published is
    looked up by key until it is there (cheap); only then are the records counted."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await pool.fetchval("SELECT 1 FROM usage_keys WHERE source = $1 AND record_key = $2",
                               source, last_key):
            break
        await asyncio.sleep(0.01)
    while time.monotonic() < deadline:
        if await pool.fetchval("SELECT count(*) FROM usage_keys WHERE source = $1",
                               source) >= expected:
            return time.monotonic()
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{source}: fewer than {expected} records after {within}s")


# The publisher runs in its own process so its CPU is not the server's. It prints a line
# once connected (the clock starts there) and, at a set rate, each message's publish time.
# Its records are those of the HTTP bodies and jsonl files (no attrs), so the MQTT figure
# is compared with its peer over the same rows.
PUBLISHER = r"""
import asyncio, sys, time, aiomqtt, msgspec
host, port, topic, messages, per, rate, tag = sys.argv[1:8]
messages, per, rate = int(messages), int(per), float(rate)
async def main():
    async with aiomqtt.Client(host, int(port), protocol=aiomqtt.ProtocolVersion.V5,
                              max_inflight_messages=1000) as c:
        c.pending_calls_threshold = 10**9
        print("connected", flush=True)
        start = time.monotonic()
        pending = []
        for i in range(messages):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent = time.time()
            body = msgspec.json.encode({"records": [
                {"record_key": f"{tag}-{i}-{j}", "kind": "voice",
                 "event_time": "2026-03-02T10:00:00Z", "calling": "33610000001",
                 "called": "33612345678", "duration_s": 95}
                for j in range(per)]})
            pending.append(asyncio.ensure_future(c.publish(topic, body, qos=1)))
            if rate:
                print(i, sent, flush=True)
            if len(pending) >= (1 if rate else 500):
                await asyncio.gather(*pending); pending = []
        await asyncio.gather(*pending)
asyncio.run(main())
"""
PER_MESSAGE = 100


async def publish(port: int, source: str, messages: int, rate: float, tag: str
                  ) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, "127.0.0.1", str(port), f"usage/{source}/voice",
        str(messages), str(PER_MESSAGE), str(rate), tag, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    await proc.stdout.readline()
    return proc


async def bench_mqtt(pool: asyncpg.Pool, port: int, source: str, messages: int) -> float:
    tag = uuid.uuid4().hex[:8]
    proc = await publish(port, source, messages, 0, tag)
    started = time.monotonic()
    done = await wait_count(pool, source, messages * PER_MESSAGE,
                            f"{tag}-{messages - 1}-{PER_MESSAGE - 1}", within=300)
    await proc.wait()
    return messages * PER_MESSAGE / (done - started)


async def bench_latency(pool: asyncpg.Pool, port: int, source: str, seconds: int,
                        records_per_s: int = 10_000) -> tuple[float, float, float]:
    """Publish at a steady rate; watch (every 5 ms) for the last record of each message to
    be committed: publish → visible to an operator's query. Returns p50, p99 and max."""
    messages = seconds * records_per_s // PER_MESSAGE
    tag = uuid.uuid4().hex[:8]
    proc = await publish(port, source, messages, records_per_s / PER_MESSAGE, tag)
    sent: dict[str, float] = {}  # key of a message's last record → its publish time

    async def read_sent() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            index, when = line.split()
            sent[f"{tag}-{int(index)}-{PER_MESSAGE - 1}"] = float(when)

    reader = asyncio.create_task(read_sent())
    lags: list[float] = []
    deadline = time.monotonic() + seconds + 60
    while len(lags) < messages and time.monotonic() < deadline:
        # Only messages published by now, looked up by key: the watch must not load the
        # database itself.
        keys = list(itertools.islice(sent, 1000))
        found = await pool.fetch("SELECT record_key FROM usage_keys WHERE source = $1"
                                 " AND record_key = ANY($2::text[])", source, keys)
        seen = time.time()
        for row in found:
            lags.append(seen - sent.pop(row["record_key"]))
        await asyncio.sleep(0.005)
    await proc.wait()
    await reader
    assert len(lags) == messages, f"{messages - len(lags)} messages never committed"
    lags.sort()
    return lags[len(lags) // 2], lags[int(len(lags) * 0.99)], lags[-1]


async def bench_http(url: str, token: str, batches: int) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    tag = uuid.uuid4().hex[:8]
    bodies = [msgspec.json.encode({"records": [record(f"{tag}-{b}-{i}") for i in range(1000)]})
              for b in range(batches)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def client(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            async with http.post(f"{url}/v1/usage", data=body, headers=headers) as r:
                assert r.status == 200, await r.text()
                result = await r.json()
                assert result["counts"]["charged"] == 1000, result

    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        await asyncio.gather(*(client(http) for _ in range(4)))
        return batches * 1000 / (time.monotonic() - started)


class _SshServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return password == "bench"


def write_jsonl_files(folder: Path, prefix: str, files: int, per: int) -> None:
    tag = uuid.uuid4().hex[:8]
    for f in range(files):
        lines = [msgspec.json.encode({**record(f"{tag}-{f}-{i}"), "source": ""})
                 for i in range(per)]
        (folder / f"{prefix}_{f + 1:05d}.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def write_3gpp_files(folder: Path, prefix: str, files: int, per: int, first: int) -> None:
    """32.297 files of distinct 32.298 records (numbered from ``first``), all chargeable."""
    rng = random.Random(first)
    for f in range(files):
        start = first + f * per
        with (folder / f"{prefix}_{f + 1:05d}.dat").open("wb") as fh:
            write_3gpp_file(fh, (bench_ingest._cdr(i, rng) for i in range(start, start + per)),
                            sequence_number=f + 1)


async def direct_rate(pipeline: Pipeline, folder: Path, fmt: str, source: str,
                      records: int) -> tuple[float, str]:
    paths = sorted(folder.iterdir())  # noqa: ASYNC240  (before the clock starts)
    cpu = CpuMeter(pipeline.pool, None)
    await cpu.start()
    started = time.monotonic()
    for path in paths:
        outcome = await pipeline.ingest_file(path, source=source, format=fmt)
        assert not outcome.replay
    rate = records / (time.monotonic() - started)
    return rate, await cpu.per_record(records)


async def bench_files(pool: asyncpg.Pool, pipeline: Pipeline, tmp: Path, files: int,
                      per: int) -> tuple[tuple[float, str], tuple[float, str], float]:
    """Direct ingest of jsonl and 32.297 files (rate and CPU per record), and 32.297 files
    collected over SFTP."""
    for folder in ("jsonl", "3gpp", "sftp/out"):
        (tmp / folder).mkdir(parents=True)
    write_jsonl_files(tmp / "jsonl", "direct", files, per)
    write_3gpp_files(tmp / "3gpp", "direct", files, per, first=0)
    write_3gpp_files(tmp / "sftp" / "out", "cdr", files, per, first=files * per)
    await pipeline.raters.current()  # build the rater before the clock starts
    jsonl = await direct_rate(pipeline, tmp / "jsonl", "jsonl", "bench-jsonl", files * per)
    direct = await direct_rate(pipeline, tmp / "3gpp", "3gpp", "bench-3gpp", files * per)

    key = asyncssh.generate_private_key("ssh-ed25519")
    port = free_port()
    root = tmp / "sftp"
    server = await asyncssh.create_server(
        _SshServer, "127.0.0.1", port, server_host_keys=[key],
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()))
    cfg = SftpSource(host="127.0.0.1", port=port, username="bench", password="bench",
                     known_host_key=key.export_public_key().decode().strip(),
                     remote_dir="/out", format="3gpp", pattern="cdr_*",
                     min_age_s=0)  # the files were just written, and are complete
    poller = SftpPoller("bench-sftp", cfg, pipeline, pool)
    try:
        started = time.monotonic()
        async with poller._connect() as conn, conn.start_sftp_client() as sftp:
            assert await poller.poll(sftp) == files
        via_sftp = files * per / (time.monotonic() - started)
    finally:
        server.close()
    charged = await pool.fetchval(
        "SELECT count(*) FROM usage_records WHERE source = 'bench-sftp'")
    assert charged == files * per, f"{charged} of {files * per} SFTP records charged"
    return jsonl, direct, via_sftp


class CpuMeter:
    """CPU seconds spent by the process taking a part's records (this one for direct file
    ingest, the ``serve`` process for HTTP and MQTT) and by the database's PostgreSQL
    backends, while the part runs. The machine is shared: a rate depends on what else runs
    at the time, CPU per record much less (a part is compared with its peer by both)."""

    def __init__(self, pool: asyncpg.Pool, pid: int | None) -> None:
        self.pool, self.pid = pool, pid

    async def _pids(self) -> list[int]:
        return [r[0] for r in await self.pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")]

    def _own(self) -> float:
        if self.pid is None:
            return time.process_time()
        return bench_ingest._proc_cpu_s(self.pid) or 0.0

    async def start(self) -> None:
        self.backends = bench_ingest.Backends()
        for pid in await self._pids():
            self.backends.add(pid)
        self.started = self._own()

    async def per_record(self, records: int) -> str:
        own = self._own() - self.started
        for pid in await self._pids():  # connections opened meanwhile count from the start
            if pid not in self.backends.start:
                self.backends.start[pid], self.backends.seen[pid] = 0.0, 0.0
        server = self.backends.spent()
        if not self.backends.readable:
            return ""
        return (f"; CPU/record {own / records * 1e6:.1f} + {server / records * 1e6:.1f} µs"
                f" (intake + PostgreSQL)")


PARTS = ("files", "http", "mqtt", "latency")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run (default: {','.join(PARTS)})")
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_TEST_DATABASE_URL"))
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--only takes some of {', '.join(PARTS)}")
    async with bench_ingest.server(args.database_url) as admin_dsn:
        return await run(admin_dsn, parts, 0.05 if args.quick else 1.0, args.quick)


async def run(admin_dsn: str, parts: set[str], scale: float, quick: bool) -> int:
    name = f"bench_adapters_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(admin_dsn, name)
    tmp = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    broker = server = None
    lines: list[str] = []
    try:
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=8)
        assert pool is not None
        await migrate(pool)
        await catalog_repo.load_catalog(pool, bench_ingest.catalog())
        token = (await api_keys.create(pool, "ingest", name="bench", source="bench-http")).token
        pipeline = Pipeline(pool, config.load(env={}).pipeline, rater_factory=rater_factory(),
                            decoders=decoders())

        mqtt_port, http_port = free_port(), free_port()
        (tmp / "mosquitto.conf").write_text(
            f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\n"
            "max_inflight_messages 2000\nmax_queued_messages 1000000\n"
            + ("user root\n" if os.geteuid() == 0 else ""))
        broker = await asyncio.create_subprocess_exec(
            shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(tmp / "mosquitto.conf"),
            stderr=subprocess.DEVNULL)
        (tmp / "serve.toml").write_text(
            f'[sources.bench-mqtt]\ntype = "mqtt"\nport = {mqtt_port}\n'
            'topics = ["usage/bench-mqtt/#"]\nclient_id = "bench"\n'
            '[sources.bench-lat]\ntype = "mqtt"\n'
            f'port = {mqtt_port}\ntopics = ["usage/bench-lat/#"]\nclient_id = "bench-lat"\n')
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "billing_oss", "serve", "--config", str(tmp / "serve.toml"),
            "--database-url", dsn, "--port", str(http_port), "--log-level", "warning",
            cwd=tmp, env={k: v for k, v in os.environ.items() if not k.startswith("BILLING_OSS_")})
        url = f"http://127.0.0.1:{http_port}"
        await wait_ready(url)

        files, per = max(2, int(20 * scale)), 10_000
        jsonl_rate = file_rate = 0.0
        if "files" in parts:
            (jsonl_rate, jsonl_cpu), (file_rate, file_cpu), sftp_rate = await bench_files(
                pool, pipeline, tmp, files, per)
            lines.append(f"pipeline file ingest, jsonl ({files} x {per:,}, direct)"
                         f"  {jsonl_rate:>9,.0f} records/s{jsonl_cpu}")
            lines.append(f"pipeline file ingest, 32.297 ({files} x {per:,}, direct)"
                         f" {file_rate:>9,.0f} records/s{file_cpu}")
            lines.append(f"SFTP 32.297 files ({files} x {per:,}, poller)    {sftp_rate:>9,.0f}"
                         f" records/s{_versus(sftp_rate, file_rate, '32.297', 100_000)}")
        served = CpuMeter(pool, server.pid)
        if "http" in parts:
            batches = max(5, int(300 * scale))
            await served.start()
            http_rate = await bench_http(url, token, batches)
            lines.append(f"HTTP 1,000-record batches (4 clients)      {http_rate:>9,.0f}"
                         f" records/s{_versus(http_rate, jsonl_rate, 'jsonl', 60_000)}"
                         f"{await served.per_record(batches * 1000)}")
        if "mqtt" in parts:
            messages = max(50, int(3000 * scale))
            await served.start()
            mqtt_rate = await bench_mqtt(pool, mqtt_port, "bench-mqtt", messages)
            lines.append(f"MQTT 100-record messages via Mosquitto     {mqtt_rate:>9,.0f}"
                         f" records/s{_versus(mqtt_rate, jsonl_rate, 'jsonl', 50_000)}"
                         f"{await served.per_record(messages * PER_MESSAGE)}")
        if "latency" in parts:
            p50, p99, worst = await bench_latency(pool, mqtt_port, "bench-lat",
                                                  seconds=3 if quick else 15)
            lines.append(f"MQTT at 10,000 records/s, publish -> committed: p50 {p50 * 1000:.0f}"
                         f" ms, p99 {p99 * 1000:.0f} ms, max {worst * 1000:.0f} ms"
                         f" (target p99 <= 250 ms, max <= 1 s)")
        await pool.close()
    finally:
        for proc in (server, broker):
            if proc is not None:
                proc.send_signal(signal.SIGINT if proc is server else signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 60)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(lines))
    return 0


def _versus(rate: float, peer: float, what: str, target: int) -> str:
    ratio = f"{rate / peer:.2f}x {what} file ingest; " if peer else ""
    return f"  ({ratio}target >= {target:,})"


async def wait_ready(url: str) -> None:
    """Until the server answers and both MQTT sources are connected."""
    for _ in range(600):
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as r:
                text = await r.text()
            connected = [line for line in text.splitlines()
                         if line.startswith("billing_mqtt_connected{")]
            if len(connected) == 2 and all(line.endswith(" 1.0") for line in connected):
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError("the server did not come up")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
