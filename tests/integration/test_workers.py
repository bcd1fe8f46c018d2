"""`serve --workers 3` against real PostgreSQL, Mosquitto and an asyncssh SFTP server: MQTT,
SFTP and HTTP traffic at once while a worker is SIGKILLed mid-stream twice; afterwards the
database holds what a single-worker run of the same inputs holds, record for record."""

import asyncio
import functools
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import asyncssh
import msgspec
import pytest

from billing_oss.server.store import api_keys
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate
from tests.conftest import Broker, free_port, wait_for_port, wait_until
from tests.sftp_server import PASSWORD, sftp_server

A1 = "33611111111"  # the demo catalog's account
MQ, SF, GW = "wmq", "wsf", "wgw"  # the three sources


@dataclass(frozen=True)
class Traffic:
    messages: int  # MQTT messages of `per_message` records (every 25th malformed)
    per_message: int
    files: int  # SFTP files of `per_file` records
    per_file: int
    posts: int  # HTTP requests of `per_post` records
    per_post: int
    pace_s: float  # the producers spread their traffic over about this long

    @property
    def total(self) -> int:
        bad = len([i for i in range(self.messages) if i % 25 == 24])
        return ((self.messages - bad) * self.per_message + self.files * self.per_file
                + self.posts * self.per_post)


FAST = Traffic(messages=150, per_message=20, files=6, per_file=300, posts=40, per_post=20,
               pace_s=10)
LARGE = Traffic(messages=600, per_message=50, files=20, per_file=1000, posts=200,
                per_post=50, pace_s=40)


@pytest.fixture(scope="module")
async def sftp_root(tmp_path_factory: pytest.TempPathFactory
                    ) -> AsyncIterator[tuple[Path, int, str]]:
    root = tmp_path_factory.mktemp("sftp")
    key = asyncssh.generate_private_key("ssh-ed25519")
    async with sftp_server(root, key) as port:
        yield root, port, key.export_public_key().decode().strip()


async def fresh_database(admin_dsn: str) -> tuple[str, asyncpg.Pool]:
    name = f"t_workers_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(admin_dsn, name)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    assert pool is not None
    await migrate(pool)
    return url, pool


async def drop_database(admin_dsn: str, url: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[-1]}" WITH (FORCE)')
    finally:
        await admin.close()


def voice(key: str, calling: str = A1) -> dict[str, Any]:
    return {"record_key": key, "kind": "voice", "event_time": "2026-03-02T10:00:00Z",
            "calling": calling, "called": "33612345678", "duration_s": 61}


def records(prefix: str, n: int) -> list[dict[str, Any]]:
    # every 10th record names no known account: it goes to suspense
    return [voice(f"{prefix}-{j}", calling="49000000" if j % 10 == 9 else A1)
            for j in range(n)]


def mqtt_messages(t: Traffic) -> list[bytes]:
    return [b"{not json " + str(i).encode() if i % 25 == 24
            else msgspec.json.encode({"records": records(f"m{i}", t.per_message)})
            for i in range(t.messages)]


def config_file(path: Path, run: str, broker: Broker, sftp: tuple[Path, int, str]) -> Path:
    root, port, host_key = sftp
    (root / run).mkdir()
    path.write_text(f"""
[sources.{MQ}]
type = "mqtt"
host = "{broker.host}"
port = {broker.port}
topics = ["usage/{MQ}/#"]
client_id = "{run}-{uuid.uuid4().hex[:8]}"
session_expiry_s = 600
reconnect_max_s = 1.0
flush_ms = 50
batch_records = 400

[sources.{SF}]
type = "sftp"
host = "127.0.0.1"
port = {port}
username = "billing"
password = "{PASSWORD}"
known_host_key = "{host_key}"
remote_dir = "/{run}"
format = "jsonl"
pattern = "{SF}_*.jsonl"
min_age_s = 0
completion = "rename"
poll_interval_s = 0.2
""")
    return path


class Run:
    """One `serve` (supervisor and workers, or a single process) and its traffic."""

    def __init__(self, run: str, workers: int, url: str, pool: asyncpg.Pool, conf: Path,
                 cwd: Path) -> None:
        self.run, self.workers, self.url, self.pool = run, workers, url, pool
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "billing_oss", "serve", "--config", str(conf),
             "--database-url", url, "--port", str(self.port), "--workers", str(workers)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd,
            env={k: v for k, v in os.environ.items() if not k.startswith("BILLING_OSS_")})

    async def ready(self) -> None:
        await asyncio.to_thread(wait_for_port, self.port, 120)
        assert await wait_until(self._subscribed, within=60), "no MQTT subscription"
        if self.workers > 1:
            assert await wait_until(lambda: _true(len(self.children()) == self.workers),
                                    within=60)

    async def _subscribed(self) -> bool:
        try:
            async with aiohttp.ClientSession() as http, \
                    http.get(f"http://127.0.0.1:{self.port}/metrics") as r:
                return f'billing_mqtt_connected{{source="{MQ}"}} 1.0' in await r.text()
        except aiohttp.ClientError:
            return False

    def children(self) -> dict[int, int]:
        """Worker index → pid, of the supervisor's live children."""
        found: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) != self.proc.pid or \
                    b"--worker-index" not in argv:
                continue
            found[int(argv[argv.index(b"--worker-index") + 1])] = int(entry.name)
        return found

    async def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.proc.wait, 120)
        stderr = self.proc.stderr.read().decode() if self.proc.stderr else ""
        assert code == 0, stderr[-3000:]

    def kill_all(self) -> None:
        for pid in self.children().values():
            with _gone():
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


class _gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, *_: Any) -> bool:
        return kind is ProcessLookupError


async def _true(value: bool) -> bool:
    return value


async def produce(run: Run, t: Traffic, broker: Broker, sftp_root: Path, token: str,
                  paced: bool) -> None:
    """All three kinds of traffic at once; returns when every HTTP batch was answered 200
    and every message and file is handed over."""
    import aiomqtt

    async def mqtt() -> None:
        messages = mqtt_messages(t)
        async with aiomqtt.Client(broker.host, broker.port,
                                  identifier=f"pub-{uuid.uuid4().hex}",
                                  protocol=aiomqtt.ProtocolVersion.V5) as client:
            for i, body in enumerate(messages):
                await client.publish(f"usage/{MQ}/voice", body, qos=1)
                if paced and i % 10 == 9:
                    await asyncio.sleep(t.pace_s / t.messages * 10)

    async def files() -> None:
        folder = sftp_root / run.run
        for i in range(t.files):
            lines = b"\n".join(msgspec.json.encode(r) for r in records(f"f{i}", t.per_file))
            tmp = folder / f".{SF}_{i:04d}.part"
            tmp.write_bytes(lines + b"\n")
            tmp.rename(folder / f"{SF}_{i:04d}.jsonl")
            if paced:
                await asyncio.sleep(t.pace_s / t.files)

    async def http() -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session:
            for i in range(t.posts):
                body = msgspec.json.encode({"records": records(f"h{i}", t.per_post)})
                for _ in range(200):  # a killed worker drops its connections: send again
                    try:
                        async with session.post(f"http://127.0.0.1:{run.port}/v1/usage",
                                                data=body, headers=headers) as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.2)
                else:
                    raise AssertionError(f"HTTP batch {i} never accepted")
                if paced:
                    await asyncio.sleep(t.pace_s / t.posts)

    await asyncio.gather(mqtt(), files(), http())


async def finished(pool: asyncpg.Pool, t: Traffic) -> bool:
    offsets = await pool.fetchval("SELECT count(*) FROM source_offsets WHERE source = $1", MQ)
    files = await pool.fetchval("SELECT count(*) FROM source_files WHERE source = $1"
                                " AND state = 'done'", SF)
    return bool(offsets == t.messages and files == t.files)


async def taken(pool: asyncpg.Pool) -> int:
    n: int = await pool.fetchval(
        "SELECT (SELECT count(*) FROM usage_records) + (SELECT count(*) FROM suspense)")
    return n


async def killer(run: Run, t: Traffic) -> list[int]:
    """SIGKILL a worker twice while traffic flows: once a tenth of it is in, and again once
    the first victim's replacement runs and another fifth is in. The counts at each kill."""
    at: list[int] = []
    for index, share in ((1, 0.1), (2, 0.3)):
        assert await wait_until(functools.partial(_above, run.pool, t.total * share),
                                within=180)
        if index == 2:
            assert await wait_until(lambda: _true(len(run.children()) == run.workers),
                                    within=60), "the killed worker was not started again"
        os.kill(run.children()[index], signal.SIGKILL)
        at.append(await taken(run.pool))
    return at


async def _above(pool: asyncpg.Pool, n: float) -> bool:
    return await taken(pool) > n


SNAPSHOT = {
    "usage": "SELECT to_jsonb(u) - 'usage_id' - 'source_file_id' - 'ingested_at' AS r"
             " FROM usage_records u",
    "charges": "SELECT to_jsonb(c) - 'charge_id' - 'usage_id' - 'created_at'"
               " - 'tariff_version_id' || jsonb_build_object('record', u.record_key) AS r"
               " FROM charges c JOIN usage_records u USING (account_id, usage_id)",
    "suspense": "SELECT to_jsonb(s) - 'suspense_id' - 'source_file_id' - 'created_at' AS r"
                " FROM suspense s",
    "source_files": "SELECT to_jsonb(f) - 'source_file_id' - 'received_at' - 'completed_at'"
                    " AS r FROM source_files f",
}


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[str]]:
    return {table: sorted(row["r"] for row in await pool.fetch(sql))
            for table, sql in SNAPSHOT.items()}


async def one_run(run: Run, t: Traffic, broker: Broker, sftp_root: Path, *,
                  kill: bool) -> list[int]:
    token = (await api_keys.create(run.pool, "ingest", name="gateway", source=GW)).token
    try:
        await run.ready()
        producing = asyncio.create_task(produce(run, t, broker, sftp_root, token, paced=kill))
        kills = await killer(run, t) if kill else []
        await producing
        assert await wait_until(lambda: finished(run.pool, t), within=240, interval=0.5), \
            await taken(run.pool)
        if kill:  # the second victim is back too before the shutdown
            assert await wait_until(lambda: _true(len(run.children()) == run.workers),
                                    within=60)
        await run.stop()
    finally:
        run.kill_all()
    return kills


async def compare_with_single_worker(t: Traffic, pg_admin_dsn: str, broker: Broker,
                                     sftp_root: tuple[Path, int, str], tmp_path: Path) -> None:
    (multi_url, multi), (single_url, single) = (await fresh_database(pg_admin_dsn),
                                                await fresh_database(pg_admin_dsn))
    try:
        run = Run("multi", 3, multi_url, multi,
                  config_file(tmp_path / "multi.toml", "multi", broker, sftp_root), tmp_path)
        kills = await one_run(run, t, broker, sftp_root[0], kill=True)
        assert len(kills) == 2 and all(0 < k < t.total for k in kills), kills
        run = Run("single", 1, single_url, single,
                  config_file(tmp_path / "single.toml", "single", broker, sftp_root),
                  tmp_path)
        await one_run(run, t, broker, sftp_root[0], kill=False)
        got, expected = await snapshot(multi), await snapshot(single)
        assert len(expected["usage"]) + len(expected["suspense"]) == t.total + t.messages // 25
        for table in SNAPSHOT:
            assert len(got[table]) == len(expected[table]), table
            assert got[table] == expected[table], table
        done = sorted(p.name for p in (sftp_root[0] / "multi" / "done").iterdir())
        assert done == [f"{SF}_{i:04d}.jsonl" for i in range(t.files)]
    finally:
        await multi.close()
        await single.close()
        await drop_database(pg_admin_dsn, multi_url)
        await drop_database(pg_admin_dsn, single_url)


async def test_three_workers_killed_twice_equal_one_worker(
        pg_admin_dsn: str, mqtt_broker: Broker, sftp_root: tuple[Path, int, str],
        tmp_path: Path) -> None:
    await compare_with_single_worker(FAST, pg_admin_dsn, mqtt_broker, sftp_root, tmp_path)


@pytest.mark.slow
async def test_three_workers_killed_twice_equal_one_worker_large(
        pg_admin_dsn: str, mqtt_broker: Broker, sftp_root: tuple[Path, int, str],
        tmp_path: Path) -> None:
    await compare_with_single_worker(LARGE, pg_admin_dsn, mqtt_broker, sftp_root, tmp_path)
