"""The audit log: who changed what, when, with the before and after, as a sha256 hash chain.

``record`` is called inside the transaction that makes the change, so the change and its
audit row commit together or not at all. A writer only inserts its row (``seq`` from a
sequence): concurrent writers never wait for each other. ``chain_pending`` — run by the
server every second, and before every ``verify``, checkpoint and trail read — gives the
committed rows, in ``seq`` order, their place in the chain (``pos``, gapless) and their
``prev_hash``/``hash``, under the one ``audit_head`` lock, which only chainers take.

``verify`` recomputes every hash and detects a changed row (its hash no longer matches), a
deleted row (a gap in ``pos`` or a broken ``prev_hash`` link) and a deleted tail (the head
no longer matches the last row); a deleted tail with a rewritten head needs a checkpoint
(``server.assurance.checkpoints``). Until chained (about a second), a row is protected by
the append-only trigger alone.

The hash covers a canonical JSON encoding (sorted keys, no spaces, UTF-8) of
``[prev_hash, actor, action, entity, before, after, at]`` with ``at`` in RFC 3339 UTC to the
microsecond. ``before``/``after`` are JSON values (strings, integers, booleans, null, lists,
objects; never floats) so they survive the jsonb round trip unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
from typing import Any

import asyncpg
import msgspec

from billing_oss.server.store.pool import Connection

log = logging.getLogger(__name__)
GENESIS = "0" * 64
Change = tuple[str, Any, Any]  # (entity, before, after): one entry of ``record_many``
_BATCH = 1000


class Problem(msgspec.Struct, frozen=True):
    seq: int  # the row's seq; for rows missing, their chain position (pos)
    reason: str


class VerifyResult(msgspec.Struct, frozen=True):
    rows: int
    ok: bool
    problems: list[Problem]


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: dt.datetime
    actor: str
    action: str
    entity: str
    before: Any
    after: Any
    hash: str


async def record(conn: Connection, actor: str, action: str, entity: str,
                 before: Any, after: Any) -> int:
    """Append one entry; call inside the transaction of the change. Returns its ``seq``."""
    if not conn.is_in_transaction():
        raise RuntimeError("audit.record must run inside the transaction of the change")
    seq: int = await conn.fetchval(
        "INSERT INTO audit_log (at, actor, action, entity, before, after)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb) RETURNING seq",
        dt.datetime.now(dt.UTC), actor, action, entity, _json(_plain(before)),
        _json(_plain(after)))
    return seq


async def record_many(conn: Connection, actor: str, action: str,
                      changes: list[Change]) -> None:
    """Append one entry per ``(entity, before, after)`` in one statement; call inside the
    transaction of the change. Bulk changes (a bill run finalising thousands of drafts) keep
    one entry per entity without a round trip per entry."""
    if not changes:
        return
    if not conn.is_in_transaction():
        raise RuntimeError("audit.record_many must run inside the transaction of the change")
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, entity, before, after)"
        " SELECT $1, $2, $3, e, b, a FROM unnest($4::text[], $5::jsonb[], $6::jsonb[])"
        " WITH ORDINALITY AS u(e, b, a, n) ORDER BY n",
        dt.datetime.now(dt.UTC), actor, action, [entity for entity, _, _ in changes],
        [_json(_plain(before)) for _, before, _ in changes],
        [_json(_plain(after)) for _, _, after in changes])


async def record_rows(conn: Connection, actor: str, action: str, rows_sql: str,
                      *args: object) -> None:
    """``record_many`` for changes a query already holds: one entry per row of ``rows_sql``
    (columns ``entity`` text, ``before`` and ``after`` jsonb, in its order; its parameters
    ``args`` from $1), written by the database without a round trip of the rows. Call it
    inside the transaction of the change."""
    if not conn.is_in_transaction():
        raise RuntimeError("audit.record_rows must run inside the transaction of the change")
    n = len(args)
    await conn.execute(
        f"INSERT INTO audit_log (at, actor, action, entity, before, after)"
        f" SELECT ${n + 1}, ${n + 2}, ${n + 3}, r.entity, r.before, r.after"
        f" FROM ({rows_sql}) r", *args, dt.datetime.now(dt.UTC), actor, action)


async def chain_pending(pool: asyncpg.Pool, *, batch: int = 10_000) -> int:
    """Chain every committed, unchained row (oldest ``seq`` first); how many were chained."""
    async with pool.acquire() as conn:
        return await chain_pending_on(conn, batch=batch)


async def chain_pending_on(conn: Connection, *, batch: int = 10_000) -> int:
    """``chain_pending`` on a connection outside any transaction (one per batch)."""
    total = 0
    while True:
        async with conn.transaction():
            done = await _chain_batch(conn, batch)
        total += done
        if done < batch:
            return total


async def run_chainer(pool: asyncpg.Pool, stop: asyncio.Event, every_s: float = 1.0) -> None:
    """Chain pending rows every ``every_s`` until ``stop``; a failure is logged, not fatal."""
    while not stop.is_set():
        try:
            await chain_pending(pool)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("audit chaining failed", extra={"fields": {"error": str(exc)}})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def _chain_batch(conn: Connection, batch: int) -> int:
    head = await conn.fetchrow("SELECT seq, hash FROM audit_head FOR UPDATE")
    assert head is not None, "migration 0200 creates the audit head row"
    rows = await conn.fetch(
        "SELECT seq, at, actor, action, entity, before::text, after::text FROM audit_log"
        " WHERE pos IS NULL ORDER BY seq LIMIT $1", batch)
    if not rows:
        return 0
    pos, prev_hash = head["seq"], head["hash"]
    columns: list[list[Any]] = [[], [], [], []]
    for row in rows:
        digest = chain_hash(prev_hash, row["actor"], row["action"], row["entity"],
                            _load(row["before"]), _load(row["after"]), row["at"])
        pos += 1
        for column, value in zip(columns, (row["seq"], pos, prev_hash, digest), strict=True):
            column.append(value)
        prev_hash = digest
    await conn.execute(
        "UPDATE audit_log l SET pos = u.p, prev_hash = u.ph, hash = u.h"
        " FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS u(s, p, ph, h)"
        " WHERE l.seq = u.s", *columns)
    await conn.execute("UPDATE audit_head SET seq = $1, hash = $2", pos, prev_hash)
    return len(rows)


def chain_hash(prev_hash: str, actor: str, action: str, entity: str,
               before: Any, after: Any, at: dt.datetime) -> str:
    canonical = json.dumps(
        [prev_hash, actor, action, entity, before, after, _rfc3339(at)],
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def verify(pool: asyncpg.Pool) -> VerifyResult:
    """Chain what is pending, then walk the whole chain in order and report every
    inconsistency found."""
    await chain_pending(pool)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        return await verify_on(conn)


async def verify_on(conn: Connection) -> VerifyResult:
    """``verify`` (without chaining first) on a connection already in a (repeatable-read)
    transaction."""
    problems: list[Problem] = []
    expected_pos, prev_hash, rows = 1, GENESIS, 0
    head = await conn.fetchrow("SELECT seq, hash FROM audit_head")
    assert head is not None
    async for row in conn.cursor(
        "SELECT seq, pos, at, actor, action, entity, before::text, after::text, prev_hash,"
        " hash FROM audit_log WHERE pos IS NOT NULL ORDER BY pos", prefetch=_BATCH,
    ):
        rows += 1
        pos, seq = row["pos"], row["seq"]
        if pos != expected_pos:
            problems.append(Problem(expected_pos, f"rows {expected_pos}..{pos - 1} missing"))
        if row["prev_hash"] != prev_hash:
            problems.append(Problem(seq, "prev_hash does not link to the previous row"))
        digest = chain_hash(
            row["prev_hash"], row["actor"], row["action"], row["entity"],
            _load(row["before"]), _load(row["after"]), row["at"],
        )
        if digest != row["hash"]:
            problems.append(Problem(seq, "row content does not match its hash"))
        expected_pos, prev_hash = pos + 1, row["hash"]
    if head["seq"] != expected_pos - 1 or head["hash"] != prev_hash:
        problems.append(Problem(
            head["seq"], f"chain head is at row {head['seq']} but the log ends at row "
            f"{expected_pos - 1}: rows at the end were deleted or the head was altered",
        ))
    return VerifyResult(rows=rows, ok=not problems, problems=problems)


async def entries(pool: asyncpg.Pool, entity: str) -> list[Entry]:
    """The audit trail of one entity (``account:A1``), oldest first."""
    await chain_pending(pool)
    rows = await pool.fetch(
        "SELECT seq, at, actor, action, entity, before::text, after::text, hash"
        " FROM audit_log WHERE entity = $1 ORDER BY seq", entity,
    )
    return [Entry(seq=r["seq"], at=r["at"], actor=r["actor"], action=r["action"],
                  entity=r["entity"], before=_load(r["before"]), after=_load(r["after"]),
                  hash=r["hash"]) for r in rows]


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _rfc3339(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def chained_head(conn: Connection) -> asyncpg.Record | None:
    """The last chained row's position (``seq``) and hash, if any row is chained."""
    return await conn.fetchrow(
        "SELECT pos AS seq, hash FROM audit_log WHERE pos IS NOT NULL ORDER BY pos DESC LIMIT 1")


async def chained_row(conn: Connection, pos: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT hash FROM audit_log WHERE pos = $1", pos)


async def last_pos(conn: Connection) -> int | None:
    last: int | None = await conn.fetchval("SELECT max(pos) FROM audit_log")
    return last


async def row_count(conn: Connection) -> int:
    rows: int = await conn.fetchval("SELECT count(*) FROM audit_log")
    return rows
