"""Years of data: a database aged across 14 months with a test clock.

Every month of 2025-01 … 2026-02 the server's tick runs (partitions ahead, pseudonymisation),
four accounts make calls, the month before is billed and its invoices paid. Then, as of
2026-03-10 with a retention of 6 months, the months 2025-01 … 2025-08 may go, except those
still needed: an unpaid invoice (2025-03), an open dispute (2025-05), an open suspense record
(2025-07), a pending rerate (2025-02), charges on no invoice (2025-08).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gzip
import hashlib
import hmac
import io
import json
from collections import Counter
from pathlib import Path

import asyncpg
import msgspec
import pytest

from billing_oss.core.errors import Conflict
from billing_oss.server import assurance
from billing_oss.server.assurance import engine
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.collections import dunning, payments
from billing_oss.server.collections.model import NewPayment, Target
from billing_oss.server.config import AssuranceConfig, RetentionConfig
from billing_oss.server.retention import archive, housekeeping, months, pseudonyms, repo
from tests.charge_seed import insert_charges
from tests.integration import billing_seed

UTC = dt.UTC
KEY = "test pseudonym key: not a secret"
BILLED = ("A", "B", "C")  # billed every month; "U" never is
MONTHS = [months.add(dt.date(2025, 1, 1), n) for n in range(14)]  # 2025-01 … 2026-02
NOW = dt.datetime(2026, 3, 10, 12, tzinfo=UTC)
CONFIG = RetentionConfig(interval_s=86_400, partitions_ahead_months=3, archive_after_months=6,
                         pseudonymise_after_days=90, pseudonym_key=KEY)
# The ticks while aging archive nothing: the tests below archive step by step.
TICKS = msgspec.structs.replace(CONFIG, archive_after_months=0)
EXPECTED = {"2025-01": "archive", "2025-02": "hold", "2025-03": "hold", "2025-04": "archive",
            "2025-05": "hold", "2025-06": "archive", "2025-07": "hold", "2025-08": "hold"}


def calling(account: str, n: int) -> str:
    return f"3361{ord(account):03d}{n % 3:04d}"


async def calls(conn: asyncpg.Connection, account: str, month: dt.date, count: int) -> None:
    """``count`` calls of ``account`` in ``month``, each with its charge."""
    for n in range(count):
        when = months.start(month) + dt.timedelta(days=n + 1, hours=n)
        usage_id = await conn.fetchval("SELECT nextval('usage_id_seq')")
        await conn.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind, duration_s, calling, called, imsi, msisdn)"
            " VALUES ($1, $2, $3, 'msc1', $4, 'voice', 60, $5, $6, $7, $8)",
            account, usage_id, when, f"{account}-{usage_id}", calling(account, n),
            f"4930{n:06d}", f"20801{ord(account):010d}", calling(account, n))
        await insert_charges(conn, ("account_id", "event_time", "usage_id", "kind",
                                    "amount_micros", "currency", "zone"),
                             [(account, when, usage_id, "charge", 100_000 * (n + 1), "EUR",
                               "national")])


async def pay_all(pool: asyncpg.Pool, period: str, on: dt.date, *, skip: str = "") -> None:
    rows = await pool.fetch("SELECT account_id, invoice_id, payable_micros FROM invoices i"
                            " WHERE period = $1 AND status = 'finalised' AND payable_micros > 0"
                            " AND NOT EXISTS (SELECT 1 FROM payments p"
                            "  WHERE p.external_id = 'invoice-' || i.invoice_id)", period)
    for r in rows:
        if r["account_id"] != skip:
            await payments.record(pool, "test", NewPayment(
                account_id=r["account_id"], amount_micros=r["payable_micros"],
                received_on=on, method="transfer", external_id=f"invoice-{r['invoice_id']}",
                targets=(Target(r["invoice_id"]),)))


@pytest.fixture(scope="module")
async def aged(pool: asyncpg.Pool) -> dict[str, int]:
    """The 14 months lived through; rows seeded per month (usage = charges)."""
    seeded: Counter[str] = Counter()
    async with pool.acquire() as conn:
        await billing_seed.base(conn)
        for account in (*BILLED, "U"):
            await billing_seed.account(conn, account)
    for month in MONTHS:
        now = months.start(month) + dt.timedelta(days=4)
        assert await housekeeping.run_if_due(pool, TICKS, now, "test") is not None
        async with pool.acquire() as conn:
            for i, account in enumerate(BILLED):
                await calls(conn, account, month, 2 + i)
                seeded[months.label(month)] += 2 + i
            if month == dt.date(2025, 8, 1):
                await calls(conn, "U", month, 2)
                seeded[months.label(month)] += 2
        previous = months.add(month, -1)
        if previous >= MONTHS[0]:
            label = months.label(previous)
            await bill_run(pool, label, billing_seed.SETTINGS, accounts=list(BILLED),
                           finalize=True, force=True, now=now, actor="test")
            await pay_all(pool, label, now.date(), skip="B" if label == "2025-03" else "")
    async with pool.acquire() as conn:
        disputed = await conn.fetchval("SELECT invoice_id FROM invoices WHERE account_id = 'A'"
                                       " AND period = '2025-05'")
        await dunning.open_dispute(conn, "test", disputed, "call not made", dt.date(2025, 6, 20))
        await conn.execute(
            "INSERT INTO suspense (source, reason, record, created_at) VALUES"
            " ('msc1', 'NO_ZONE', $1, '2025-07-15'), ('msc1', 'NO_ZONE', $2, '2025-07-16')",
            json.dumps({"event_time": "2025-07-14T10:00:00Z", "calling": "33611"}),
            json.dumps({"event_time": "2025-06-30T10:00:00Z"}))
        await conn.execute("UPDATE suspense SET state = 'discarded', resolution = 'test'"
                           " WHERE record->>'event_time' LIKE '2025-06%'")
        await conn.execute(
            "INSERT INTO rerate_jobs (period_start, period_end, requested_by)"
            " VALUES ('2025-02-01Z', '2025-02-15Z', 'test')")
    return dict(seeded)


async def test_partitions_are_created_ahead_once_per_tick(pool: asyncpg.Pool,
                                                          aged: dict[str, int],
                                                          database_url: str) -> None:
    made = {(parent, m) for parent, _, m in await repo.partitions(pool)}
    for parent in repo.MONTHLY:
        for n in range(1, 4):  # the last tick, 2026-02-05, looked 3 months ahead
            assert (parent, months.add(MONTHS[-1], n)) in made
        assert (parent, months.add(MONTHS[-1], 4)) not in made
    # Two processes (two pools) at the same tick: one does it, the other finds it done.
    other = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        results = await asyncio.gather(housekeeping.run_if_due(pool, TICKS, NOW, "p1"),
                                       housekeeping.run_if_due(other, TICKS, NOW, "p2"))
    finally:
        await other.close()
    assert sorted(r is not None for r in results) == [False, True]
    again = await housekeeping.run_if_due(pool, TICKS, NOW + dt.timedelta(hours=1), "p1")
    assert again is None  # within the interval
    made = {(parent, m) for parent, _, m in await repo.partitions(pool)}
    assert all((p, dt.date(2026, 6, 1)) in made for p in repo.MONTHLY)


async def test_old_numbers_are_keyed_hashes_and_recent_ones_clear(pool: asyncpg.Pool,
                                                                  aged: dict[str, int]) -> None:
    assert await housekeeping.run_if_due(pool, TICKS, NOW + dt.timedelta(days=1), "test")
    before = NOW + dt.timedelta(days=1) - dt.timedelta(days=90)
    rows = await pool.fetch("SELECT account_id, event_time, record_key, calling, called, imsi,"
                            " msisdn FROM usage_records ORDER BY event_time, usage_id")
    old = [r for r in rows if r["event_time"] < before]
    recent = [r for r in rows if r["event_time"] >= before]
    assert old and recent
    for r in recent:
        assert r["calling"].isdigit() and r["called"].isdigit() and r["imsi"].isdigit()
    for r in old:
        n = (r["event_time"].day - 2)  # calls() puts call n on day n + 2
        clear = calling(r["account_id"], n)
        expected = "p:" + hmac.new(KEY.encode(), clear.encode(), hashlib.sha256).hexdigest()
        assert r["calling"] == expected == r["msisdn"]
        assert r["called"] == pseudonyms.pseudonym(KEY, f"4930{n:06d}")
        assert r["imsi"] == pseudonyms.pseudonym(KEY, f"20801{ord(r['account_id']):010d}")
    # the same number gives the same pseudonym: per-number analytics still group
    by_number = Counter(r["calling"] for r in old)
    assert len(by_number) == len({(r["account_id"], (r["event_time"].day - 2) % 3) for r in old})
    # and the invoices still say what they said
    assert await pool.fetchval("SELECT count(*) FROM invoices WHERE status = 'finalised'") > 0


async def test_plan_holds_every_month_still_needed(pool: asyncpg.Pool,
                                                   aged: dict[str, int]) -> None:
    plans = {p.month: p for p in await archive.plan(pool, NOW, CONFIG.archive_after_months)}
    assert {m: p.action for m, p in plans.items() if m in EXPECTED} == EXPECTED
    assert all(p.action == "keep" for m, p in plans.items() if m >= "2025-09")
    why = {m: " ".join(p.reasons) for m, p in plans.items()}
    assert "rerate" in why["2025-02"]
    assert "not fully paid" in why["2025-03"]
    assert "dispute" in why["2025-05"]
    assert "suspense" in why["2025-07"]
    assert "no finalised invoice" in why["2025-08"]
    assert plans["2025-01"].rows == {"usage_records": aged["2025-01"],
                                     "charges": aged["2025-01"]}
    with pytest.raises(Conflict, match="dispute"):
        await archive.run(pool, Path("/nonexistent"), NOW, 6, "test",
                          only=dt.date(2025, 5, 1))


async def test_archive_exports_verifies_drops_and_restores(pool: asyncpg.Pool,
                                                           aged: dict[str, int],
                                                           tmp_path: Path) -> None:
    charged = {m: await pool.fetchval(
        "SELECT sum(amount_micros) FROM charges WHERE event_time >= $1 AND event_time < $2",
        months.start(m), months.start(months.add(m, 1))) for m in MONTHS}
    made = await archive.run(pool, tmp_path, NOW, CONFIG.archive_after_months, "test")
    archived = [m for m, action in EXPECTED.items() if action == "archive"]
    assert [a.month for a in made] == archived
    left = {months.label(m) for _, _, m in await repo.partitions(pool)}
    assert not left & set(archived)
    assert {m for m, action in EXPECTED.items() if action == "hold"} <= left
    for a in made:
        manifest_bytes = (tmp_path / a.month / "manifest.json").read_bytes()
        assert hashlib.sha256(manifest_bytes).hexdigest() == a.manifest_sha256
        manifest = json.loads(manifest_bytes)
        assert manifest["period"]["from"].startswith(a.month)
        for t in manifest["tables"]:
            data = (tmp_path / a.month / t["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == t["sha256"]
            rows = list(csv.DictReader(io.StringIO(gzip.decompress(data).decode())))
            assert len(rows) == t["rows"] == aged[a.month]
            assert list(rows[0]) == t["columns"]
            if t["table"] == "charges":
                assert sum(int(r["amount_micros"]) for r in rows) == \
                    charged[months.parse(a.month)]
            else:  # exported after the pseudonymisation: no clear number left the database
                assert all(r["calling"].startswith("p:") for r in rows)
    # audited, and visible to the controls
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'archive.create'"
                               ) == len(archived)
    ctx = assurance.context(AssuranceConfig(), NOW + dt.timedelta(days=1))
    run = await engine.run(pool, ctx, controls=["retention", "conservation"], trigger="cli",
                           actor="test")
    found = {r.control: r for r in run.results}
    assert found["retention.archives"].status == "pass"
    assert found["retention.archives"].checked == len(archived)
    assert all(r.status == "pass" for r in run.results), run.results
    assert await archive.verify(pool) == []

    # a damaged file is found by verify and by the control
    damaged = tmp_path / "2025-04" / "charges_2025_04.csv.gz"
    original = damaged.read_bytes()
    damaged.write_bytes(original[:-8] + b"\0" * 8)
    assert [p.month for p in await archive.verify(pool)] == ["2025-04"]
    run = await engine.run(pool, ctx, controls=["retention.archives"], trigger="cli",
                           actor="test")
    assert run.results[0].status == "fail"
    assert run.results[0].evidence[0]["object"] == "archive:2025-04"
    damaged.write_bytes(original)

    # restore brings the month back, row for row
    (restored,) = await archive.restore(pool, dt.date(2025, 4, 1), "test")
    assert restored.state == "restored"
    assert await pool.fetchval(
        "SELECT sum(amount_micros) FROM charges WHERE event_time >= '2025-04-01Z'"
        " AND event_time < '2025-05-01Z'") == charged[dt.date(2025, 4, 1)]
    assert await pool.fetchval(
        "SELECT count(*) FROM usage_records WHERE event_time >= '2025-04-01Z'"
        " AND event_time < '2025-05-01Z'") == aged["2025-04"]


async def test_a_clear_number_older_than_the_period_fails_the_control(
        pool: asyncpg.Pool, aged: dict[str, int]) -> None:
    # the tick that pseudonymises, here or already in an earlier test (then a no-op)
    await housekeeping.run_if_due(pool, TICKS, NOW + dt.timedelta(days=1), "test")
    ctx = assurance.context(AssuranceConfig(), NOW + dt.timedelta(days=1))
    run = await engine.run(pool, ctx, controls=["retention.pseudonymised"], trigger="cli",
                           actor="test")
    assert run.results[0].status == "pass" and run.results[0].checked
    await pool.execute("UPDATE usage_records SET called = '4930000001' WHERE usage_id ="
                       " (SELECT min(usage_id) FROM usage_records"
                       "  WHERE event_time >= '2025-09-01Z')")
    run = await engine.run(pool, ctx, controls=["retention.pseudonymised"], trigger="cli",
                           actor="test")
    assert run.results[0].status == "fail" and run.results[0].offending == 1
    assert "called" in run.results[0].evidence[0]["detail"]


async def test_late_usage_of_an_archived_month_is_archived_beside_it(
        pool: asyncpg.Pool, aged: dict[str, int], tmp_path: Path) -> None:
    january = dt.date(2025, 1, 1)
    assert [a.state for a in await archive.list_archives(pool, january)] == ["dropped"]
    first = (await archive.list_archives(pool, january))[0]
    async with pool.acquire() as conn:
        await repo.ensure_partitions(conn, [january])
        await calls(conn, "A", january, 1)
    plans = {p.month: p for p in await archive.plan(pool, NOW, 6)}
    assert plans["2025-01"].action == "hold"  # the late charge is on no invoice yet
    await bill_run(pool, "2025-01", billing_seed.SETTINGS, accounts=["A"], finalize=True,
                   force=True, now=NOW, actor="test")
    await pay_all(pool, "2025-01", NOW.date())
    (second,) = await archive.run(pool, Path(first.directory).parent, NOW, 6, "test",
                                  only=january)
    assert Path(second.directory).name == "2025-01.2"
    assert [t.rows for t in second.tables] == [1, 1]
    assert archive.check_files(first) == [] and archive.check_files(second) == []
    back = await archive.restore(pool, january, "test")
    assert [a.archive_id for a in back] == [first.archive_id, second.archive_id]
    assert await pool.fetchval(
        "SELECT count(*) FROM usage_records WHERE event_time >= '2025-01-01Z'"
        " AND event_time < '2025-02-01Z'") == aged["2025-01"] + 1


async def test_pseudonymisation_walks_a_large_partition_range_by_range(
        pool: asyncpg.Pool, aged: dict[str, int]) -> None:
    october = dt.date(2025, 10, 1)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind, calling, called) SELECT 'C', nextval('usage_id_seq'),"
            " '2025-10-20Z'::timestamptz + n * interval '1 s', 'bulk', 'bulk-' || n, 'sms',"
            " '3361' || lpad(n::text, 6, '0'), '49301234' FROM generate_series(1, 3000) n")
    part = next(p for t, p, m in await repo.partitions(pool)
                if t == "usage_records" and m == october)
    pages = await repo.blocks(pool, part)
    assert pages > 10
    now = NOW + dt.timedelta(days=2)
    audits = await pool.fetchval("SELECT count(*) FROM audit_log"
                                 " WHERE action = 'usage.pseudonymise'")
    clear = await repo.clear_records(pool, pseudonyms.cutoff(now, 90))
    assert clear >= 3000  # and what earlier tests left in the clear
    changed = await pseudonyms.run(pool, KEY, 90, now, "test", pages=4)
    assert changed == clear
    assert await repo.clear_records(pool, pseudonyms.cutoff(now, 90)) == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action ="
                               " 'usage.pseudonymise'") - audits >= pages // 4
    assert await pool.fetchval("SELECT calling FROM usage_records WHERE record_key = 'bulk-7'"
                               ) == pseudonyms.pseudonym(KEY, "3361000007")


async def test_two_archive_runs_at_once_archive_each_month_once(
        pool: asyncpg.Pool, aged: dict[str, int], tmp_path: Path) -> None:
    # 2025-01 and 2025-04 were restored above, and nothing holds them.
    runs = await asyncio.gather(archive.run(pool, tmp_path, NOW, 6, "p1"),
                                archive.run(pool, tmp_path, NOW, 6, "p2"))
    assert sorted(a.month for made in runs for a in made) == ["2025-01", "2025-04"]
    assert await archive.verify(pool) == []


async def test_an_archive_that_cannot_drop_drops_nothing_and_runs_again(
        pool: asyncpg.Pool, aged: dict[str, int], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    april = dt.date(2025, 4, 1)
    await archive.restore(pool, april, "test")
    before = len(await archive.list_archives(pool, april))
    monkeypatch.setattr(archive, "LOCK_TIMEOUT_MS", 300)
    async with pool.acquire() as reader, reader.transaction():
        # a long report reading usage holds the parent table: the detach cannot have it
        await reader.fetchval("SELECT count(*) FROM usage_records")
        with pytest.raises(Conflict, match="stayed locked by another query"):
            await archive.run(pool, tmp_path, NOW, 6, "test", only=april)
    assert len(await archive.list_archives(pool, april)) == before
    assert await pool.fetchval("SELECT count(*) FROM usage_records WHERE event_time >="
                               " '2025-04-01Z' AND event_time < '2025-05-01Z'") == aged["2025-04"]
    (made,) = await archive.run(pool, tmp_path, NOW, 6, "test", only=april)
    assert archive.check_files(made) == []
    assert [t.dropped_rows for t in made.tables] == [aged["2025-04"]] * 2


async def test_numbers_under_an_open_dispute_wait_for_it_to_close(
        pool: asyncpg.Pool, aged: dict[str, int]) -> None:
    async with pool.acquire() as conn:
        invoice = await conn.fetchval("SELECT invoice_id FROM invoices WHERE account_id = 'B'"
                                      " AND period = '2026-01'")
        dispute = await dunning.open_dispute(conn, "test", invoice, "roaming calls",
                                             dt.date(2026, 2, 20))
    later = dt.datetime(2026, 5, 1, tzinfo=UTC)  # 90 days on: January is past the period
    await pseudonyms.run(pool, KEY, 90, later, "test")
    january = await pool.fetch("SELECT account_id, calling FROM usage_records"
                               " WHERE event_time >= '2026-01-01Z' AND event_time < '2026-02-01Z'")
    assert {r["account_id"] for r in january} == set(BILLED)
    for r in january:
        assert r["calling"].startswith("p:") == (r["account_id"] != "B"), r
    ctx = assurance.context(AssuranceConfig(), later)
    run = await engine.run(pool, ctx, controls=["retention.pseudonymised"], trigger="cli",
                           actor="test")
    assert run.results[0].status == "pass"

    async with pool.acquire() as conn:
        await dunning.close_dispute(conn, "test", dispute, dt.date(2026, 4, 2))
    run = await engine.run(pool, ctx, controls=["retention.pseudonymised"], trigger="cli",
                           actor="test")
    assert run.results[0].status == "fail"  # closed: B's January is due now
    assert await pseudonyms.run(pool, KEY, 90, later, "test") == 3  # B made 3 calls
    assert await repo.clear_records(pool, pseudonyms.cutoff(later, 90)) == 0
