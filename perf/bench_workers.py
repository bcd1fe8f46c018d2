"""MQTT ingest throughput of `serve` with 1 worker process, then with 2 (`serve --workers 2`),
in the same run, on the same machine, into fresh databases.

    python perf/bench_workers.py [--records N] [--quick] [--database-url DSN]

Each side: a fresh database with the demo tariffs and 1,000 accounts, `serve` started as a
subprocess with one MQTT source, then a publisher process sends ``--records`` voice records
(200 per message, QoS 1) as fast as the broker takes them. The rate is the records over the
time from the first publish to the last record committed. Prints both rates and their ratio.

The broker is a Mosquitto this benchmark starts (on PATH; a queue deep enough for the whole
input, which a default broker's 1,000 queued messages per client is not). Without
--database-url (or
BILLING_OSS_TEST_DATABASE_URL) an embedded PostgreSQL is started in a temporary directory.
The server, its workers, PostgreSQL, the broker and the publisher all share this machine's
cores: on a 2-core box the second worker competes with PostgreSQL for the same CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
from served import free_port  # perf/ is on sys.path: this script's folder

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from bench_ingest import catalog, fresh_database, server  # noqa: E402

PER_MESSAGE = 200
SOURCE = "benchw"

PUBLISHER = """
import sys, msgspec, paho.mqtt.client as mqtt
host, port, topic, messages, per, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3], \
    int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub-" + tag,
                     protocol=mqtt.MQTTv5)
client.max_inflight_messages_set(200)
client.connect(host, port)
client.loop_start()
print("ready", flush=True)
infos = []
for i in range(messages):
    records = [{"record_key": f"{tag}-{i}-{j}", "kind": "voice",
                "event_time": f"2026-01-{5 + j % 5:02d}T{8 + j % 11:02d}:{j % 60:02d}:00Z",
                "calling": f"3361{(i * per + j) % 1000:07d}", "called": "33620000000",
                "duration_s": 1 + (i + j) % 3600} for j in range(per)]
    infos.append(client.publish(topic, msgspec.json.encode({"records": records}), qos=1))
for info in infos:
    info.wait_for_publish()
client.loop_stop()
client.disconnect()
"""


def config_file(folder: Path, host: str, port: int) -> Path:
    path = folder / f"bench-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(f"""
[catalog]
load_demo = false

[sources.{SOURCE}]
type = "mqtt"
host = "{host}"
port = {port}
topics = ["usage/{SOURCE}/#"]
client_id = "bench-{uuid.uuid4().hex[:8]}"
session_expiry_s = 120
""")
    return path


async def subscribed(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as r:
            return f'billing_mqtt_connected{{source="{SOURCE}"}} 1.0' in await r.text()
    except aiohttp.ClientError:
        return False


async def one_side(admin_dsn: str, workers: int, records: int, broker: tuple[str, int],
                   folder: Path) -> float:
    name, dsn = await fresh_database(admin_dsn, f"w{workers}")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "billing_oss", "serve", "--database-url", dsn, "--port",
        str(port), "--workers", str(workers), "--log-level", "error",
        "--config", str(config_file(folder, *broker)),
        cwd=folder, env={k: v for k, v in os.environ.items() if not k.startswith("BILLING_OSS")})
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not await subscribed(url):
            if time.monotonic() > deadline or proc.returncode is not None:
                raise SystemExit(f"serve --workers {workers} did not subscribe")
            await asyncio.sleep(0.2)
        await asyncio.sleep(3 * workers)  # every worker's subscription is in place
        messages = records // PER_MESSAGE
        tag = uuid.uuid4().hex[:8]
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PUBLISHER, broker[0], str(broker[1]),
            f"usage/{SOURCE}/voice", str(messages), str(PER_MESSAGE), tag,
            stdout=subprocess.PIPE)
        assert publisher.stdout is not None
        await publisher.stdout.readline()
        started = time.monotonic()
        while await pool.fetchval("SELECT count(*) FROM source_offsets WHERE source = $1",
                                  SOURCE) < messages:
            if time.monotonic() - started > 600:
                raise SystemExit(f"serve --workers {workers}: ingest did not finish in 10 minutes")
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        await publisher.wait()
        stored = await pool.fetchval("SELECT count(*) FROM usage_records")
        if stored != messages * PER_MESSAGE:
            raise SystemExit(f"{stored} records stored, {messages * PER_MESSAGE} sent")
        return messages * PER_MESSAGE / elapsed
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 120)
        await pool.close()
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def workers_rates(admin_dsn: str, records: int) -> dict[int, float]:
    """Records/s of ``serve --workers 1`` then ``--workers 2`` taking the same MQTT traffic
    from a broker of their own, each into a fresh database on ``admin_dsn``'s server."""
    catalog()  # fails early if the demo catalog is missing
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        (Path(tmp) / "mosquitto.conf").write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\n"
            "max_inflight_messages 2000\nmax_queued_messages 1000000\n"
            + ("user root\n" if os.geteuid() == 0 else ""))
        broker = await asyncio.create_subprocess_exec(
            shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
            str(Path(tmp) / "mosquitto.conf"), stderr=subprocess.DEVNULL)
        try:
            return {n: await one_side(admin_dsn, n, records, ("127.0.0.1", port), Path(tmp))
                    for n in (1, 2)}
        finally:
            broker.terminate()
            await broker.wait()


def print_rates(records: int, rates: dict[int, float]) -> None:
    print(f"MQTT ingest, {records:,} records, {os.cpu_count()} cores:")
    for n, rate in rates.items():
        print(f"  serve --workers {n}: {rate:,.0f} records/s")
    print(f"  2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="40,000 records")
    parser.add_argument("--database-url", default=os.environ.get(
        "BILLING_OSS_TEST_DATABASE_URL"))
    args = parser.parse_args()
    records = 40_000 if args.quick else args.records
    async with server(args.database_url) as admin_dsn:
        rates = await workers_rates(admin_dsn, records)
    print_rates(records, rates)


if __name__ == "__main__":
    asyncio.run(main())
