"""With a million-prefix tariff loaded, a new account is rated within a second of its creation
and no tariff is compiled again: account resolution moves apart from tariff compilation."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from prometheus_client import REGISTRY

from billing_oss.core.contract import Delivery
from billing_oss.core.records import UsageRecord
from billing_oss.server import config
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.pipeline.raters import build_rater
from billing_oss.server.store import accounts_repo, catalog_repo, subscriptions_repo
from billing_oss.server.store.accounts_repo import AccountIdentifier, NewAccount

PREFIXES = 1_000_000  # 1000000 .. 1999999, in 1000 zones


def big_catalog() -> dict[str, Any]:
    zones = {f"z{n}": [str(10**6 + n * 1000 + k) for k in range(1000)]
             for n in range(PREFIXES // 1000)}
    return {"currency": "EUR", "tariffs": [{"id": "big", "versions": [{
        "effective_from": "2026-01-01T00:00:00Z", "timezone": "UTC", "zones": zones,
        "time_bands": [{"name": "all", "default": True}],
        "rates": [{"kind": "voice", "zone": "*", "band": "*", "connect_fee": "0",
                   "steps": [{"from": 0, "price": "0.60", "unit": 60, "increment": 1}]}]}]}],
        "accounts": [{"id": "OLD", "identifiers": ["33600000000"], "tariff": "big"}]}


def compiles() -> float:
    """Tariff compilations so far in this process."""
    value = REGISTRY.get_sample_value("billing_rating_compile_seconds_count")
    return value or 0.0


@pytest.fixture(scope="module")
async def pipeline(pool: asyncpg.Pool) -> AsyncIterator[Pipeline]:
    await catalog_repo.load_catalog(pool, big_catalog())
    cfg = msgspec.structs.replace(config.load(env={}).pipeline, retry_backoff_s=0.01)
    pipe = Pipeline(pool, cfg, rater_factory=build_rater, decoders={})
    await pipe.raters.current()  # the full compile happens here, before any clock starts
    yield pipe


def call(key: str, calling: str) -> UsageRecord:
    return UsageRecord(record_key=key, source="switch", kind="voice",
                       event_time="2026-02-03T10:00:00Z", duration_s=60, calling=calling,
                       called="1234567890")


async def test_a_new_account_is_rated_within_a_second_without_a_recompile(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    before = compiles()
    began = time.perf_counter()
    await accounts_repo.create(pool, "test", NewAccount(
        account_id="NEW1", name="", status="active", currency="EUR", timezone="UTC",
        billing_day=1, identifiers=[AccountIdentifier("33611110001")], attrs={}))
    await subscriptions_repo.create(pool, "test", "NEW1", "big", "",
                                    dt.datetime(2026, 1, 1, tzinfo=dt.UTC), None)
    [out] = await pipeline.commit([Delivery(source="switch", position="new-1",
                                            records=[call("new-1", "33611110001")])])
    elapsed = time.perf_counter() - began
    assert out.results[0].status == "charged", out
    assert elapsed < 1.0, f"rated {elapsed:.2f} s after its creation"
    assert compiles() == before
    charged = await pool.fetchrow(
        "SELECT c.account_id, c.amount_micros, c.zone, v.tariff_id FROM charges c"
        " JOIN tariff_versions v USING (tariff_version_id) WHERE c.account_id = 'NEW1'")
    assert tuple(charged) == ("NEW1", 600_000, "z234", "big")


async def test_identifiers_moved_and_removed_are_seen_at_once(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    before = compiles()
    await accounts_repo.update(pool, "test", "OLD", {
        "identifiers": [AccountIdentifier("33622220002")]})
    first, second = await pipeline.commit([
        Delivery(source="switch", position="moved-1", records=[call("moved-1", "33622220002")]),
        Delivery(source="switch", position="moved-2", records=[call("moved-2", "33600000000")]),
    ])
    assert first.results[0].status == "charged"
    assert second.results[0].status == "suspense"  # the identifier OLD gave up
    assert compiles() == before
