"""The daily charge rollups against the raw charges, to the micro-unit, for every dimension:
after ingest (pipeline batches), after a rerate (reversals and new charges), after a suspense
retry, and after compaction."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from itertools import combinations
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from billing_oss.adapters.formats.items import FormatDecoder
from billing_oss.core.ports import Charge, Failure, Rater
from billing_oss.core.records import UsageRecord
from billing_oss.server import config, rerate
from billing_oss.server.analytics import repo
from billing_oss.server.composition import decoders, rater_factory, read_catalog_file
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.pipeline.raters import build_rater
from billing_oss.server.store import catalog_repo, charge_writes
from billing_oss.server.store import migrate as migrate_module
from billing_oss.server.store.dsn import with_database
from tests.conftest import REPO
from tests.generators.threegpp_files import encode_record, write_3gpp_file

KEY = ("account_id", "day", "service", "zone", "currency", "tariff_version_id")
# Identifiers of the demo catalog's accounts: (calling number, data MSISDN)
CALLERS = ["33611111111", "33622222222", "33650000001"]
CALLED = ["33612345678", "33145678901", "4930123456", "12125550100", "33899123456", "8613800"]


def records(n: int, seed: int) -> list[UsageRecord]:
    """Voice, SMS and data across accounts and zones, UTC days around a month boundary and
    every hour; one in twenty from an unknown caller (suspense: not in the rollups)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        when = dt.datetime(2026, 1, 27, tzinfo=dt.UTC) + dt.timedelta(
            hours=rng.randrange(10 * 24), minutes=rng.randrange(60))
        kind = rng.choice(["voice", "voice", "sms", "data"])
        caller = rng.choice(CALLERS) if i % 20 else "33600000000"  # no such account
        fields: dict[str, Any] = {}
        if kind == "data":
            fields = {"msisdn": caller, "volume_up": rng.randrange(10**6),
                      "volume_down": rng.randrange(10**7)}
        else:
            fields = {"calling": caller, "called": rng.choice(CALLED)}
            if kind == "voice":
                fields["duration_s"] = rng.randrange(0, 900)
        out.append(UsageRecord(record_key=f"r{seed}-{i}", source="msc1", kind=kind,
                               event_time=when.strftime("%Y-%m-%dT%H:%M:%SZ"), **fields))
    return out


def write_jsonl(path: Path, items: Sequence[UsageRecord]) -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in items))
    return path


def units(kind: str | None, r: asyncpg.Record) -> Decimal:
    """DESIGN.md §5 rule 3: the usage a record measures."""
    if kind == "voice":
        return Decimal(r["duration_s"] or 0)
    if kind == "data":
        return Decimal((r["volume_up"] or 0) + (r["volume_down"] or 0))
    if kind == "sms":
        return Decimal(1)
    return Decimal(r["quantity"] if r["quantity"] is not None else 1)


async def raw_facts(pool: asyncpg.Pool) -> list[tuple[tuple[Any, ...], int, int, Decimal]]:
    """Each charge row with its usage, as (key, amount, ±1, ±units), computed here."""
    rows = await pool.fetch(
        "SELECT c.account_id, c.event_time, u.kind AS service, c.zone, rtrim(c.currency) AS"
        " currency, c.tariff_version_id, c.kind, c.amount_micros, u.duration_s, u.volume_up,"
        " u.volume_down, u.quantity FROM charges c LEFT JOIN usage_records u"
        " USING (account_id, event_time, usage_id)")
    out = []
    for r in rows:
        sign = -1 if r["kind"] == "reversal" else 1
        day = r["event_time"].astimezone(dt.UTC).date()
        key = (r["account_id"], day, r["service"], r["zone"], r["currency"],
               r["tariff_version_id"])
        out.append((key, r["amount_micros"], sign, sign * units(r["service"], r)))
    return out


async def assert_rollups_match(pool: asyncpg.Pool) -> int:
    """For every subset of the key's dimensions, Σ amount, records and units grouped by it
    are the same from the rollups and from the raw charges. Returns the charge rows seen."""
    facts = await raw_facts(pool)
    for table in ("charge_rollups", "charge_rollups_monthly"):
        monthly = table.endswith("monthly")
        if monthly:  # the monthly level keys a month by its first day
            facts = [((*k[:1], k[1].replace(day=1), *k[2:]), a, s, u) for k, a, s, u in facts]
        await _match(pool, table, facts)
    # the account-less hourly level: every hour's charges and reversals, counts and sums
    hours = await pool.fetch(
        "SELECT hour, rtrim(currency), sum(charges), sum(reversals), sum(charged_micros),"
        " sum(reversed_micros) FROM charge_hour_totals GROUP BY 1, 2 ORDER BY 1, 2")
    charges = await pool.fetch(
        "SELECT date_trunc('hour', event_time, 'UTC'), rtrim(currency),"
        " count(*) FILTER (WHERE kind = 'charge'), count(*) FILTER (WHERE kind = 'reversal'),"
        " coalesce(sum(amount_micros) FILTER (WHERE kind = 'charge'), 0),"
        " coalesce(sum(amount_micros) FILTER (WHERE kind = 'reversal'), 0)"
        " FROM charges GROUP BY 1, 2 ORDER BY 1, 2")
    assert [tuple(r) for r in hours] == [tuple(r) for r in charges]
    return len(facts)


async def _match(pool: asyncpg.Pool, table: str,
                 facts: list[tuple[tuple[Any, ...], int, int, Decimal]]) -> None:
    rolled = await pool.fetch(
        "SELECT account_id, day, service, zone, rtrim(currency) AS currency,"
        f" tariff_version_id, amount_micros, records, units FROM {table}")
    for size in range(len(KEY) + 1):
        for dims in combinations(range(len(KEY)), size):
            expected: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, Decimal(0)])
            for key, amount, sign, measured in facts:
                acc = expected[tuple(key[d] for d in dims)]
                acc[0] += amount
                acc[1] += sign
                acc[2] += measured
            got: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, Decimal(0)])
            for r in rolled:
                acc = got[tuple(r[KEY[d]] for d in dims)]
                acc[0] += r["amount_micros"]
                acc[1] += r["records"]
                acc[2] += r["units"]
            assert dict(got) == dict(expected), (table, [KEY[d] for d in dims])


@pytest.fixture(scope="module")
async def pipeline(pool: asyncpg.Pool) -> AsyncIterator[Pipeline]:
    await catalog_repo.load_catalog(pool, read_catalog_file(REPO / "config/demo-catalog.json"))
    cfg = msgspec.structs.replace(config.load(env={}).pipeline, batch_size=13)
    yield Pipeline(pool, cfg, rater_factory=build_rater, decoders={"jsonl": FormatDecoder("jsonl")})


class Dearer:
    """The current rater with every amount ×3 and a tariff version of its own: a rerate
    reverses and recharges every usage."""

    def __init__(self, inner: Rater) -> None:
        self.inner = inner

    def rate(self, items: Sequence[UsageRecord]) -> list[Charge | Failure]:
        return [msgspec.structs.replace(o, amount_micros=o.amount_micros * 3 + 1,
                                        tariff_version_id=None)
                if isinstance(o, Charge) else o for o in self.inner.rate(items)]


class Source:
    def __init__(self, rater: Rater) -> None:
        self.rater = rater

    async def current(self) -> Rater:
        return self.rater


async def test_rollups_equal_raw_charges_after_ingest_rerate_and_compaction(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first = await pipeline.ingest_file(write_jsonl(tmp_path / "a.jsonl", records(400, 1)),
                                       source="msc1", format="jsonl")
    assert first.counts.charged > 300 and first.counts.suspense > 0
    # Two files at once: their batches append deltas of the same accounts and days.
    await asyncio.gather(*(pipeline.ingest_file(write_jsonl(tmp_path / f"{s}.jsonl",
                                                            records(300, s)),
                                                source="msc1", format="jsonl")
                           for s in (2, 3)))
    charged = await assert_rollups_match(pool)
    assert charged == await pool.fetchval("SELECT count(*) FROM charges")

    # A rerate of part of the period (crossing the month boundary) by a dearer rater.
    job = await rerate.submit(pool, "test", None, dt.datetime(2026, 1, 30, tzinfo=dt.UTC),
                              dt.datetime(2026, 2, 3, tzinfo=dt.UTC))
    assert await rerate.run_next(pool, Source(Dearer(await pipeline.raters.current())))
    done = await rerate.get(pool, job.rerate_job_id)
    assert done.state == "done" and done.usage_changed > 100
    assert await pool.fetchval("SELECT count(*) FROM charges WHERE kind = 'reversal'") > 100
    await assert_rollups_match(pool)

    # Compaction folds the deltas and keeps every sum.
    both = ("SELECT (SELECT count(*) FROM charge_rollups {0})"
            " + (SELECT count(*) FROM charge_rollups_monthly {0})"
            " + (SELECT count(*) FROM charge_hour_totals {0})")
    deltas = await pool.fetchval(both.format(""))
    folded = await repo.compact(pool, dt.date(2026, 1, 1), dt.date(2026, 2, 28))
    left = await pool.fetchval(both.format(""))
    assert folded == deltas - left > 0
    assert await pool.fetchval(both.format("WHERE NOT compacted")) == 0
    await assert_rollups_match(pool)
    assert await repo.compact(pool, dt.date(2026, 1, 1), dt.date(2026, 2, 28)) == 0


def cdrs(n: int, seed: int) -> list[bytes]:
    """32.297 calls, SMS and P-GW sessions of the demo accounts over UTC days around a month
    boundary: the columnar path carries them, its deltas grouped natively; volumes up to
    10^12 bytes and durations of whole and partial base-10000 digits (numeric units)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        when = (1769472000 + rng.randrange(10 * 86400), 0)  # 2026-01-27 .. 2026-02-06
        caller = rng.choice(CALLERS)
        kind = rng.choice(["call", "call", "sms", "data"])
        if kind == "call":
            out.append(encode_record("moCallRecord", {
                "recordType": 0, "servedIMSI": "208011234567890", "servedMSISDN": caller,
                "calledNumber": rng.choice(CALLED), "recordingEntity": "33609000001",
                "answerTime": when, "callDuration": rng.choice([0, 1, 60, 10000, 123457]),
                "causeForTerm": 0, "callReference": (seed * 10**6 + i).to_bytes(8, "big")}))
        elif kind == "sms":
            out.append(encode_record("moSMSRecord", {
                "recordType": 6, "servedIMSI": "208011234567890", "servedMSISDN": caller,
                "msClassmark": b"\x53\x19\x90", "serviceCentre": "33609000999",
                "recordingEntity": "33609000001", "messageReference": bytes([i % 256]),
                "originationTime": when, "destinationNumber": rng.choice(CALLED)}))
        else:
            out.append(encode_record("pGWRecord", {
                "recordType": 85, "servedIMSI": "208011234567890", "servedMSISDN": caller,
                "p-GWAddress": "10.1.2.3", "chargingID": seed * 10**6 + i,
                "recordOpeningTime": when, "duration": 600, "causeForRecClosing": 0,
                "listOfTrafficVolumes": [(rng.choice([0, 10**4, 10**12]),
                                          rng.randrange(10**9))]}))
    return out


async def test_3gpp_ingest_rollups_equal_raw_charges(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await catalog_repo.load_catalog(pool, read_catalog_file(REPO / "config/demo-catalog.json"))
    cfg = msgspec.structs.replace(config.load(env={}).pipeline, batch_size=50)
    pipeline = Pipeline(pool, cfg, rater_factory=rater_factory(), decoders=decoders())
    before = await pool.fetchval("SELECT count(*) FROM charge_rollups")
    for seed in (1, 2):
        path = tmp_path / f"{seed}.cdr"
        with path.open("wb") as fh:
            write_3gpp_file(fh, cdrs(300, seed), sequence_number=seed)
        out = await pipeline.ingest_file(path, source="msc-3gpp", format="3gpp")
        assert out.counts.charged > 250
    assert await pool.fetchval("SELECT count(*) FROM charge_rollups") > before
    assert await pool.fetchval("SELECT max(units) FROM charge_rollups") >= 10**12
    await assert_rollups_match(pool)


async def test_suspense_retry_moves_the_rollup(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    unknown = [UsageRecord(record_key=f"late-{i}", source="msc1", kind="voice",
                           event_time="2026-02-10T09:00:00Z", duration_s=120,
                           calling="33699999999", called="33612345678") for i in range(3)]
    out = await pipeline.ingest_file(write_jsonl(tmp_path / "u.jsonl", unknown),
                                     source="msc1", format="jsonl")
    assert out.counts.suspense == 3
    catalog = read_catalog_file(REPO / "config/demo-catalog.json")
    catalog["accounts"][0]["identifiers"].append("33699999999")  # type: ignore[index]
    await catalog_repo.load_catalog(pool, catalog)
    retried = await pipeline.retry_suspense(reason="UNKNOWN_ACCOUNT")
    assert retried.charged == 3
    await assert_rollups_match(pool)


async def copy_traffic(source: asyncpg.Pool, into: asyncpg.Pool, keys: str) -> None:
    """The usage and charges of records ``keys…`` as today's ingest wrote them into
    ``source``, copied into ``into``, a database of an earlier schema (its columns only):
    today's writers write the rollups too, which that schema has not."""
    for table in ("usage_records", "charges"):
        columns = [r[0] for r in await into.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1"
            " ORDER BY ordinal_position", table)]
        join = "" if table == "usage_records" else (
            " JOIN usage_records u USING (account_id, event_time, usage_id)")
        rows = await source.fetch(
            f"SELECT {', '.join('t.' + c for c in columns)} FROM {table} t{join}"
            " WHERE record_key LIKE $1 || '%'", keys)
        async with into.acquire() as conn:
            for month in {r["event_time"].date().replace(day=1) for r in rows}:
                await conn.execute("SELECT ensure_month_partition($1::regclass, $2)",
                                   table, month)
            await conn.copy_records_to_table(table, records=[tuple(r) for r in rows],
                                             columns=columns)


async def test_migration_backfills_the_charges_written_before_it(
    pipeline: Pipeline, pool: asyncpg.Pool, pg_admin_dsn: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that had charges before the rollups existed gets them, compacted."""
    today = pool
    await pipeline.ingest_file(write_jsonl(tmp_path / "b.jsonl", records(200, 9)),
                               source="msc1", format="jsonl")
    earlier = tmp_path / "migrations"
    earlier.mkdir()
    for path in sorted(migrate_module.MIGRATIONS_DIR.glob("*.sql")):
        # Before the rollups, plus what today's rater reads (the account generation) and
        # today's ingest writes (a file's declared record count, a charge's file, the outbox
        # keyed by account).
        if path.name < "1000" or path.name.startswith(("1250_", "1340_", "1430_", "1472_")):
            (earlier / path.name).write_text(path.read_text())
    name = f"t_rollup_backfill_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        pool = await asyncpg.create_pool(with_database(pg_admin_dsn, name),
                                         min_size=1, max_size=4)
        assert pool is not None
        try:
            real = migrate_module.MIGRATIONS_DIR
            monkeypatch.setattr(migrate_module, "MIGRATIONS_DIR", earlier)
            await migrate_module.migrate(pool)
            assert await pool.fetchval("SELECT to_regclass('charge_rollups')") is None
            await catalog_repo.load_catalog(
                pool, read_catalog_file(REPO / "config/demo-catalog.json"))
            await copy_traffic(today, pool, "r9-")
            monkeypatch.setattr(migrate_module, "MIGRATIONS_DIR", real)
            applied = await migrate_module.migrate(pool)
            assert {"1000_charge_rollups", "1003_monthly_rollups"} <= set(applied)
            assert await assert_rollups_match(pool) > 150
            assert await pool.fetchval(
                "SELECT count(*) FROM charge_rollups WHERE NOT compacted") == 0
            assert await pool.fetchval(
                "SELECT count(*) FROM charge_rollups_monthly WHERE NOT compacted") == 0
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_writer_reads_no_usage_and_no_trigger_is_left(pool: asyncpg.Pool) -> None:
    """The rollups come from what the writer has in hand: writing charges probes no usage
    row (the trigger probed one per charge, issue #24), and no trigger fires on charges."""
    assert await pool.fetchval(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'charges_roll_up'") == 0
    assert await pool.fetchval("SELECT to_regproc('roll_up_charges')") is None
    async with pool.acquire() as conn, conn.transaction():
        for table in ("usage_records", "charges"):
            await conn.execute("SELECT ensure_month_partition($1::regclass, '2026-05-01')",
                               table)
        await conn.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind, duration_s) SELECT 'P' || (i % 50), i, '2026-05-01'::timestamptz"
            " + (i - 10000000) * interval '1 minute', 'probe', 'p' || i, 'voice', 60"
            " FROM generate_series(10000000, 10005000) i")
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    rows, facts = [], []
    for i in range(10000000, 10005001):
        when = start + dt.timedelta(minutes=i - 10000000)
        rows.append((f"P{i % 50}", when, i, "charge", 5, "EUR", None, None, None, None))
        facts.append(charge_writes.Fact(f"P{i % 50}", when, "voice", None, "EUR", None, False,
                                        5, charge_writes.rollup_units("voice", 60, None, None,
                                                                      None)))
    reads = ("SELECT seq_scan + idx_scan FROM pg_stat_xact_user_tables"
             " WHERE relname = 'usage_records_2026_05'")
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchval(reads)  # counts not flushed yet are shown too
        await charge_writes.write(conn, rows, charge_writes.roll_up(facts))
        assert await conn.fetchval(reads) == before
    assert await pool.fetchval("SELECT sum(units) FROM charge_rollups r"
                               " WHERE account_id LIKE 'P%'") == 60 * 5001
    await assert_rollups_match(pool)


async def test_records_that_lose_their_key_are_not_rolled_up(
    pipeline: Pipeline, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A file repeating records charged before: its batches' rows were built (rollups
    included) before their keys were claimed; those that lost their claim roll up nothing."""
    await pipeline.ingest_file(write_jsonl(tmp_path / "d1.jsonl", records(120, 21)),
                               source="msc1", format="jsonl")
    again = await pipeline.ingest_file(
        write_jsonl(tmp_path / "d2.jsonl", records(120, 21) + records(60, 22)),
        source="msc1", format="jsonl")
    assert again.counts.duplicates >= 100 and again.counts.charged > 40
    await assert_rollups_match(pool)


async def test_python_units_are_the_sql_units(pool: asyncpg.Pool) -> None:
    """``charge_writes.rollup_units`` and the SQL ``charge_rollup_units`` agree."""
    cases = [(kind, d, up, down, q) for kind in ("voice", "data", "sms", "event", None)
             for d in (None, 0, 61) for up, down in ((None, None), (5, None), (None, 7), (5, 7))
             for q in (None, "1", "2.500", "0.000001")]
    sql = await pool.fetch(
        "SELECT charge_rollup_units(k, d, u, w, q::numeric) FROM unnest($1::text[],"
        " $2::bigint[], $3::bigint[], $4::bigint[], $5::text[]) AS t(k, d, u, w, q)",
        *map(list, zip(*cases, strict=True)))
    assert [r[0] for r in sql] == [charge_writes.rollup_units(*c) for c in cases]
