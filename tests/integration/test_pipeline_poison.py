"""Values PostgreSQL refuses (huge decimals, NUL characters, keys too long for an index) and
invalid keys: each such record goes to suspense with its reason, next to good records that
are charged, in a file that finishes and a delivery that commits."""

from __future__ import annotations

import random
import string
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import pytest

from billing_oss.adapters.formats.items import FormatDecoder
from billing_oss.core.contract import Delivery
from billing_oss.core.errors import Reason
from billing_oss.core.records import UsageRecord
from billing_oss.server import config
from billing_oss.server.composition import read_catalog_file
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.store import catalog_repo
from tests.conftest import REPO
from tests.integration.test_pipeline import CALLER, voice, write_jsonl
from tests.pipeline_doubles import FlatRater


def event(key: str, **extra: object) -> UsageRecord:
    return UsageRecord(record_key=key, source="msc1", kind="event",  # type: ignore[arg-type]
                       event_time="2026-02-03T10:00:00Z", msisdn=CALLER, **extra)


# label → (poison record, the field its reason names)
POISON: dict[str, tuple[UsageRecord, str]] = {
    "charge-exponent": (voice("p-charge", charge="1e999999"), "charge"),
    "charge-zero-exponent": (voice("p-charge0", charge="0e999999"), "charge"),
    "charge-scale": (voice("p-charge-scale", charge="1e-1001"), "charge"),
    "quantity-exponent": (event("p-quantity", quantity="1e999999"), "quantity"),
    "quantity-tiny": (event("p-quantity-tiny", quantity="1e-999999"), "quantity"),
    "huge-key": (voice("".join(random.Random(1).choices(string.ascii_letters, k=9000))),
                 "record_key"),  # random: a repetitive key would compress to fit the index
    "nul-key": (voice("p-k\x00ey"), "record_key"),
    "nul-source": (UsageRecord(record_key="p-src", source="m\x00sc", kind="voice",
                               event_time="2026-02-03T10:00:00Z", duration_s=1,
                               calling=CALLER, called="33612345678"), "source"),
    "nul-unit": (event("p-unit", unit="a\x00b"), "unit"),
    "nul-event-time": (voice("p-time", when="2026-02-03T10:00:00Z\x00"), "event_time"),
    "nul-attr-value": (voice("p-attr", attrs={"x": {"y": ["a\x00b"]}}), "attrs"),
    "nul-attr-key": (voice("p-attr-key", attrs={"x\x00": 1}), "attrs"),
    "huge-group-key": (voice("p-group", partial_seq=1,
                             attrs={"charging_id": "".join(random.Random(2).choices(
                                 string.ascii_letters, k=9000))}),
                       "attrs.charging_id"),
    "nul-partial": (voice("p-part", partial_seq=1, attrs={"charging_id": "g1", "x": "\x00"}),
                    "attrs"),
}


@pytest.fixture(scope="module")
async def pipeline(pool: asyncpg.Pool) -> AsyncIterator[Pipeline]:
    await catalog_repo.load_catalog(pool, read_catalog_file(REPO / "config/demo-catalog.json"))
    cfg = config.load(env={}).pipeline
    cfg = msgspec.structs.replace(cfg, batch_size=5, retry_backoff_s=0.01)
    yield Pipeline(pool, cfg, rater_factory=FlatRater, decoders={"jsonl": FormatDecoder("jsonl")})


@pytest.mark.parametrize("label", POISON)
async def test_a_poison_record_goes_to_suspense_and_its_delivery_commits(
    pipeline: Pipeline, pool: asyncpg.Pool, label: str
) -> None:
    poison, field = POISON[label]
    out = await pipeline.commit([Delivery(source="mqtt", position=f"poison-{label}",
                                          records=[voice(f"good-{label}"), poison])])
    good, bad = out[0].results
    assert good.status == "charged"
    assert (bad.status, bad.reason) == ("suspense", Reason.BAD_FIELD)
    assert bad.detail is not None and bad.detail.startswith(f"{field}:")
    row = await pool.fetchrow("SELECT reason, detail, record, raw FROM suspense "
                              "WHERE source_position = $1", f"poison-{label}#1")
    assert row["reason"] == Reason.BAD_FIELD and row["detail"] == bad.detail
    # Kept whole: as JSON, or as raw JSON bytes where jsonb would refuse a NUL.
    kept = row["record"].encode() if row["record"] is not None else row["raw"]
    assert msgspec.json.decode(kept, type=UsageRecord) == poison


async def test_a_file_with_poison_records_finishes(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # Every poison record between good ones, in batches of 5 (keys not seen before).
    records = []
    for i, (record, field) in enumerate(POISON.values()):
        if field != "record_key":
            record = msgspec.structs.replace(record, record_key=f"f-poison-{i}")
        records += [voice(f"f-good-{i}"), record]
    records.append(voice("f-good-last"))
    path = write_jsonl(tmp_path / "poison.jsonl", records)
    out = await pipeline.ingest_file(path, source="msc1", format="jsonl")
    n_bad = len(POISON)
    assert (out.counts.in_, out.counts.charged, out.counts.suspense) == (
        len(records), len(records) - n_bad, n_bad)
    state = await pool.fetchrow("SELECT state, count_suspense FROM source_files "
                                "WHERE source_file_id = $1", out.source_file_id)
    assert (state["state"], state["count_suspense"]) == ("done", n_bad)
    assert await pool.fetchval("SELECT count(*) FROM suspense WHERE source_file_id = $1",
                               out.source_file_id) == n_bad


async def test_records_with_an_invalid_key_never_count_as_duplicates(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    for i, key in enumerate(["", "", "k" * 300, "k" * 300, "a\x00", "a\x00"]):
        out = await pipeline.commit([Delivery(source="mqtt", position=f"badkey-{i}",
                                              records=[voice(key, seconds=10 + i)])])
        assert [r.status for r in out[0].results] == ["suspense"]
    rows = await pool.fetch("SELECT record_key FROM suspense WHERE source_position "
                            "LIKE 'badkey-%' ORDER BY suspense_id")
    assert [r["record_key"] for r in rows] == ["", "", "k" * 300, "k" * 300, "a\ufffd", "a\ufffd"]
    assert await pool.fetchval("SELECT count(*) FROM usage_keys WHERE record_key = '' "
                               "OR length(record_key) > 256") == 0


async def test_records_bound_for_suspense_create_no_partitions(
    pipeline: Pipeline, pool: asyncpg.Pool
) -> None:
    junk = [voice(f"far-{m}", calling="33699999999", when=f"2150-{m:02d}-01T00:00:00Z")
            for m in range(1, 13)]  # unknown account: suspense only
    out = await pipeline.commit([Delivery(source="mqtt", position="far", records=[
        *junk, voice("far-good", when="2151-03-05T00:00:00Z")])])
    assert (out[0].counts.suspense, out[0].counts.charged) == (12, 1)
    created = await pool.fetch("SELECT c.relname::text FROM pg_inherits i JOIN pg_class c "
                               "ON c.oid = i.inhrelid WHERE c.relname ~ '_21[0-9][0-9]_' "
                               "AND c.relkind = 'r' ORDER BY 1")
    assert [r[0] for r in created] == ["charges_2151_03", "usage_records_2151_03"]
