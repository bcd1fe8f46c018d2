"""Collection adapters end to end into PostgreSQL, each beside the pipeline's own file-ingest
rate measured in the same run:

- MQTT: 100-record messages through Mosquitto into a `billing-oss serve` process;
- HTTP: 1,000-record batches POSTed to the same server (4 concurrent clients);
- SFTP: files collected from an in-process asyncssh server by the poller;
- latency: MQTT at a steady 10,000 records/s, publish → committed charge, p50/p99.

    python perf/bench_adapters.py [--quick] [--database-url DSN]

Needs PostgreSQL (``--database-url`` or BILLING_OSS_TEST_DATABASE_URL; a database is created
and dropped) and ``mosquitto`` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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

from adapters.sftp import SftpPoller  # noqa: E402
from server import config  # noqa: E402
from server.pipeline.pipeline import Pipeline  # noqa: E402
from server.service import decoders, load_demo_catalog, rater_factory  # noqa: E402
from server.sources_config import SftpSource  # noqa: E402
from server.store import api_keys  # noqa: E402
from server.store.dsn import with_database  # noqa: E402
from server.store.migrate import migrate  # noqa: E402

A1 = "33611111111"


def record(key: str, **extra: Any) -> dict[str, Any]:
    return {"record_key": key, "kind": "voice", "event_time": "2026-03-02T10:00:00Z",
            "calling": A1, "called": "33612345678", "duration_s": 95, **extra}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_count(pool: asyncpg.Pool, source: str, expected: int, within: float) -> float:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await pool.fetchval("SELECT count(*) FROM usage_keys WHERE source = $1",
                               source) >= expected:
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{source}: fewer than {expected} records after {within}s")


# The publisher runs in its own process so its CPU is not the server's.
PUBLISHER = r"""
import asyncio, sys, time, aiomqtt, msgspec
host, port, topic, messages, per, rate, tag = sys.argv[1:8]
messages, per, rate = int(messages), int(per), float(rate)
async def main():
    async with aiomqtt.Client(host, int(port), protocol=aiomqtt.ProtocolVersion.V5,
                              max_inflight_messages=1000) as c:
        c.pending_calls_threshold = 10**9
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
                 "event_time": "2026-03-02T10:00:00Z", "calling": "33611111111",
                 "called": "33612345678", "duration_s": 95, "attrs": {"sent": sent}}
                for j in range(per)]})
            pending.append(asyncio.ensure_future(c.publish(topic, body, qos=1)))
            if len(pending) >= 500:
                await asyncio.gather(*pending); pending = []
        await asyncio.gather(*pending)
asyncio.run(main())
"""


async def bench_mqtt(pool: asyncpg.Pool, port: int, source: str, messages: int,
                     rate: float = 0) -> float:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, "127.0.0.1", str(port), f"usage/{source}/voice",
        str(messages), "100", str(rate), uuid.uuid4().hex[:8])
    started = time.monotonic()
    done = await wait_count(pool, source, messages * 100, within=300)
    await proc.wait()
    return messages * 100 / (done - started)


async def latency(pool: asyncpg.Pool, source: str) -> tuple[float, float]:
    rows = await pool.fetch(
        "SELECT extract(epoch FROM c.created_at) - (u.attrs->>'sent')::float8 AS lag"
        " FROM usage_records u JOIN charges c USING (account_id, usage_id)"
        " WHERE u.source = $1", source)
    lags = sorted(r["lag"] for r in rows)
    return lags[len(lags) // 2], lags[int(len(lags) * 0.99)]


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
                await r.read()

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


def write_files(folder: Path, prefix: str, files: int, per: int) -> None:
    tag = uuid.uuid4().hex[:8]
    for f in range(files):
        lines = [msgspec.json.encode({**record(f"{tag}-{f}-{i}"), "source": ""})
                 for i in range(per)]
        (folder / f"{prefix}_{f + 1:05d}.jsonl").write_bytes(b"\n".join(lines) + b"\n")


async def bench_files(pool: asyncpg.Pool, pipeline: Pipeline, tmp: Path, files: int,
                      per: int) -> tuple[float, float, str]:
    fmt = "jsonl"  # 32.297 once its decoder is registered in server.service.decoders
    if "3gpp" in pipeline.decoders:
        fmt = "3gpp"
    local = tmp / "local"
    local.mkdir()
    write_files(local, "direct", files, per)
    started = time.monotonic()
    for path in sorted(local.iterdir()):
        await pipeline.ingest_file(path, source="bench-direct", format="jsonl")
    direct = files * per / (time.monotonic() - started)

    root = tmp / "sftp"
    (root / "out").mkdir(parents=True)
    write_files(root / "out", "cdr", files, per)
    key = asyncssh.generate_private_key("ssh-ed25519")
    port = free_port()
    server = await asyncssh.create_server(
        _SshServer, "127.0.0.1", port, server_host_keys=[key],
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()))
    cfg = SftpSource(host="127.0.0.1", port=port, username="bench", password="bench",
                     known_host_key=key.export_public_key().decode().strip(),
                     remote_dir="/out", format="jsonl", pattern="cdr_*")
    poller = SftpPoller("bench-sftp", cfg, pipeline, pool)
    started = time.monotonic()
    async with poller._connect() as conn, conn.start_sftp_client() as sftp:
        assert await poller.poll(sftp) == files
    via_sftp = files * per / (time.monotonic() - started)
    server.close()
    return via_sftp, direct, fmt


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        print("bench_adapters: --database-url or BILLING_OSS_TEST_DATABASE_URL is needed",
              file=sys.stderr)
        return 2
    scale = 0.05 if args.quick else 1.0
    name = f"bench_adapters_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(args.database_url, name)
    tmp = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    broker = server = None
    try:
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=8)
        assert pool is not None
        await migrate(pool)
        cfg = config.load(env={})
        await load_demo_catalog(cfg, pool)
        token = (await api_keys.create(pool, "ingest", name="bench", source="bench-http")).token
        pipeline = Pipeline(pool, cfg.pipeline, rater_factory=rater_factory(),
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
            f'port = {mqtt_port}\ntopics = ["usage/bench-lat/#"]\nclient_id = "bench-lat"\n'
            "flush_ms = 10\n")
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "serve", "--config", str(tmp / "serve.toml"),
            "--database-url", dsn, "--port", str(http_port), "--log-level", "warning",
            cwd=tmp, env={k: v for k, v in os.environ.items() if not k.startswith("BILLING_OSS_")})
        url = f"http://127.0.0.1:{http_port}"
        for _ in range(600):
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as r:
                    text = await r.text()
                if text.count("billing_mqtt_connected{") == 2 and " 0.0" not in "".join(
                        line for line in text.splitlines() if "mqtt_connected{" in line):
                    break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)

        files, per = max(2, int(20 * scale)), 10_000
        sftp_rate, file_rate, fmt = await bench_files(pool, pipeline, tmp, files, per)
        http_rate = await bench_http(url, token, max(5, int(300 * scale)))
        mqtt_rate = await bench_mqtt(pool, mqtt_port, "bench-mqtt", max(50, int(3000 * scale)))
        seconds = 2 if args.quick else 10
        await bench_mqtt(pool, mqtt_port, "bench-lat", 100 * seconds, rate=100)
        p50, p99 = await latency(pool, "bench-lat")

        print(f"pipeline file ingest (jsonl, direct)    {file_rate:>10,.0f} records/s")
        print(f"MQTT 100-record messages via Mosquitto  {mqtt_rate:>10,.0f} records/s"
              f"  ({mqtt_rate / file_rate:.2f}x file ingest; target >= 50,000)")
        print(f"HTTP 1,000-record batches               {http_rate:>10,.0f} records/s"
              f"  ({http_rate / file_rate:.2f}x file ingest; target >= 60,000)")
        print(f"SFTP {fmt} files ({files} x {per:,})        {sftp_rate:>10,.0f} records/s"
              f"  ({sftp_rate / file_rate:.2f}x file ingest; target >= 100,000 for 32.297)")
        print(f"MQTT latency at 10,000 records/s        p50 {p50 * 1000:.0f} ms, "
              f"p99 {p99 * 1000:.0f} ms (target p99 <= 250 ms)")
        await pool.close()
    finally:
        for proc in (server, broker):
            if proc is not None:
                proc.send_signal(signal.SIGINT if proc is server else signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 60)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
