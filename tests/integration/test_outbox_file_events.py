"""An ingested file is an event of its source, with counts that reconcile."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import msgspec

from billing_oss.adapters.formats.items import FormatDecoder
from billing_oss.server import config
from billing_oss.server.composition import read_catalog_file
from billing_oss.server.integrations import events
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.store import catalog_repo
from billing_oss.server.store.citus import NO_ACCOUNT
from tests.conftest import REPO
from tests.integration.test_outbox_emitters import stored
from tests.integration.test_pipeline import voice, write_jsonl
from tests.pipeline_doubles import FlatRater


async def test_an_ingested_file_says_so_with_counts_that_reconcile(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    await catalog_repo.load_catalog(pool, read_catalog_file(REPO / "config/demo-catalog.json"))
    cfg = msgspec.structs.replace(config.load(env={}).pipeline, batch_size=7)
    pipeline = Pipeline(pool, cfg, rater_factory=FlatRater,
                        decoders={"jsonl": FormatDecoder("jsonl")})
    records = [voice(f"ob-{i}") for i in range(10)] + [voice("ob-3")]
    path = write_jsonl(tmp_path / "cdr42.jsonl", records, [b"{broken"])
    out = await pipeline.ingest_file(path, source="msc9", format="jsonl")
    await pipeline.ingest_file(path, source="msc9", format="jsonl")  # a replay: no event
    (row,) = await stored(pool, "usage.file_ingested")
    event = msgspec.json.decode(row["payload"], type=events.UsageFileIngested)
    # stored under the reserved account of events about no account
    assert row["stream"] == "source:msc9" and row["account_id"] == NO_ACCOUNT
    assert (event.name, event.state, event.records_in, event.charged, event.suspense,
            event.duplicates) == ("cdr42.jsonl", "done", 12, 10, 1, 1)
    assert event.records_in == (event.charged + event.suspense + event.duplicates
                                + event.filtered + event.pending) == out.counts.in_


async def test_open_suspense_over_the_threshold_is_told_once_per_crossing(
        pool: asyncpg.Pool) -> None:
    from billing_oss.server.integrations import suspense_watch

    async def open_suspense(n: int) -> None:
        await pool.execute("INSERT INTO suspense (source, reason, detail) SELECT 'gw7',"
                           " 'MALFORMED', 'test' FROM generate_series(1, $1)", n)

    await open_suspense(3)
    assert await suspense_watch.check(pool, 3) == []  # at the threshold, not over it
    await open_suspense(1)
    assert await suspense_watch.check(pool, 3) == ["gw7"]
    assert await suspense_watch.check(pool, 3) == []  # told once
    await pool.execute("UPDATE suspense SET state = 'discarded' WHERE source = 'gw7'")
    assert await suspense_watch.check(pool, 3) == []  # back under: the mark clears
    await open_suspense(5)
    assert await suspense_watch.check(pool, 3) == ["gw7"]
    told = [msgspec.json.decode(r["payload"]) for r in
            await stored(pool, "suspense.threshold_crossed") if r["stream"] == "source:gw7"]
    assert told == [{"source": "gw7", "open_records": 4, "threshold": 3},
                    {"source": "gw7", "open_records": 5, "threshold": 3}]
