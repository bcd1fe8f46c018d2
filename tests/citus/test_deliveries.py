"""`billing-oss serve --database-url <coordinator>`: HTTP, MQTT and SFTP deliveries on Citus
give what they give on one PostgreSQL.

The same server process runs against a Citus database and against a plain one, each fed the
same HTTP batches (one sent twice: committed once), MQTT messages through a real Mosquitto
and files collected from an SFTP server; the per-account charges, the committed positions
and the files' ledger must match.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import asyncssh
import msgspec
import pytest

from tests.citus.test_flows import ACCOUNTS, catalog, cli
from tests.conftest import Broker, free_port, wait_for_port
from tests.sftp_server import PASSWORD, sftp_server

pytestmark = pytest.mark.citus

BATCHES = 6
PER_BATCH = 25
MESSAGES = 40
FILES = 3
PER_FILE = 50
Sftp = tuple[Path, int, str]  # the server's root folder, port and host key


@pytest.fixture(scope="module")
async def sftp(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sftp]:
    root = tmp_path_factory.mktemp("sftp")
    key = asyncssh.generate_private_key("ssh-ed25519")
    async with sftp_server(root, key) as port:
        yield root, port, key.export_public_key().decode().strip()


@asynccontextmanager
async def serving(database_url: str, broker: Broker, tmp: Path, topic: str, sftp: Sftp,
                  folder: str) -> AsyncIterator[int]:
    port = free_port()
    config = tmp / "server.toml"
    _, sftp_port, host_key = sftp
    config.write_text(f'[sources.devices]\ntype = "mqtt"\nhost = "{broker.host}"\n'
                      f'port = {broker.port}\ntopics = ["{topic}/#"]\n'
                      f'[sources.files]\ntype = "sftp"\nhost = "127.0.0.1"\n'
                      f'port = {sftp_port}\nusername = "billing"\npassword = "{PASSWORD}"\n'
                      f'known_host_key = "{host_key}"\nremote_dir = "/{folder}"\n'
                      f'format = "jsonl"\npattern = "*.jsonl"\nmin_age_s = 0\n'
                      f'completion = "rename"\npoll_interval_s = 0.2\n')
    # Serve is awaited, not waited for: the SFTP server runs on this loop, and serve's SFTP
    # client needs its answers, to the close of the session too.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "billing_oss", "serve", "--database-url", database_url,
        "--port", str(port), "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "false"})
    try:
        await asyncio.to_thread(wait_for_port, port, timeout=120)
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        # It finishes the work in flight first; on a one-box cluster sharing two cores that
        # once took over a minute.
        _, err = await asyncio.wait_for(proc.communicate(), 420)
        assert b"Traceback" not in err, err.decode()


def record(n: int, source: str) -> dict[str, Any]:
    number = f"3361900{n % ACCOUNTS:04d}"
    return {"record_key": f"{source}-{n}", "source": source, "kind": "voice",
            "event_time": f"2026-03-{1 + n % 28:02d}T{8 + n % 10:02d}:15:00Z",
            "calling": number, "msisdn": number, "called": "33145678901",
            "duration_s": 20 + n % 300}


async def deliver(database_url: str, broker: Broker, tmp: Path, sftp: Sftp) -> None:
    (tmp / "catalog.json").write_text(json.dumps(catalog()))
    out = cli(["catalog", "load", str(tmp / "catalog.json")], database_url)
    assert out.returncode == 0, out.stderr
    out = cli(["api-key", "create", "--role", "ingest", "--source", "gw1"], database_url)
    assert out.returncode == 0, out.stderr
    token = out.stdout.splitlines()[0].strip()
    topic, folder = f"usage-{tmp.name}", f"files-{tmp.name}"
    (sftp[0] / folder).mkdir()
    async with serving(database_url, broker, tmp, topic, sftp, folder) as port:
        url = f"http://127.0.0.1:{port}/v1/usage"
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            for b in [*range(BATCHES), 0]:  # the first batch again: a replay
                body = {"records": [record(b * PER_BATCH + i, "gw1")
                                    for i in range(PER_BATCH)]}
                async with http.post(url, json=body,
                                     headers={**headers, "Idempotency-Key": f"b{b}"}) as r:
                    assert r.status == 200, await r.text()
        # One message per line of stdin (-l), each one record.
        pub = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1",
            "-t", f"{topic}/devices/voice", "-l", stdin=asyncio.subprocess.PIPE)
        lines = "".join(json.dumps(record(m, "devices")) + "\n" for m in range(MESSAGES))
        await asyncio.wait_for(pub.communicate(lines.encode()), 60)
        assert pub.returncode == 0
        for f in range(FILES):  # written aside, then renamed into the polled folder
            lines = (msgspec.json.encode(record(1000 + f * PER_FILE + i, "files"))
                     for i in range(PER_FILE))
            part = sftp[0] / folder / f".f{f}.part"
            part.write_bytes(b"\n".join(lines) + b"\n")
            part.rename(sftp[0] / folder / f"usage-{f}.jsonl")
        expected = BATCHES * PER_BATCH + MESSAGES + FILES * PER_FILE
        conn = await asyncpg.connect(database_url)
        try:
            deadline = time.monotonic() + 120
            while await conn.fetchval("SELECT count(*) FROM charges") < expected:
                assert time.monotonic() < deadline, "deliveries not all charged in 120 s"
                await asyncio.sleep(0.5)
        finally:
            await conn.close()


async def outcome(database_url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        totals = await conn.fetch(
            "SELECT c.account_id, u.source, count(*) AS n, sum(c.amount_micros) AS micros"
            " FROM charges c JOIN usage_records u ON u.account_id = c.account_id"
            " AND u.event_time = c.event_time AND u.usage_id = c.usage_id"
            " GROUP BY 1, 2 ORDER BY 1, 2")
        keys = await conn.fetchval("SELECT count(*) FROM usage_keys")
        idempotent = await conn.fetchval("SELECT count(*) FROM http_idempotency_keys")
        files = await conn.fetch("SELECT name, state, count_in FROM source_files"
                                 " ORDER BY name")
    finally:
        await conn.close()
    return {"totals": [tuple(r) for r in totals], "keys": keys, "idempotent": idempotent,
            "files": [tuple(r) for r in files]}


async def test_http_mqtt_and_sftp_deliveries_equal_single_node(
        citus_url: str, plain_url: str, mqtt_broker: Broker, sftp: Sftp,
        tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "p").mkdir()
    await deliver(citus_url, mqtt_broker, tmp_path / "c", sftp)
    await deliver(plain_url, mqtt_broker, tmp_path / "p", sftp)
    on_citus, on_one = await outcome(citus_url), await outcome(plain_url)
    assert on_one["keys"] == BATCHES * PER_BATCH + MESSAGES + FILES * PER_FILE
    assert on_one["files"] == [(f"usage-{f}.jsonl", "done", PER_FILE) for f in range(FILES)]
    assert on_one["idempotent"] == BATCHES
    assert on_citus == on_one
