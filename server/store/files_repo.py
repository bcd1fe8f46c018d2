"""The source file ledger as operators read it: per-file counts, and sequence gaps.

A gap is a run of sequence numbers missing between two files received from one source
(and partner): the files in between were never delivered, or were lost on the way.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import msgspec

from billing_oss.core.contract import FileAlarm
from billing_oss.core.errors import NotFound
from billing_oss.server.store.filters import Where
from billing_oss.server.store.pool import Connection


class SourceFile(msgspec.Struct, frozen=True, kw_only=True):
    source_file_id: int
    source: str
    name: str
    partner: str | None
    format: str
    sequence_no: int | None
    size_bytes: int | None
    sha256: str
    state: str
    count_in: int
    count_charged: int
    count_suspense: int
    count_duplicates: int
    count_filtered: int
    count_pending: int
    error: str | None
    received_at: dt.datetime
    completed_at: dt.datetime | None


class Gap(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    partner: str | None
    first_missing: int
    last_missing: int
    after_file_id: int
    before_file_id: int


_COLUMNS = ", ".join(f for f in SourceFile.__struct_fields__)


async def find(pool: asyncpg.Pool, *, source: str | None, state: str | None,
               partner: str | None, after: int | None, limit: int) -> list[SourceFile]:
    w = (Where().add("source = {}", source).add("state = {}", state)
         .add("partner = {}", partner).add("source_file_id > {}", after))
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM source_files" + w.sql()
                            + " ORDER BY source_file_id" + w.limit(limit + 1), *w.args)
    return [SourceFile(**dict(r)) for r in rows]


async def get(pool: asyncpg.Pool, source_file_id: int) -> SourceFile:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM source_files WHERE source_file_id = $1",
                              source_file_id)
    if row is None:
        raise NotFound(f"no source file {source_file_id}")
    return SourceFile(**dict(row))


async def gaps(pool: asyncpg.Pool, *, source: str | None, limit: int) -> list[Gap]:
    w = Where().add("source = {}", source)
    rows = await pool.fetch(
        "SELECT source, partner, prev_seq + 1 AS first_missing, sequence_no - 1 AS last_missing,"
        " prev_id AS after_file_id, source_file_id AS before_file_id FROM ("
        "  SELECT source, partner, sequence_no, source_file_id,"
        "   lag(sequence_no) OVER w AS prev_seq, lag(source_file_id) OVER w AS prev_id"
        "  FROM (SELECT DISTINCT ON (source, partner, sequence_no) source, partner,"
        "         sequence_no, source_file_id FROM source_files"
        "         WHERE sequence_no IS NOT NULL"
        + (" AND " + " AND ".join(w.clauses) if w.clauses else "")
        + "         ORDER BY source, partner, sequence_no, source_file_id) f"
        "  WINDOW w AS (PARTITION BY source, partner ORDER BY sequence_no)) s"
        " WHERE sequence_no > prev_seq + 1 ORDER BY source, partner, first_missing"
        + w.limit(limit),
        *w.args,
    )
    return [Gap(**dict(r)) for r in rows]


# The SFTP poller's reads and writes of the ledger.

async def try_lock(conn: Connection, key: str) -> bool:
    """A session lock on ``key`` (one worker per remote file), or False when held."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key))


async def unlock(conn: Connection, key: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)


async def same_content_or_sequence(pool: asyncpg.Pool, source: str, sha256: str,
                                   sequence_no: int | None) -> dict[str, tuple[str, int | None]]:
    """The source's files with this content or this sequence number: name → (sha, seq)."""
    rows = await pool.fetch(
        "SELECT name, sha256, sequence_no FROM source_files WHERE source = $1"
        " AND (sha256 = $2 OR sequence_no = $3)", source, sha256, sequence_no)
    return {row["name"]: (row["sha256"], row["sequence_no"]) for row in rows}


# Runs of missing numbers between consecutive received sequence numbers, not alarmed yet.
_NEW_GAPS = """
SELECT s.name, s.sequence_no, s.prev + 1 AS first_missing, s.sequence_no - 1 AS last_missing
FROM (SELECT name, sequence_no, lag(sequence_no) OVER (ORDER BY sequence_no) AS prev
      FROM (SELECT DISTINCT ON (sequence_no) name, sequence_no FROM source_files
            WHERE source = $1 AND sequence_no IS NOT NULL
            ORDER BY sequence_no, source_file_id) f) s
WHERE s.sequence_no > s.prev + 1 AND NOT EXISTS (
    SELECT 1 FROM source_file_alarms a WHERE a.source = $1 AND a.kind = 'gap'
    AND a.first_missing = s.prev + 1 AND a.last_missing = s.sequence_no - 1)
ORDER BY s.sequence_no
"""


async def new_gaps(pool: asyncpg.Pool, source: str) -> list[asyncpg.Record] | None:
    """The runs of missing numbers not alarmed yet; None while a file of the source is in
    progress (it would look like a gap for a moment)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"gaps:{source}")
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM source_files WHERE source = $1"
                               " AND state = 'claimed')", source):
            return None
        return list(await conn.fetch(_NEW_GAPS, source))


async def insert_alarm(conn: Connection, alarm: FileAlarm) -> bool:
    """Store ``alarm``; False for a ``not_usage`` alarm already stored for the file (a file
    kept aside is named once, not again after each restart)."""
    raised = await conn.fetchval(
        "INSERT INTO source_file_alarms (source, kind, name, sequence_no, first_missing,"
        " last_missing, detail) SELECT $1, $2, $3, $4, $5, $6, $7 WHERE $2 <> 'not_usage'"
        " OR NOT EXISTS (SELECT 1 FROM source_file_alarms WHERE source = $1 AND kind = $2"
        " AND name = $3) RETURNING alarm_id",
        alarm.source, alarm.kind, alarm.name, alarm.sequence_no, alarm.first_missing,
        alarm.last_missing, alarm.detail)
    return raised is not None


async def note_name(pool: asyncpg.Pool, source_file_id: int, sequence_no: int | None,
                    partner: str | None) -> asyncpg.Record | None:
    """Note what a file's name told (sequence, partner); its state and error."""
    return await pool.fetchrow(
        "UPDATE source_files SET sequence_no = coalesce(sequence_no, $2),"
        " partner = coalesce(partner, $3) WHERE source_file_id = $1 RETURNING state, error",
        source_file_id, sequence_no, partner)


async def alarm_rows(pool: asyncpg.Pool, *, source: str | None, limit: int
                     ) -> list[asyncpg.Record]:
    """The alarms as ``billing-oss files --alarms`` lists them, oldest first."""
    return list(await pool.fetch(
        "SELECT alarm_id, source, kind, name, sequence_no, first_missing, last_missing,"
        " detail, raised_at FROM source_file_alarms WHERE $1::text IS NULL OR source = $1"
        " ORDER BY alarm_id LIMIT $2", source, limit))


async def file_rows(pool: asyncpg.Pool, *, source: str | None, limit: int
                    ) -> list[asyncpg.Record]:
    """The files as ``billing-oss files`` lists them, oldest first."""
    return list(await pool.fetch(
        "SELECT source_file_id, source, name, sequence_no, state, count_in, count_charged,"
        " count_suspense, count_duplicates, sha256, received_at FROM source_files"
        " WHERE $1::text IS NULL OR source = $1 ORDER BY source_file_id LIMIT $2",
        source, limit))


async def error_of(pool: asyncpg.Pool, source_file_id: int) -> str | None:
    """Why the file failed, if it did."""
    error: str | None = await pool.fetchval(
        "SELECT error FROM source_files WHERE source_file_id = $1", source_file_id)
    return error
