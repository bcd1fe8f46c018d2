"""`billing-oss serve --database-url <coordinator>`: HTTP and MQTT deliveries on Citus give
what they give on one PostgreSQL.

The same server process runs against a Citus database and against a plain one, each fed the
same HTTP batches (one sent twice: committed once) and MQTT messages through a real
Mosquitto; the per-account charges and the committed positions must match.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.citus.test_flows import ACCOUNTS, catalog, cli
from tests.conftest import Broker, free_port, wait_for_port

pytestmark = pytest.mark.citus

BATCHES = 6
PER_BATCH = 25
MESSAGES = 40


@contextmanager
def serving(database_url: str, broker: Broker, tmp: Path, topic: str) -> Iterator[int]:
    port = free_port()
    config = tmp / "server.toml"
    config.write_text(f'[sources.devices]\ntype = "mqtt"\nhost = "{broker.host}"\n'
                      f'port = {broker.port}\ntopics = ["{topic}/#"]\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "billing_oss", "serve", "--database-url", database_url,
         "--port", str(port), "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "false"})
    try:
        wait_for_port(port, timeout=120)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err


def record(n: int, source: str) -> dict[str, Any]:
    number = f"3361900{n % ACCOUNTS:04d}"
    return {"record_key": f"{source}-{n}", "source": source, "kind": "voice",
            "event_time": f"2026-03-{1 + n % 28:02d}T{8 + n % 10:02d}:15:00Z",
            "calling": number, "msisdn": number, "called": "33145678901",
            "duration_s": 20 + n % 300}


async def deliver(database_url: str, broker: Broker, tmp: Path) -> None:
    (tmp / "catalog.json").write_text(json.dumps(catalog()))
    out = cli(["catalog", "load", str(tmp / "catalog.json")], database_url)
    assert out.returncode == 0, out.stderr
    out = cli(["api-key", "create", "--role", "ingest", "--source", "gw1"], database_url)
    assert out.returncode == 0, out.stderr
    token = out.stdout.splitlines()[0].strip()
    topic = f"usage-{tmp.name}"
    with serving(database_url, broker, tmp, topic) as port:
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
        expected = BATCHES * PER_BATCH + MESSAGES
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
    finally:
        await conn.close()
    return {"totals": [tuple(r) for r in totals], "keys": keys, "idempotent": idempotent}


async def test_http_and_mqtt_deliveries_equal_single_node(
        citus_url: str, plain_url: str, mqtt_broker: Broker, tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "p").mkdir()
    await deliver(citus_url, mqtt_broker, tmp_path / "c")
    await deliver(plain_url, mqtt_broker, tmp_path / "p")
    on_citus, on_one = await outcome(citus_url), await outcome(plain_url)
    assert on_one["keys"] == BATCHES * PER_BATCH + MESSAGES
    assert on_one["idempotent"] == BATCHES
    assert on_citus == on_one
