"""Files in every decoded format through the pipeline with the production rater: 32.297 /
32.298 (calls, a partial P-GW bearer in three parts, an unsupported record), a public TAP3
vector, Asterisk CSV. Each reconciles against the tables, keeps its sequence number, and a
second ingest changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import msgspec
import pytest

from billing_oss.core.contract import Counts, FileOutcome
from billing_oss.server import config
from billing_oss.server.composition import decoders, rater_factory, read_catalog_file
from billing_oss.server.pipeline.batch import WriteBatch
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.store import catalog_repo
from tests.conftest import REPO, VECTORS
from tests.generators.threegpp_files import encode_record, write_3gpp_file

CALLER = "33611111111"  # account A1 of the demo catalog
TAP3_VECTOR = VECTORS / "tap_3_12_valid.ber"
# 2026-01-14 10:00:30 UTC, a Wednesday: the demo tariff's peak band
WEDNESDAY = 1768384830


def call(ref: int) -> bytes:
    return encode_record("moCallRecord", {
        "recordType": 0, "servedIMSI": "208011234567890", "servedMSISDN": CALLER,
        "calledNumber": "33622222222", "recordingEntity": "33609000001",
        "seizureTime": (WEDNESDAY - 30, 60), "answerTime": (WEDNESDAY, 60),
        "callDuration": 95 + ref, "causeForTerm": 0, "callReference": ref.to_bytes(4, "big")})


def bearer_part(seq: int, cause: int) -> bytes:
    return encode_record("pGWRecord", {
        "recordType": 85, "servedIMSI": "208011234567890", "p-GWAddress": "10.1.2.3",
        "chargingID": 4000000000, "recordOpeningTime": (WEDNESDAY + 600 * seq, 0),
        "duration": 600, "causeForRecClosing": cause, "recordSequenceNumber": seq,
        "servedMSISDN": CALLER, "listOfTrafficVolumes": [(1024 * seq, 2048 * seq)]})


def reconciles(c: Counts) -> bool:
    return c.in_ == c.charged + c.suspense + c.duplicates + c.filtered + c.pending


@pytest.fixture(scope="module")
async def pipeline(pool: asyncpg.Pool) -> AsyncIterator[Pipeline]:
    catalog = read_catalog_file(REPO / "config/demo-catalog.json")
    # The TAP3 vector's events are from 2014: a roaming tariff in force then, for its IMSI.
    roaming = json.loads(json.dumps(catalog["tariffs"][0]))
    roaming["id"] = "roaming"
    roaming["versions"][0]["effective_from"] = "2010-01-01T00:00:00Z"
    catalog["tariffs"].append(roaming)
    catalog["accounts"].append({"id": "R1", "identifiers": ["232323232323232"],
                                "tariff": "roaming"})
    await catalog_repo.load_catalog(pool, catalog)
    cfg = msgspec.structs.replace(config.load(env={}).pipeline, batch_size=3)
    yield Pipeline(pool, cfg, rater_factory=rater_factory(), decoders=decoders())


async def stored(pool: asyncpg.Pool, outcome: FileOutcome) -> dict[str, int]:
    """What the tables hold for the file, in the outcome's terms."""
    file_id = outcome.source_file_id
    return {
        "charged": await pool.fetchval(
            "SELECT count(*) FROM usage_records WHERE source_file_id = $1", file_id),
        "charges": await pool.fetchval(
            "SELECT count(*) FROM charges c JOIN usage_records u USING (account_id, usage_id) "
            "WHERE u.source_file_id = $1", file_id),
        "suspense": await pool.fetchval(
            "SELECT count(*) FROM suspense WHERE source_file_id = $1", file_id),
        "sequence_no": await pool.fetchval(
            "SELECT sequence_no FROM source_files WHERE source_file_id = $1", file_id),
    }


async def ingest_twice(pipeline: Pipeline, pool: asyncpg.Pool, path: Path, *, source: str,
                       fmt: str) -> tuple[FileOutcome, dict[str, int]]:
    first = await pipeline.ingest_file(path, source=source, format=fmt)
    assert reconciles(first.counts) and not first.replay
    tables = await stored(pool, first)
    again = await pipeline.ingest_file(path, source=source, format=fmt)
    assert again.replay and again.counts == first.counts and again.totals == first.totals
    assert await stored(pool, again) == tables
    return first, tables


async def test_3gpp_file_calls_partials_and_a_bad_record(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    odd = bytes([0xA5, 0x03, 0x80, 0x01, 0x05])  # transitRecord: not supported
    records = [call(1), bearer_part(1, 17), call(2), odd, bearer_part(2, 17), call(3),
               bearer_part(3, 0)]
    path = tmp_path / "msc1.cdr"
    with path.open("wb") as fh:
        write_3gpp_file(fh, records, sequence_number=4711)
    out, tables = await ingest_twice(pipeline, pool, path, source="msc1", fmt="3gpp")
    c = out.counts
    # Three parts make one usage. Batches hold 3 items: parts 1 and 2 were committed as
    # pending by earlier batches, part 3 is charged with the merged usage.
    assert (c.in_, c.charged, c.suspense, c.duplicates, c.pending) == (7, 4, 1, 0, 2)
    assert tables == {"charged": 4, "charges": 4, "suspense": 1, "sequence_no": 4711}
    merged = await pool.fetchrow(
        "SELECT record_key, volume_up, volume_down, attrs->'partial_parts' AS parts "
        "FROM usage_records WHERE record_key LIKE '%/merged'")
    assert merged["record_key"] == "pGW:10.1.2.3:4000000000/merged"
    assert (merged["volume_up"], merged["volume_down"]) == (6 * 1024, 6 * 2048)
    bad = await pool.fetchrow("SELECT reason, detail, raw FROM suspense WHERE source = 'msc1'")
    assert bad["reason"] == "MALFORMED" and "offset" in bad["detail"]
    assert bad["raw"] == odd


async def test_tap3_vector(pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    out, tables = await ingest_twice(pipeline, pool, TAP3_VECTOR, source="roaming", fmt="tap3")
    assert tables["sequence_no"] == 31707
    c = out.counts
    # The GPRS call is charged; the calls' parties and the supplementary service event
    # are unknown to the catalog; the audit totals do not match the events (a remainder
    # in suspense, the file in error) — every item accounted for.
    assert c.charged == tables["charged"] == tables["charges"] == 1
    assert c.suspense == tables["suspense"] == c.in_ - 1
    error = await pool.fetchval("SELECT error FROM source_files WHERE source_file_id = $1",
                                out.source_file_id)
    assert error is None or "audit" in error


async def test_asterisk_csv(pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path) -> None:
    rows = [
        f'"","{CALLER}","33622222222","default","","SIP/a","SIP/b","Dial","",'
        f'"2026-01-14 10:00:00","2026-01-14 10:00:05","2026-01-14 10:01:05",65,60,'
        f'"ANSWERED","DOCUMENTATION","16{i}.1",""' for i in range(4)]
    rows.append('"","x","y","default"')  # too few columns: suspense
    path = tmp_path / "Master.csv"
    path.write_text("\n".join(rows) + "\n")
    out, tables = await ingest_twice(pipeline, pool, path, source="pbx", fmt="csv")
    c = out.counts
    assert (c.in_, c.charged, c.suspense) == (5, 4, 1)
    assert tables == {"charged": 4, "charges": 4, "suspense": 1, "sequence_no": None}
    line = await pool.fetchval("SELECT detail FROM suspense WHERE source = 'pbx'")
    assert "line 5" in line


async def test_3gpp_file_repeating_records_of_an_earlier_one(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain calls go the columnar path; a batch holding a key an earlier file took turns
    into entries at the write (``WriteBatch.expand``): the repeats are duplicates, the rest
    charged, nothing stored twice."""
    odd = bytes([0xA5, 0x03, 0x80, 0x01, 0x05])
    first, second = tmp_path / "msc2-a.cdr", tmp_path / "msc2-b.cdr"
    with first.open("wb") as fh:
        write_3gpp_file(fh, [call(ref) for ref in range(101, 105)], sequence_number=1)
    with second.open("wb") as fh:
        write_3gpp_file(fh, [call(103), odd, call(104), call(105), call(106)],
                        sequence_number=2)
    expanded: list[bool] = []
    expand = WriteBatch.expand

    def spy(batch: WriteBatch) -> None:
        expanded.append(batch.carried is not None)
        expand(batch)

    monkeypatch.setattr(WriteBatch, "expand", spy)
    a = await pipeline.ingest_file(first, source="msc2", format="3gpp")
    b = await pipeline.ingest_file(second, source="msc2", format="3gpp")
    assert (a.counts.in_, a.counts.charged) == (4, 4)
    c = b.counts
    assert (c.in_, c.charged, c.duplicates, c.suspense) == (5, 2, 2, 1)
    assert await pool.fetchval("SELECT count(*) FROM usage_records WHERE source = 'msc2'") == 6
    charged = await pool.fetchval(
        "SELECT sum(amount_micros) FROM charges WHERE source_file_id = $1", b.source_file_id)
    assert any(expanded)  # the columnar batch met a taken key
    assert list(b.totals) == ["EUR"] and Decimal(b.totals["EUR"]) * 1_000_000 == charged
