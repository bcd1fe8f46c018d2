"""Shared fixtures: a real PostgreSQL and a real MQTT broker, on loopback or unix sockets.

PostgreSQL: ``BILLING_OSS_TEST_DATABASE_URL`` if set, else an embedded server started once
per session in a temporary directory. Each test module gets a fresh, migrated database.
Mosquitto: started once per session on a free loopback port (the test command installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, settings

from billing_oss.server import config
from billing_oss.server.composition import serve
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate

REPO = Path(__file__).resolve().parent.parent
# A busy 2-core machine makes input generation slow and timings noisy; neither says anything
# about the code under test, so neither fails a test.
settings.register_profile("billing-oss", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("billing-oss")

VECTORS = REPO / "tests" / "vectors" / "libxfsx"  # third-party TAP3/RAP files
T = TypeVar("T")


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """DSN of a PostgreSQL server where tests may create databases."""
    external = os.environ.get("BILLING_OSS_TEST_DATABASE_URL")
    if external:
        yield external
        return
    from billing_oss.server.store.embedded import start_server

    # Not under pytest's tmp dir: the server runs as another user, and pytest prunes (and
    # keeps private, mode 0700) its base directories while other runs may still use them.
    pgroot = Path(tempfile.mkdtemp(prefix="billing-oss-test-pg-"))
    pgroot.chmod(0o755)
    server = start_server(pgroot / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(pgroot, ignore_errors=True)


@pytest.fixture(scope="module")
async def database_url(pg_admin_dsn: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh, empty database for this test module (dropped afterwards)."""
    name = f"t_{request.module.__name__.rsplit('.', 1)[-1][:40]}_{uuid.uuid4().hex[:8]}".lower()
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(pg_admin_dsn, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this module's database with every migration applied."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    assert pool is not None
    await migrate(pool)
    try:
        yield pool
    finally:
        await pool.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(database_url: str, overrides: Mapping[str, Any] | None = None, *,
                  config_file: Path | None = None, start_s: float = 60.0,
                  stop_s: float = 30.0) -> AsyncIterator[str]:
    """``serve`` in this process on a free loopback port and ``database_url``, configured by
    ``config_file`` (else the embedded defaults) and ``overrides``; yields its base URL."""
    port = free_port()
    cfg = config.load(config_file, env={}, overrides={
        "database.url": database_url, "http.port": port, **(overrides or {})})
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(cfg, stop, started=started))
    await asyncio.wait_for(started.wait(), start_s)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_s)


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Broker:
    """A Mosquitto process the tests own: they may stop and restart it on the same port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed; the test command installs it")
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\n"
            "max_inflight_messages 1000\nmax_queued_messages 100000\n"
            # As root, Mosquitto drops to the "mosquitto" user, which cannot write the
            # persistence file into this root-owned directory: sessions would not survive.
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def wait_until(
    predicate: Callable[[], Awaitable[T]], within: float = 10.0, interval: float = 0.05
) -> T:
    """Poll an async predicate until it returns something truthy (or time runs out)."""
    deadline = time.monotonic() + within
    while True:
        result = await predicate()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)
