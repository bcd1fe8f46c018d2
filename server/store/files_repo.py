"""The source file ledger as operators read it: per-file counts, and sequence gaps.

A gap is a run of sequence numbers missing between two files received from one source
(and partner): the files in between were never delivered, or were lost on the way.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import msgspec

from billing_oss.core.errors import NotFound
from billing_oss.server.store.filters import Where


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
