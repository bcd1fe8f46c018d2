"""Suspense retries and the partial sweeper against concurrent writers: a record key is
charged once, whatever the interleaving, and rerating reverses each usage's own charge."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence

import asyncpg
import msgspec
import pytest

from billing_oss.adapters.formats.items import FormatDecoder
from billing_oss.core.contract import Delivery
from billing_oss.core.ports import Charge, Failure, Rater
from billing_oss.core.records import UsageRecord
from billing_oss.server import config, rerate
from billing_oss.server.composition import read_catalog_file
from billing_oss.server.pipeline import suspense, writer
from billing_oss.server.pipeline.batch import prepare
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.store import catalog_repo, suspense_repo, usage_repo
from tests.charge_seed import insert_charges
from tests.conftest import REPO
from tests.integration.test_pipeline import voice
from tests.pipeline_doubles import FlatRater


@pytest.fixture(scope="module")
async def pipeline(pool: asyncpg.Pool) -> AsyncIterator[Pipeline]:
    await catalog_repo.load_catalog(pool, read_catalog_file(REPO / "config/demo-catalog.json"))
    cfg = msgspec.structs.replace(config.load(env={}).pipeline, retry_backoff_s=0.01)
    yield Pipeline(pool, cfg, rater_factory=FlatRater, decoders={"jsonl": FormatDecoder("jsonl")})


def part(group: str, seq: int, last: bool, seconds: int, when: str) -> UsageRecord:
    return voice(f"{group}-{seq}", seconds=seconds, when=when, partial_seq=seq,
                 attrs={"charging_id": group, "partial_last": last})


async def waiting_on_a_lock(pool: asyncpg.Pool, conn: asyncpg.Connection | None) -> None:
    """Until ``conn``'s backend (else any of this database's) waits on a lock."""
    pid = conn.get_server_pid() if conn is not None else None
    for _ in range(500):
        if await pool.fetchval("SELECT bool_or(wait_event_type = 'Lock') FROM pg_stat_activity"
                               " WHERE datname = current_database()"
                               " AND ($1::int IS NULL OR pid = $1)", pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second transaction never waited")


async def test_two_open_rows_of_one_key_retried_at_once_charge_once(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    # Two open suspense rows under one record key (a partial group split by its timeout, as
    # stored before a late part reopened its expired group): a copy of the expired group's.
    await pipeline.commit([Delivery(source="mqtt", position="race-1", records=[
        part("race1", 1, False, 100, "2026-02-03T10:00:00Z")])])
    await suspense.expire_partials(pool, 0.0)
    await pool.execute(
        "INSERT INTO suspense (source, record_key, account_id, reason, detail, record, "
        "source_position) SELECT source, record_key, account_id, reason, detail, record, "
        "source_position FROM suspense WHERE record_key = 'race1/merged'")
    ids = [r[0] for r in await pool.fetch(
        "SELECT suspense_id FROM suspense WHERE record_key = 'race1/merged' AND state = 'open' "
        "ORDER BY 1")]
    assert len(ids) == 2
    rater = await pipeline.raters.current()
    async with pool.acquire() as c1, pool.acquire() as c2:
        t1, t2 = c1.transaction(), c2.transaction()
        await t1.start()
        await t2.start()
        [row1] = await suspense_repo.claim_for_retry(c1, ids=[ids[0]], reason=None, limit=1)
        [row2] = await suspense_repo.claim_for_retry(c2, ids=[ids[1]], reason=None, limit=1)
        first = await suspense._retry_one(c1, row1, rater)  # charged, not committed yet
        second = asyncio.create_task(suspense._retry_one(c2, row2, rater))
        await waiting_on_a_lock(pool, c2)
        await t1.commit()
        result = await second
        await t2.commit()
    assert (first.status, result.status) == ("charged", "duplicate")
    charges = await pool.fetch(
        "SELECT c.amount_micros FROM charges c JOIN usage_records u "
        "USING (account_id, event_time, usage_id) WHERE u.record_key = 'race1/merged'")
    assert [c["amount_micros"] for c in charges] == [100_000]
    states = await pool.fetch("SELECT state, resolution FROM suspense WHERE suspense_id = "
                              "ANY($1) ORDER BY suspense_id", ids)
    assert [s["state"] for s in states] == ["retried", "retried"]
    assert states[1]["resolution"] == "duplicate of a charged usage"


async def test_the_sweeper_leaves_a_group_a_batch_is_completing(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    await pipeline.commit([Delivery(source="mqtt", position="sweep-1", records=[
        part("sweep1", 1, False, 60, "2026-02-03T10:00:00Z")])])
    rater = await pipeline.raters.current()
    batch = prepare([part("sweep1", 2, True, 60, "2026-02-03T10:01:00Z")], rater, "mqtt",
                    lambda i: f"sweep-2#{i}")
    async with pool.acquire() as conn:
        async with conn.transaction():
            await writer.store_batch(conn, batch, source_file_id=None, rater=rater)
            assert [m.status for m in batch.merged] == ["charged"]  # not committed yet
            # The group's parts are all older than 0 s: the sweeper finds it stale.
            sweep = asyncio.create_task(suspense.expire_partials(pool, 0.0))
            await waiting_on_a_lock(pool, None)
        assert await sweep == 0
    assert await pool.fetchval("SELECT count(*) FROM suspense WHERE record_key = "
                               "'sweep1/merged'") == 0
    charged = await pool.fetchval(
        "SELECT count(*) FROM charges c JOIN usage_records u "
        "USING (account_id, event_time, usage_id) WHERE u.record_key = 'sweep1/merged'")
    assert charged == 1


async def test_a_late_part_waits_for_a_retry_charging_its_expired_group(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    await pipeline.commit([Delivery(source="mqtt", position="late-1", records=[
        part("late1", 1, False, 100, "2026-02-03T10:00:00Z")])])
    await suspense.expire_partials(pool, 0.0)
    suspense_id = await pool.fetchval(
        "SELECT suspense_id FROM suspense WHERE record_key = 'late1/merged'")
    rater = await pipeline.raters.current()
    async with pool.acquire() as conn:
        async with conn.transaction():
            [row] = await suspense_repo.claim_for_retry(conn, ids=[suspense_id], reason=None,
                                                        limit=1)
            assert (await suspense._retry_one(conn, row, rater)).status == "charged"
            late = asyncio.create_task(pipeline.commit([Delivery(
                source="mqtt", position="late-2",
                records=[part("late1", 2, True, 500, "2026-02-03T10:05:00Z")])]))
            await waiting_on_a_lock(pool, None)
        out = await late
    # Once the retry committed, the group is charged: the late part is suspended on its own.
    assert (out[0].counts.suspense, out[0].counts.pending) == (1, 0)
    usage_id = await pool.fetchval(
        "SELECT usage_id FROM usage_records WHERE record_key = 'late1/merged'")
    detail = await pool.fetchval("SELECT detail FROM suspense WHERE record_key = 'late1-2' "
                                 "AND reason = 'PARTIAL_LATE' AND state = 'open'")
    assert f"charged as usage {usage_id}" in detail


class PlusOne:
    """The pipeline's rater, one micro-unit dearer: every usage's charge changes."""

    def __init__(self, inner: Rater) -> None:
        self.inner = inner

    def rate(self, records: Sequence[UsageRecord]) -> list[Charge | Failure]:
        return [msgspec.structs.replace(o, amount_micros=o.amount_micros + 1)
                if isinstance(o, Charge) else o for o in self.inner.rate(records)]


async def test_rerate_reverses_each_usage_own_charge(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    # Usage ids are unique per (account, event time) only, as the primary key says.
    times = [dt.datetime(2026, 5, 3, 10, tzinfo=dt.UTC), dt.datetime(2026, 5, 3, 11, tzinfo=dt.UTC)]
    async with pool.acquire() as conn:
        await usage_repo.ensure_partitions(conn, [dt.date(2026, 5, 1)])
    for i, when in enumerate(times):
        await pool.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind, duration_s, calling, called) VALUES ('A1', 777, $1, 'msc1', $2, 'voice',"
            " $3, '33611111111', '33612345678')", when, f"shared-{i}", 10 * (i + 1))
        await insert_charges(pool, ("account_id", "event_time", "usage_id", "kind",
                                    "amount_micros", "currency"),
                             [("A1", when, 777, "charge", 10_000 * (i + 1), "EUR")])

    class Source:
        async def current(self) -> Rater:
            return PlusOne(await pipeline.raters.current())

    job = await rerate.submit(pool, "tester", None, dt.datetime(2026, 5, 1, tzinfo=dt.UTC),
                              dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    await rerate._run(pool, Source(), job.rerate_job_id, asyncio.Event())
    rows = await pool.fetch(
        "SELECT r.event_time, o.amount_micros AS reversed FROM charges r JOIN charges o"
        " ON o.charge_id = r.reverses_charge_id WHERE r.usage_id = 777 ORDER BY 1")
    assert [(r["event_time"], r["reversed"]) for r in rows] == [
        (times[0], 10_000), (times[1], 20_000)]
    new = await pool.fetch("SELECT amount_micros FROM charges WHERE usage_id = 777 AND"
                           " kind = 'charge' AND rerate_job_id IS NOT NULL ORDER BY event_time")
    assert [n["amount_micros"] for n in new] == [10_001, 20_001]


async def test_a_backlog_of_stale_groups_larger_than_the_lock_table_expires(
    pool: asyncpg.Pool,
) -> None:
    """After an outage thousands of groups may be stale at once: the sweeper takes them a
    chunk per transaction, so it never runs out of lock slots (about 6 400 by default)."""
    groups = 20_000
    await pool.execute(
        "INSERT INTO partial_records (source, group_key, partial_seq, is_last, record, "
        "received_at) SELECT 'backlog', 'b' || n, 1, false, jsonb_build_object("
        "'record_key', 'b' || n || '-1', 'source', 'backlog', 'kind', 'voice', "
        "'event_time', '2026-02-01T00:00:00Z', 'duration_s', 10, 'calling', '33611111111', "
        "'called', '33612345678', 'partial_seq', 1, 'attrs', jsonb_build_object("
        "'charging_id', 'b' || n)), now() - interval '2 hours' "
        "FROM generate_series(1, $1) AS n", groups)
    assert await suspense.expire_partials(pool, 3600) == groups
    assert await pool.fetchval("SELECT count(*) FROM partial_records WHERE source = 'backlog' "
                               "AND state = 'open'") == 0
    assert await pool.fetchval("SELECT count(*) FROM suspense WHERE source = 'backlog' "
                               "AND reason = 'PARTIAL_INCOMPLETE'") == groups
