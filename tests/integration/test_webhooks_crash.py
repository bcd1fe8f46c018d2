"""SIGKILL the server while it delivers 5,000 events to two loopback receivers: after a
restart every event has arrived at least once at each, each receiver saw every account's
events first in their commit order, and every signature verifies with standardwebhooks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import asyncpg

from billing_oss.server.config import WebhooksConfig
from billing_oss.server.integrations import outbox, webhooks
from billing_oss.server.integrations.events import DomainEvent
from tests.conftest import free_port, wait_for_port, wait_until
from tests.webhook_receiver import Receiver, receiving

EVENTS = 5_000
ACCOUNTS = 50
CONFIG = """
[catalog]
load_demo = false
[webhooks]
allow_http = true
allow_private = true
retry_schedule_s = [0.2, 0.5, 1, 1, 1, 1, 1, 1, 1, 1]
timeout_s = 2
rescan_s = 1
"""


class CrashTested(DomainEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "test.crash_tested"
    n: int  # the account's own count, from 0


def start(database_url: str, port: int, config: Path) -> subprocess.Popen[str]:
    with (config.parent / "serve.log").open("a") as log:  # the child keeps its own handle
        return subprocess.Popen(
            [sys.executable, "-m", "billing_oss", "serve", "--database-url", database_url,
             "--port", str(port), "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=log, text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("BILLING_OSS_")})


async def test_a_killed_server_delivers_every_event_after_restart_in_order_per_account(
        pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(CONFIG)
    settings = WebhooksConfig(allow_http=True, allow_private=True)
    async with receiving() as one, receiving() as two:
        for receiver in (one, two):
            new = await webhooks.create(pool, settings, receiver.url + "/hook",
                                        ["test.crash_tested"], max_concurrency=32)
            receiver.secrets["/hook"] = [new.secret]
        ids = await emit_all(pool)
        port = free_port()
        server = start(database_url, port, config)
        try:
            await asyncio.to_thread(wait_for_port, port, 60)
            # kill it mid-stream, once both receivers are well into the events
            assert await wait_until(lambda: _both(one, two, EVENTS // 5), 60, 0.01)
            server.send_signal(signal.SIGKILL)
            server.communicate(timeout=30)
            killed_at = (one.count, two.count)
            assert killed_at[0] < EVENTS and killed_at[1] < EVENTS, "killed too late"
            server = start(database_url, port, config)
            assert await wait_until(lambda: _all_ids(one, two, ids), 90, 0.1), (
                f"missing after restart: {len(ids - _ids(one))}, {len(ids - _ids(two))}")
        finally:
            if server.poll() is None:
                server.terminate()
                server.communicate(timeout=60)
    for receiver in (one, two):
        assert all(r.verified for r in receiver.got)
        first_seen: dict[str, int] = {}
        seen: set[str] = set()
        for r in receiver.got:
            event_id = r.headers["webhook-id"]
            if event_id in seen:
                continue  # a repeat after the crash: at least once
            seen.add(event_id)
            event = r.event
            account, n = event["account_id"], event["data"]["n"]
            assert n == first_seen.get(account, -1) + 1, (
                f"{account}: event {n} arrived first after {first_seen.get(account)}")
            first_seen[account] = n
        assert seen == ids


async def emit_all(pool: asyncpg.Pool) -> set[str]:
    ids: list[str] = []
    per_account = EVENTS // ACCOUNTS
    for chunk in range(0, per_account, 10):  # 50 transactions of 100 events
        async with pool.acquire() as conn, conn.transaction():
            ids += await outbox.emit_many(conn, [
                (CrashTested(n=n), f"CR{a:02d}")
                for n in range(chunk, chunk + 10) for a in range(ACCOUNTS)])
    return set(ids)


def _ids(receiver: Receiver) -> set[str]:
    return {r.headers["webhook-id"] for r in receiver.got}


async def _both(one: Receiver, two: Receiver, n: int) -> bool:
    return one.count >= n and two.count >= n


async def _all_ids(one: Receiver, two: Receiver, ids: set[str]) -> bool:
    return _ids(one) >= ids and _ids(two) >= ids
