"""The rollup levels against the charges: the ``rollups.levels`` control passes on levels the
writers and compaction kept (charges, reversals, late charges into folded days, two
currencies; deltas folded or not), fails naming exactly the level and key of one corrupted
row of each level, and passes again once ``report rebuild`` has recomputed the days — whose
levels then equal a fresh recomputation, also when charges are written during the rebuild."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path

import asyncpg
import pytest

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.analytics import rebuild
from billing_oss.server.assurance import engine
from billing_oss.server.assurance.model import Context, Settings
from billing_oss.server.store import audit, charge_writes
from tests.charge_seed import insert_charges
from tests.integration.api_harness import seed_usage

REPO = Path(__file__).resolve().parents[2]
FIRST, LAST = dt.date(2026, 3, 1), dt.date(2026, 4, 30)
AS_OF = dt.datetime(2026, 4, 30, 23, tzinfo=dt.UTC)
ALL_DAYS = Settings(rollup_days=0)
LEVEL_TABLES = {
    "charge_rollups": "SELECT account_id, day, service, zone, currency, tariff_version_id,"
                      " sum(amount_micros), sum(records), sum(units), sum(reversals),"
                      " sum(reversed_micros) FROM charge_rollups GROUP BY 1, 2, 3, 4, 5, 6",
    "charge_rollups_monthly": "SELECT account_id, day, service, zone, currency,"
                              " tariff_version_id, sum(amount_micros), sum(records),"
                              " sum(units), sum(reversals), sum(reversed_micros)"
                              " FROM charge_rollups_monthly GROUP BY 1, 2, 3, 4, 5, 6",
    "charge_hour_totals": "SELECT hour, currency, sum(charges), sum(reversals),"
                          " sum(charged_micros), sum(reversed_micros)"
                          " FROM charge_hour_totals GROUP BY 1, 2",
    "charge_totals": "SELECT * FROM charge_totals",
    "charge_day_totals": "SELECT * FROM charge_day_totals",
    "charge_week_totals": "SELECT * FROM charge_week_totals",
    "charge_month_totals": "SELECT * FROM charge_month_totals",
    "charge_account_months": "SELECT * FROM charge_account_months",
    "charge_account_days": "SELECT * FROM charge_account_days WHERE days <> 0::bit(366)",
    "charge_account_presence": "SELECT * FROM charge_account_presence WHERE months <> 0",
}


async def check(pool: asyncpg.Pool, settings: Settings = ALL_DAYS) -> dict[str, object]:
    run = await engine.run(pool, Context(as_of=AS_OF, settings=settings),
                           controls=["rollups.levels"], trigger="cli", actor="test")
    (result,) = run.results
    assert result.error is None, result.error
    return {"status": result.status, "offending": result.offending,
            "evidence": result.evidence, "at_stake": result.at_stake}


async def compact(pool: asyncpg.Pool) -> None:
    await pool.execute("SELECT compact_charge_rollups('2000-01-01', '2100-01-01'),"
                       " compact_charge_rollups_monthly('2000-01-01', '2100-01-01'),"
                       " compact_charge_hour_totals()")


async def levels(pool: asyncpg.Pool) -> dict[str, list[tuple[object, ...]]]:
    """Every level's rows (kept and deltas summed per key), sorted."""
    return {t: sorted((tuple(r) for r in await pool.fetch(sql)), key=repr)
            for t, sql in LEVEL_TABLES.items()}


async def reverse(pool: asyncpg.Pool, account: str, usage_id: int) -> None:
    """A reversal of the usage's charge, as a rerate writes it."""
    charge = await pool.fetchrow("SELECT * FROM charges WHERE account_id = $1 AND usage_id = $2",
                                 account, usage_id)
    await insert_charges(pool, ("account_id", "event_time", "usage_id", "kind", "amount_micros",
                                "currency", "tariff_version_id"),
                         [(account, charge["event_time"], usage_id, "reversal",
                           -charge["amount_micros"], charge["currency"],
                           charge["tariff_version_id"])])


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool) -> asyncpg.Pool:
    """Three accounts' calls and data over March and April in EUR and USD, reversals, some
    folded, then late charges into folded days and deltas left unfolded."""
    await pool.execute("INSERT INTO accounts (account_id) VALUES ('L1'), ('L2'), ('L3')")
    usages = []
    for i in range(60):
        when = dt.datetime(2026, 3, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=23 * i + i % 5)
        usages.append((f"L{i % 3 + 1}", await seed_usage(
            pool, f"L{i % 3 + 1}", when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            amount_micros=1_000_003 * (i + 1), kind=("voice", "data")[i % 2],
            currency=("EUR", "USD")[i % 4 == 3])))
    for account, usage_id in usages[::7]:
        await reverse(pool, account, usage_id)
    await compact(pool)
    for i in range(6):  # late charges into folded days, and deltas left unfolded
        await seed_usage(pool, f"L{i % 3 + 1}", f"2026-03-0{i + 2}T0{i}:30:00Z",
                         amount_micros=777_001 + i, currency=("EUR", "USD")[i % 2])
    await reverse(pool, *usages[1])
    return pool


async def test_the_levels_equal_the_charges_folded_or_not(seeded: asyncpg.Pool) -> None:
    assert await seeded.fetchval("SELECT count(*) FROM charge_rollups WHERE NOT compacted")
    assert (await check(seeded))["status"] == "pass"
    # The last days only (the default window), the charges of April's weeks and months.
    assert (await check(seeded, Settings(rollup_days=3)))["status"] == "pass"
    await compact(seeded)
    assert (await check(seeded))["status"] == "pass"


CORRUPTIONS: list[tuple[str, str]] = [
    ("charge_rollups", "UPDATE charge_rollups_kept SET amount_micros = amount_micros + 1"
     " WHERE ctid = (SELECT min(ctid) FROM charge_rollups_kept)"),
    ("charge_rollups_monthly", "DELETE FROM charge_rollups_monthly_kept WHERE ctid ="
     " (SELECT min(ctid) FROM charge_rollups_monthly_kept WHERE currency = 'USD')"),
    ("charge_hour_totals", "UPDATE charge_hour_totals_kept SET charges = charges + 1"
     " WHERE ctid = (SELECT min(ctid) FROM charge_hour_totals_kept)"),
    ("charge_totals", "UPDATE charge_totals SET records = records - 1"
     " WHERE ctid = (SELECT min(ctid) FROM charge_totals)"),
    ("charge_day_totals", "UPDATE charge_day_totals SET accounts = accounts + 1"
     " WHERE ctid = (SELECT min(ctid) FROM charge_day_totals WHERE grouping = 'zone')"),
    ("charge_week_totals", "UPDATE charge_week_totals SET units = units + 60"
     " WHERE ctid = (SELECT min(ctid) FROM charge_week_totals WHERE grouping = 'service'"
     " AND day >= '2026-03-02')"),
    ("charge_month_totals", "DELETE FROM charge_month_totals WHERE ctid ="
     " (SELECT min(ctid) FROM charge_month_totals WHERE grouping = '')"),
    ("charge_account_months", "UPDATE charge_account_months SET amount_micros ="
     " amount_micros - 5 WHERE account_id = 'L2' AND day = '2026-04-01'"
     " AND currency = 'EUR'"),
    ("charge_account_days", "UPDATE charge_account_days"
     " SET days = set_bit(days, position('1' IN days::text) - 1, 0)"
     " WHERE account_id = 'L3' AND grouping = '' AND currency = 'EUR'"),
    ("charge_account_presence", "UPDATE charge_account_presence SET months = months & ~4"
     " WHERE account_id = 'L1' AND grouping = 'service' AND service = 'voice'"
     " AND currency = 'EUR'"),
]


@pytest.mark.parametrize(("level", "corruption"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
async def test_a_corrupted_row_is_named_and_rebuilt(seeded: asyncpg.Pool, level: str,
                                                    corruption: str) -> None:
    await compact(seeded)
    before = await levels(seeded)
    assert await seeded.execute(corruption) in ("UPDATE 1", "DELETE 1")

    found = await check(seeded)
    assert found["status"] == "fail"
    evidence = found["evidence"]
    assert isinstance(evidence, list) and found["offending"] == 1, evidence
    assert evidence[0]["object"].startswith(f"{level}:"), evidence
    assert f"{level} " in evidence[0]["detail"] and "expected" in evidence[0]["detail"]

    written = await rebuild.rebuild(seeded, FIRST, LAST, actor="test")
    assert set(written) == {"daily", "monthly", "hourly"}
    assert (await check(seeded))["status"] == "pass"
    assert await levels(seeded) == before  # what the writers and compaction had kept
    await rebuild.rebuild(seeded, FIRST, LAST, actor="test")
    assert await levels(seeded) == before  # idempotent


async def test_a_finding_names_key_expected_and_found(seeded: asyncpg.Pool) -> None:
    await compact(seeded)
    row = await seeded.fetchrow(
        "UPDATE charge_rollups_kept SET amount_micros = amount_micros + 250000"
        " WHERE account_id = 'L2' AND day = '2026-03-02' AND currency = 'EUR'"
        " RETURNING service, zone, amount_micros, records")
    found = await check(seeded)
    (offender,) = found["evidence"]  # type: ignore[misc]
    assert offender["object"] == (
        f"charge_rollups:account_id=L2 day=2026-03-02 service={row['service']} zone=none"
        " currency=EUR tariff_version_id=none")
    want = row["amount_micros"] - 250000
    assert (f"expected (amount_micros, records, units, reversals, reversed_micros)"
            f" {{{want},{row['records']},") in offender["detail"]
    assert f"found {{{row['amount_micros']},{row['records']}," in offender["detail"]
    assert found["at_stake"] == {"EUR": "0.25"}
    await rebuild.rebuild(seeded, dt.date(2026, 3, 2), dt.date(2026, 3, 2), actor="test",
                          levels=["daily"])
    assert (await check(seeded))["status"] == "pass"


async def test_the_hourly_level_of_an_older_writer_is_rebuilt(seeded: asyncpg.Pool) -> None:
    # A writer of before migration 1512 (a rolling deploy): charges and the daily and monthly
    # deltas, no hourly delta.
    usage_id = await seed_usage(seeded, "L1", "2026-04-20T08:15:00Z", amount_micros=None)
    when = dt.datetime(2026, 4, 20, 8, 15, tzinfo=dt.UTC)
    rows = [("L1", when, usage_id, "charge", 4_200_000, "EUR", None)]
    roll = charge_writes.roll_up([charge_writes.Fact("L1", when, "voice", None, "EUR", None,
                                                     False, 4_200_000, 60)])
    async with seeded.acquire() as conn, conn.transaction():
        await charge_writes.write(conn, rows, roll._replace(hourly=[]), columns=(
            "account_id", "event_time", "usage_id", "kind", "amount_micros", "currency",
            "tariff_version_id"))
    found = await check(seeded)
    assert [e["object"] for e in found["evidence"]] == [  # type: ignore[attr-defined]
        "charge_hour_totals:hour=2026-04-20T08:00Z currency=EUR"]
    assert found["at_stake"] == {"EUR": "4.20"}
    assert set(await rebuild.rebuild(seeded, dt.date(2026, 4, 20), dt.date(2026, 4, 20),
                                     actor="test", levels=["hourly"])) == {"hourly"}
    assert (await check(seeded))["status"] == "pass"
    entry = await seeded.fetchrow("SELECT * FROM audit_log WHERE action = 'rollups.rebuild'"
                                  " ORDER BY seq DESC LIMIT 1")
    assert entry["entity"] == "rollups:2026-04-20..2026-04-20" and entry["actor"] == "test"
    assert (await audit.verify(seeded)).ok


async def test_a_rebuild_while_charges_are_written_stays_exact(seeded: asyncpg.Pool) -> None:
    written = 0
    done = asyncio.Event()

    async def ingest() -> None:
        nonlocal written
        for i in range(120):
            moment = dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(hours=7 * i + 3)
            await seed_usage(seeded, f"L{i % 3 + 1}", moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             amount_micros=300_001 + i, currency=("EUR", "USD")[i % 3 == 0])
            written += 1
        done.set()

    async def rebuild_until_done() -> int:
        runs = 0
        while not done.is_set() or runs < 2:
            await rebuild.rebuild(seeded, FIRST, LAST, actor="test")
            runs += 1
        return runs

    writing = asyncio.create_task(ingest())
    runs = await rebuild_until_done()
    await writing
    assert written == 120 and runs >= 2
    assert (await check(seeded))["status"] == "pass"  # deltas of the charges written meanwhile
    await compact(seeded)
    assert (await check(seeded))["status"] == "pass"
    kept = await levels(seeded)
    await rebuild.rebuild(seeded, FIRST, LAST, actor="test")
    assert await levels(seeded) == kept


async def test_a_rebuild_refuses_what_the_charges_cannot_tell(seeded: asyncpg.Pool) -> None:
    with pytest.raises(InvalidRequest, match="archived"):
        await rebuild.rebuild(seeded, dt.date(2025, 12, 1), LAST, actor="test")
    with pytest.raises(InvalidRequest, match="levels"):
        await rebuild.rebuild(seeded, FIRST, LAST, actor="test", levels=["weekly"])
    with pytest.raises(InvalidRequest, match="empty"):
        await rebuild.rebuild(seeded, LAST, FIRST, actor="test")



async def test_the_window_reads_its_days_only(seeded: asyncpg.Pool) -> None:
    await compact(seeded)
    await seeded.execute("UPDATE charge_rollups_kept SET records = records + 1"
                         " WHERE ctid = (SELECT min(ctid) FROM charge_rollups_kept"
                         " WHERE day = (SELECT min(day) FROM charge_rollups_kept))")
    # 28-30 April: no whole week or month among them: March is not read.
    assert (await check(seeded, Settings(rollup_days=3)))["status"] == "pass"
    assert (await check(seeded))["offending"] == 1
    await rebuild.rebuild(seeded, FIRST, LAST, actor="test", levels=["daily"])
    assert (await check(seeded))["status"] == "pass"


async def test_the_rebuild_verb(seeded: asyncpg.Pool, database_url: str) -> None:
    await compact(seeded)
    await seeded.execute("DELETE FROM charge_hour_totals_kept WHERE ctid ="
                         " (SELECT min(ctid) FROM charge_hour_totals_kept)")
    assert (await check(seeded))["status"] == "fail"
    python = REPO / ".venv/bin/python"
    proc = await asyncio.create_subprocess_exec(
        str(python) if python.exists() else "python3", "-m", "billing_oss", "report",
        "rebuild", "--from", "2026-03-01", "--to", "2026-05-01", "--level", "hourly",
        cwd=REPO, env={**os.environ, "BILLING_OSS_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("hourly: ") and "2026-03-01 to 2026-05-01" in out.decode()
    assert (await check(seeded))["status"] == "pass"
    assert await seeded.fetchval("SELECT actor FROM audit_log WHERE action = 'rollups.rebuild'"
                                 " ORDER BY seq DESC LIMIT 1") != "test"  # the shell's user
