"""SQL of the mediation pipeline: record-key claims, binary COPY of usage / charges / suspense,
partial parts, and the source positions (files, message offsets) committed with them.

Every function runs on the caller's connection inside the caller's transaction: the pipeline
commits rows and the position that produced them together, or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple

import asyncpg
import msgspec

from billing_oss.core.errors import FileBusy
from billing_oss.server.store.pool import Connection

USAGE_FIXED = ("account_id", "usage_id", "event_time", "source", "record_key", "kind")
USAGE_OPTIONAL = ("duration_s", "volume_up", "volume_down", "quantity", "unit", "calling",
                  "called", "imsi", "msisdn", "charge", "partial_seq")
USAGE_TAIL = ("attrs", "source_file_id")
CHARGE_COLUMNS = ("account_id", "event_time", "usage_id", "kind", "amount_micros", "currency",
                  "tariff_version_id", "zone", "band", "source_file_id")
SUSPENSE_COLUMNS = ("source", "record_key", "account_id", "reason", "detail", "record", "raw",
                    "source_file_id", "source_position")

_CLAIM_KEYS = """
INSERT INTO usage_keys (source, record_key, account_id, event_time)
SELECT s, k, a, coalesce(t, now()) FROM unnest($1::text[], $2::text[], $3::text[],
                                             $4::timestamptz[]) AS u(s, k, a, t)
ON CONFLICT (source, record_key) DO NOTHING
RETURNING source, record_key, usage_id"""


async def ensure_partitions(conn: Connection, months: Iterable[date]) -> None:
    """Monthly partitions of usage_records and charges for these months (idempotent)."""
    for month in sorted(set(months)):
        await conn.execute(
            "SELECT ensure_month_partition('usage_records', $1), "
            "ensure_month_partition('charges', $1)", month)


async def hold_months(conn: Connection, months: Iterable[date]) -> None:
    """Inside the batch's transaction, before it locks usage_records or charges: no fold of
    these months (migration 1550) runs until it commits, and one running is waited for."""
    await conn.execute("SELECT hold_month_for_writes(m) FROM unnest($1::date[]) m",
                       sorted(set(months)))


async def claim_keys(
    conn: Connection, sources: list[str], keys: list[str], accounts: list[str | None],
    times: list[datetime | None],
) -> dict[tuple[str, str], int]:
    """Claim record keys; return usage ids of those claimed now (absent: seen before)."""
    rows = await conn.fetch(_CLAIM_KEYS, sources, keys, accounts, times)
    return {(row[0], row[1]): row[2] for row in rows}


KEY_COLUMNS = ("source", "record_key", "account_id", "event_time", "usage_id")
# Fewer keys than this are claimed in one INSERT … ON CONFLICT; more by an optimistic COPY.
COPY_CLAIM_MIN = 500

_CLAIM_KEY_ROWS = """
INSERT INTO usage_keys (source, record_key, account_id, event_time, usage_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[])
ON CONFLICT (source, record_key) DO NOTHING
RETURNING usage_id"""


async def next_usage_ids(conn: Connection, count: int) -> list[int]:
    """Reserve ``count`` usage ids (unused ones are gaps, as a rolled-back insert leaves)."""
    if count <= 0:
        return []
    ids = await conn.fetchval(
        "SELECT array_agg(nextval('usage_id_seq')) FROM generate_series(1, $1)", count)
    return list(ids)


async def claim_key_rows(conn: Connection, rows: Sequence[tuple[Any, ...]],
                         payload: bytes | None = None) -> set[int] | None:
    """Claim record keys (``KEY_COLUMNS`` rows carrying their usage id). None: all claimed;
    else the usage ids of the rows claimed (the others' keys were taken before).

    Big batches go by COPY inside a savepoint — the common case, a file of new records,
    costs what a plain COPY does; a unique violation undoes it and the batch is claimed
    row by row with ON CONFLICT instead. A concurrent claim of the same key waits for the
    other transaction either way, and loses to it if that one commits. ``payload``: the
    rows' binary COPY encoding, when built beforehand.
    """
    if not rows:
        return None
    if len(rows) >= COPY_CLAIM_MIN:
        try:
            async with conn.transaction():
                await copy_rows(conn, "usage_keys", KEY_COLUMNS, rows, payload)
            return None
        except asyncpg.UniqueViolationError:
            pass
    columns = list(zip(*rows, strict=True))
    claimed = await conn.fetch(_CLAIM_KEY_ROWS, *columns)
    if len(claimed) == len(rows):
        return None
    return {row[0] for row in claimed}


async def copy_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]],
    payload: bytes | None = None,
) -> None:
    """COPY ``rows`` in; ``payload``, when given, is their binary encoding, sent as is."""
    if not rows:
        return
    if payload is not None:
        # A memoryview: asyncpg takes any buffer (its stubs say otherwise), but bytes for a
        # file name.
        source: Any = memoryview(payload)
        await conn.copy_to_table(table, source=source, columns=list(columns), format="binary")
    else:
        await conn.copy_records_to_table(table, records=rows, columns=list(columns))


# -- partial records ------------------------------------------------------------------------

class Part(NamedTuple):
    source: str
    group_key: str
    partial_seq: int
    is_last: bool
    record: bytes  # JSON of the UsageRecord


async def insert_parts(
    conn: Connection, parts: Sequence[Part], source_file_id: int | None, positions: list[str]
) -> set[tuple[str, str, int]]:
    """Store new parts (groups locked in a stable order); return those not seen before."""
    sources = [p.source for p in parts]
    groups = [p.group_key for p in parts]
    await lock_groups(conn, list(zip(sources, groups, strict=True)))
    rows = await conn.fetch(
        "INSERT INTO partial_records (source, group_key, partial_seq, is_last, record, "
        "source_file_id, source_position) "
        "SELECT s, g, q, l, r::jsonb, $6, p FROM unnest($1::text[], $2::text[], $3::int[], "
        "$4::bool[], $5::text[], $7::text[]) AS u(s, g, q, l, r, p) "
        "ON CONFLICT DO NOTHING RETURNING source, group_key, partial_seq",
        sources, groups, [p.partial_seq for p in parts], [p.is_last for p in parts],
        [p.record.decode() for p in parts], source_file_id, positions)
    return {(row[0], row[1], row[2]) for row in rows}


async def lock_groups(conn: Connection, groups: Sequence[tuple[str, str]]) -> None:
    """Lock partial groups for this transaction, in a stable order (no deadlock between
    batches and the sweeper)."""
    await conn.execute(
        "SELECT count(pg_advisory_xact_lock(hashtextextended(s || chr(1) || g, 0))) "
        "FROM (SELECT DISTINCT s, g FROM unnest($1::text[], $2::text[]) AS u(s, g) "
        "ORDER BY 1, 2) AS ordered", [g[0] for g in groups], [g[1] for g in groups])


async def open_parts(
    conn: Connection, groups: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[Part]]:
    rows = await conn.fetch(
        "SELECT source, group_key, partial_seq, is_last, record::text FROM partial_records "
        "WHERE state = 'open' AND (source, group_key) IN "
        "(SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY partial_seq",
        [g[0] for g in groups], [g[1] for g in groups])
    found: dict[tuple[str, str], list[Part]] = {}
    for row in rows:
        part = Part(row[0], row[1], row[2], row[3], row[4].encode())
        found.setdefault((part.source, part.group_key), []).append(part)
    return found


async def close_groups(
    conn: Connection, groups: Sequence[tuple[str, str]], state: str
) -> set[tuple[str, str]]:
    """Close the groups still open; return those this call closed."""
    rows = await conn.fetch(
        "WITH closed AS (UPDATE partial_records SET state = $3 WHERE state = 'open' "
        "AND (source, group_key) IN (SELECT * FROM unnest($1::text[], $2::text[])) "
        "RETURNING source, group_key) SELECT DISTINCT source, group_key FROM closed",
        [g[0] for g in groups], [g[1] for g in groups], state)
    return {(row[0], row[1]) for row in rows}


async def expired_groups(
    conn: Connection, groups: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Those of ``groups`` that have parts the sweeper expired."""
    rows = await conn.fetch(
        "SELECT DISTINCT source, group_key FROM partial_records WHERE state = 'expired' "
        "AND (source, group_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [g[0] for g in groups], [g[1] for g in groups])
    return {(row[0], row[1]) for row in rows}


async def reopen_groups(conn: Connection, groups: Sequence[tuple[str, str]]) -> None:
    """Expired parts back to open: a late part completes their group after all."""
    await conn.execute(
        "UPDATE partial_records SET state = 'open' WHERE state = 'expired' "
        "AND (source, group_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [g[0] for g in groups], [g[1] for g in groups])


async def expire_parts(conn: Connection, parts: Sequence[tuple[str, str, int]]) -> None:
    """Mark these parts expired (a late part put in suspense: it must not start a new group
    that would expire again under the same merged key)."""
    await conn.execute(
        "UPDATE partial_records SET state = 'expired' WHERE state = 'open' "
        "AND (source, group_key, partial_seq) IN "
        "(SELECT * FROM unnest($1::text[], $2::text[], $3::int[]))",
        [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts])


async def stale_groups(conn: Connection, older_than_s: float, *,
                       after: tuple[str, str] = ("", ""), limit: int = 500,
                       ) -> list[tuple[str, str]]:
    """Open groups with no new part for ``older_than_s``, in key order after ``after``:
    at most ``limit``, so that a sweep locks a bounded number of groups per transaction."""
    rows = await conn.fetch(
        "SELECT source, group_key FROM partial_records WHERE state = 'open' "
        "AND (source, group_key) > ($2, $3) GROUP BY source, group_key "
        "HAVING max(received_at) < now() - make_interval(secs => $1) ORDER BY 1, 2 LIMIT $4",
        older_than_s, after[0], after[1], limit)
    return [(row[0], row[1]) for row in rows]


async def pending_parts(conn: Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM partial_records WHERE state = 'open'"))


# -- source positions -----------------------------------------------------------------------

class FileClaim(msgspec.Struct, kw_only=True):
    source_file_id: int
    state: str
    committed_records: int
    counts: dict[str, int]
    totals: dict[str, int]
    sequence_no: int | None
    error: str | None


_COUNT_COLUMNS = ("in", "charged", "suspense", "duplicates", "filtered", "pending")


async def claim_file(
    conn: Connection, *, source: str, name: str, fmt: str, sha256: str, size: int,
    sequence_no: int | None, declared_records: int | None = None,
) -> FileClaim:
    """Register a file (or find it registered) by content; its row says where to resume."""
    await conn.execute(
        "INSERT INTO source_files (source, name, format, sequence_no, size_bytes, sha256,"
        " declared_records) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (source, sha256) DO NOTHING",
        source, name, fmt, sequence_no, size, sha256, declared_records)
    file_id = await conn.fetchval(
        "SELECT source_file_id FROM source_files WHERE source = $1 AND sha256 = $2",
        source, sha256)
    return await read_file(conn, file_id)


async def read_file(conn: Connection, source_file_id: int) -> FileClaim:
    row = await conn.fetchrow(
        "SELECT source_file_id, state, committed_records, sequence_no, error, totals::text, "
        + ", ".join(f"count_{c}" for c in _COUNT_COLUMNS)
        + " FROM source_files WHERE source_file_id = $1", source_file_id)
    assert row is not None
    totals = {cur: int(v) for cur, v in msgspec.json.decode(row["totals"]).items()}
    return FileClaim(
        source_file_id=row["source_file_id"], state=row["state"],
        committed_records=row["committed_records"], sequence_no=row["sequence_no"],
        error=row["error"], totals=totals,
        counts={c: row[f"count_{c}"] for c in _COUNT_COLUMNS})


class CheckpointMoved(FileBusy):
    """The file's checkpoint is not where this writer left it: another worker took the file
    over (this writer's lock went with a dropped connection). This writer stops; the file is
    the other worker's, as with a file found locked."""


async def checkpoint_file(
    conn: Connection, source_file_id: int, *, after: int, committed_records: int,
    counts: dict[str, int], totals: dict[str, int], state: str = "claimed",
    error: str | None = None,
) -> None:
    """Move the file's progress from ``after`` items to ``committed_records`` (cumulative
    counts); ``state`` done/error completes it. Raises ``CheckpointMoved`` (and writes
    nothing) when the stored checkpoint is no longer ``after``."""
    status = await conn.execute(
        "UPDATE source_files SET committed_records = $2, totals = $3::jsonb, state = $4, "
        "error = $5, completed_at = CASE WHEN $4 = 'claimed' THEN NULL ELSE now() END, "
        + ", ".join(f"count_{c} = ${i}" for i, c in enumerate(_COUNT_COLUMNS, start=6))
        + f" WHERE source_file_id = $1 AND committed_records = ${6 + len(_COUNT_COLUMNS)}"
        " AND state = 'claimed'",
        source_file_id, committed_records,
        msgspec.json.encode({cur: str(v) for cur, v in totals.items()}).decode(), state, error,
        *(counts.get(c, 0) for c in _COUNT_COLUMNS), after)
    if status != "UPDATE 1":
        raise CheckpointMoved(f"source file {source_file_id}: checkpoint moved from {after}")


async def try_lock_file(conn: Connection, source_file_id: int) -> bool:
    """Session lock: one worker at a time processes a file (released with the connection)."""
    return bool(await conn.fetchval(
        "SELECT pg_try_advisory_lock(hashtextextended('source_file', $1))", source_file_id))


async def unlock_file(conn: Connection, source_file_id: int) -> None:
    await conn.execute(
        "SELECT pg_advisory_unlock(hashtextextended('source_file', $1))", source_file_id)


async def claim_offsets(
    conn: Connection, source: list[str], positions: list[str]
) -> dict[tuple[str, str], bytes | None]:
    """Claim message positions. Returns the already-committed ones with their stored result.

    A concurrent claim of the same position waits on the row lock until the first commits,
    then sees it as committed.
    """
    rows = await conn.fetch(
        "INSERT INTO source_offsets (source, position) "
        "SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING "
        "RETURNING source, position", source, positions)
    new = {(row[0], row[1]) for row in rows}
    seen = [(s, p) for s, p in zip(source, positions, strict=True) if (s, p) not in new]
    if not seen:
        return {}
    stored = await conn.fetch(
        "SELECT source, position, result::text FROM source_offsets WHERE (source, position) IN "
        "(SELECT * FROM unnest($1::text[], $2::text[]))",
        [s for s, _ in seen], [p for _, p in seen])
    return {(row[0], row[1]): row[2].encode() if row[2] else None for row in stored}


async def store_offset_results(
    conn: Connection, sources: list[str], positions: list[str], results: list[bytes]
) -> None:
    await conn.execute(
        "UPDATE source_offsets o SET result = u.r::jsonb FROM unnest($1::text[], $2::text[], "
        "$3::text[]) AS u(s, p, r) WHERE o.source = u.s AND o.position = u.p",
        sources, positions, [r.decode() for r in results])


async def bind_idempotency_key(pool: asyncpg.Pool, source: str, key: str, digest: str) -> str:
    """The body digest an HTTP ``Idempotency-Key`` is bound to: ``digest`` if the key is new."""
    bound: str = await pool.fetchval(
        "INSERT INTO http_idempotency_keys (source, idempotency_key, body_sha256)"
        " VALUES ($1, $2, $3) ON CONFLICT (source, idempotency_key)"
        " DO UPDATE SET idempotency_key = EXCLUDED.idempotency_key RETURNING body_sha256",
        source, key, digest)
    return bound
