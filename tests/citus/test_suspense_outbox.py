"""Suspense and the outbox are distributed by account on Citus and work there as on one
PostgreSQL.

Suspense: records that fail for a known account (no zone) and for no account go through the
pipeline into the table distributed by ``account_id``; one account's suspense is a router
query; correct, retry (the API's and the console's path), discard and a concurrent claim
run on both databases and leave the same rows. The outbox: events for three accounts and one
about no account are delivered to a webhook receiver in order per stream, woken by the
notification the emitting transaction sends from the coordinator (the rescan is too slow to
be what delivers them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import msgspec
import pytest

from billing_oss.adapters.formats.items import FormatDecoder
from billing_oss.core.contract import Delivery
from billing_oss.server import config
from billing_oss.server.composition import read_catalog_file
from billing_oss.server.config import WebhooksConfig
from billing_oss.server.http import suspense as suspense_api
from billing_oss.server.integrations import outbox, repo, webhooks
from billing_oss.server.integrations.delivery import WebhookDeliverer
from billing_oss.server.integrations.events import DomainEvent
from billing_oss.server.pipeline.files import file_sha256
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.store import catalog_repo, reprocess_repo, suspense_repo
from billing_oss.server.store.citus import NO_ACCOUNT
from billing_oss.server.store.migrate import migrate
from tests.citus.test_router_queries import Explaining
from tests.conftest import REPO, wait_until
from tests.integration.test_pipeline import voice, write_jsonl
from tests.pipeline_doubles import FlatRater
from tests.webhook_receiver import Receiver, receiving

pytestmark = pytest.mark.citus

UNKNOWN = "33600000000"  # nobody's number
NO_ZONE = "99912345"  # FlatRater finds no zone for it


async def _colocated_by_account(pool: asyncpg.Pool, tables: tuple[str, ...]) -> None:
    rows = await pool.fetch(
        "SELECT logicalrelid::regclass::text AS name, colocationid,"
        " column_to_column_name(logicalrelid, partkey) AS key FROM pg_dist_partition"
        " WHERE logicalrelid::regclass::text = ANY($1)", ["usage_records", *tables])
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"usage_records", *tables}
    assert {r["key"] for r in rows} == {"account_id"}
    assert len({r["colocationid"] for r in rows}) == 1


def _router(plans: list[tuple[str, str]]) -> None:
    for sql, plan in plans:
        assert "Task Count: 1\n" in plan + "\n", f"not a router query:\n{sql}\n{plan}"


async def suspense_paths(pool: asyncpg.Pool, tmp: Path) -> dict[str, Any]:
    """Suspend, correct, retry, discard, claim concurrently and reprocess a file; what the
    rows became."""
    await catalog_repo.load_catalog(pool, read_catalog_file(REPO / "config/demo-catalog.json"))
    cfg = msgspec.structs.replace(config.load(env={}).pipeline, retry_backoff_s=0.01)
    pipeline = Pipeline(pool, cfg, rater_factory=FlatRater,
                        decoders={"jsonl": FormatDecoder("jsonl")})
    await pipeline.commit([Delivery(source="mqtt", position="s-1", records=[
        voice("nz-1", called=NO_ZONE), voice("nz-2", called=NO_ZONE),
        voice("nz-3", called=NO_ZONE), voice("un-1", calling=UNKNOWN),
        voice("un-2", calling=UNKNOWN), voice("un-3", calling=UNKNOWN)])])
    ids = {r["record_key"]: r["suspense_id"] for r in await pool.fetch(
        "SELECT record_key, suspense_id FROM suspense")}
    assert len(ids) == 6

    fixed = await suspense_api.correct(pool, "test", ids["nz-1"],
                                       {"called": "33612345678"}, "a 9 typed for a 3")
    assert fixed.record["called"] == "33612345678" and fixed.account_id == "A1"
    charged = await suspense_api.retry(pool, pipeline, "test", ids["nz-1"])
    again = await suspense_api.retry(pool, pipeline, "test", ids["un-1"])
    await suspense_repo.discard(pool, "test", ids["un-2"], "not our subscriber")
    # Two retries at once take different rows: a claimed row is skipped by the other.
    async with pool.acquire() as c1, pool.acquire() as c2:
        async with c1.transaction(), c2.transaction():
            first = await suspense_repo.claim_for_retry(c1, ids=None, reason=None, limit=2)
            second = await suspense_repo.claim_for_retry(c2, ids=None, reason=None, limit=10)
    claimed = ([r.record_key for r in first], [r.record_key for r in second])
    # A file all in suspense, read again: its rows discarded, its keys released, read anew.
    await asyncio.to_thread(tmp.mkdir)
    path = write_jsonl(tmp / "nobody.jsonl", [voice(f"f-{n}", calling=UNKNOWN) for n in
                                               range(2)])
    await pipeline.ingest_file(path, source="msc1", format="jsonl")
    sha, _ = await file_sha256(path)
    await reprocess_repo.reopen(pool, source="msc1", sha256=sha, fmt="jsonl", actor="test")
    again_in = await pipeline.ingest_file(path, source="msc1", format="jsonl")
    assert again_in.counts.suspense == 2  # not duplicates: the keys were released
    rows = await pool.fetch("SELECT record_key, nullif(account_id, '') AS account_id, reason,"
                            " state FROM suspense ORDER BY record_key, state")
    return {"charged": (charged.status, str(charged.amount)), "again": again.status,
            "claimed": claimed, "rows": [tuple(r) for r in rows],
            "found": [(i.record_key, i.account_id) for i in await suspense_repo.find(
                pool, state=None, reason=None, source=None, account_id="A1", after=None,
                limit=50)]}


async def test_suspense_is_distributed_and_every_path_works_as_on_one_server(
        citus_pool: asyncpg.Pool, plain_url: str, tmp_path: Path) -> None:
    await _colocated_by_account(citus_pool, ("suspense",))
    on_citus = await suspense_paths(citus_pool, tmp_path / "citus")
    plain = await asyncpg.create_pool(plain_url, min_size=1, max_size=4,
                                      server_settings={"timezone": "UTC"})
    assert plain is not None
    try:
        await migrate(plain)
        assert on_citus == await suspense_paths(plain, tmp_path / "plain")
    finally:
        await plain.close()
    assert on_citus["claimed"] == (["nz-2", "nz-3"], ["un-1", "un-3"])
    assert on_citus["charged"][0] == "charged" and on_citus["again"] == "suspense"
    assert ("un-2", None, "UNKNOWN_ACCOUNT", "discarded") in on_citus["rows"]
    assert ("nz-1", "A1", "NO_ZONE", "retried") in on_citus["rows"]
    assert [r[3] for r in on_citus["rows"] if r[0] == "f-0"] == ["discarded", "open"]

    async with citus_pool.acquire() as conn:
        db = Explaining(conn)
        mine = await suspense_repo.find(db, state="open", reason=None,  # type: ignore[arg-type]
                                        source=None, account_id="A1", after=None, limit=50)
        assert [i.record_key for i in mine] == ["nz-2", "nz-3"]
        nobody = await db.fetch("SELECT count(*) FROM suspense WHERE account_id = $1",
                                NO_ACCOUNT)
        assert nobody[0][0] == 7
    _router(db.plans)


class CitusHooked(DomainEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "test.citus_hooked"
    n: int


SETTINGS = WebhooksConfig(allow_http=True, allow_private=True, retry_schedule_s=[0.05, 0.1],
                          timeout_s=10.0, disable_after_dead_letters=2, rescan_s=600.0)


@contextlib.asynccontextmanager
async def delivering(pool: asyncpg.Pool) -> AsyncIterator[WebhookDeliverer]:
    deliverer = WebhookDeliverer(pool, SETTINGS)
    stop = asyncio.Event()
    task = asyncio.create_task(deliverer.run(stop))
    await asyncio.wait_for(deliverer.leading.wait(), 30)
    try:
        yield deliverer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_outbox_events_are_distributed_and_delivered_when_committed(
        citus_pool: asyncpg.Pool) -> None:
    await _colocated_by_account(citus_pool, ("outbox_heads", "outbox_events"))
    triggers = await citus_pool.fetch(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        " AND tgrelid IN ('outbox_heads'::regclass, 'outbox_events'::regclass)")
    assert [t["tgname"] for t in triggers] == ["outbox_events_immutable"]  # refuses, only

    async with receiving() as receiver:
        new = await webhooks.create(citus_pool, SETTINGS, receiver.url + "/c",
                                    ["test.citus_hooked"])
        receiver.secrets["/c"] = [new.secret]
        async with delivering(citus_pool):
            await asyncio.sleep(1.0)  # the follower's first scan is behind it
            async with citus_pool.acquire() as conn, conn.transaction():
                ids = await outbox.emit_many(
                    conn, [(CitusHooked(n=i), f"CH{i % 3}") for i in range(30)])
            async with citus_pool.acquire() as conn, conn.transaction():
                ids.append(await outbox.emit(conn, CitusHooked(n=99), stream="source:citus"))
            # Well before the 600-s rescan: only the commit's notification wakes the follower.
            assert await wait_until(lambda: _at_least(receiver, 31), 60)
    got = receiver.on("/c")
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(ids)
    assert all(r.verified for r in got)
    for account in ("CH0", "CH1", "CH2"):
        ns = [r.event["data"]["n"] for r in got if r.event["account_id"] == account]
        assert ns == sorted(ns) and len(ns) == 10
    (other,) = [r.event for r in got if r.event["stream"] == "source:citus"]
    assert other["account_id"] is None

    async with citus_pool.acquire() as conn:
        db = Explaining(conn)
        events = await repo.events_after(db, "acct:CH1", 0, 100)  # type: ignore[arg-type]
        assert [e.seq for e in events] == list(range(1, 11))
        assert {e.account_id for e in events} == {"CH1"}
    _router(db.plans)


async def _at_least(receiver: Receiver, n: int) -> bool:
    return len(receiver.on("/c")) >= n
