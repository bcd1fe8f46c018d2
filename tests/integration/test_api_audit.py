"""The audit log: one hash-chained row per write, append-only in PostgreSQL, verifiable."""

import asyncio
import subprocess
import sys

import asyncpg
import pytest

from billing_oss.server.store import audit
from tests.conftest import REPO


async def write_some(pool: asyncpg.Pool, n: int) -> None:
    async def one(i: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await audit.record(conn, "key:test", "thing.update", f"thing:{i}",
                               {"n": i, "name": "é\u2028"}, {"n": i + 1, "big": 2**62})

    await asyncio.gather(*(one(i) for i in range(n)))


async def test_concurrent_appends_form_one_chain(pool: asyncpg.Pool) -> None:
    await write_some(pool, 40)
    result = await audit.verify(pool)
    assert result.ok and result.rows == 40, result.problems
    seqs = [r["seq"] for r in await pool.fetch("SELECT seq FROM audit_log ORDER BY seq")]
    assert seqs == list(range(1, 41))


async def test_record_needs_the_change_transaction(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            await audit.record(conn, "key:test", "x", "y", None, None)


async def test_the_database_refuses_update_delete_truncate(pool: asyncpg.Pool) -> None:
    for sql in ("UPDATE audit_log SET actor = 'someone else' WHERE seq = 1",
                "DELETE FROM audit_log WHERE seq = 1", "TRUNCATE audit_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.execute(sql)


async def tamper(pool: asyncpg.Pool, sql: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute(sql)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")


def verify_cli(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "billing_oss", "audit", "verify", "--database-url", database_url],
        capture_output=True, text=True, cwd=REPO, timeout=60)


async def test_verify_detects_changed_and_deleted_rows(pool: asyncpg.Pool,
                                                       database_url: str) -> None:
    ok = await asyncio.to_thread(verify_cli, database_url)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stderr

    await tamper(pool, """UPDATE audit_log SET after = '{"n": 999}' WHERE seq = 5""")
    result = await audit.verify(pool)
    assert not result.ok and [(p.seq, p.reason) for p in result.problems] == [
        (5, "row content does not match its hash")]
    bad = await asyncio.to_thread(verify_cli, database_url)
    assert bad.returncode == 1 and "row 5" in bad.stdout

    await tamper(pool, "DELETE FROM audit_log WHERE seq = 10")
    assert {p.seq for p in (await audit.verify(pool)).problems} == {5, 10, 11}

    await tamper(pool, "DELETE FROM audit_log WHERE seq = 40")
    problems = (await audit.verify(pool)).problems
    assert any("end" in p.reason for p in problems)
