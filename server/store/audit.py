"""The audit log: who changed what, when, with the before and after, as a sha256 hash chain.

``record`` is called inside the transaction that makes the change, so the change and its
audit row commit together or not at all. Appends lock the one ``audit_head`` row, which
serialises writers: the chain never forks. ``verify`` recomputes every hash and detects a
changed row (its hash no longer matches), a deleted row (a gap in ``seq`` or a broken
``prev_hash`` link) and a deleted tail (the head no longer matches the last row).

The hash covers a canonical JSON encoding (sorted keys, no spaces, UTF-8) of
``[prev_hash, actor, action, entity, before, after, at]`` with ``at`` in RFC 3339 UTC to the
microsecond. ``before``/``after`` are JSON values (strings, integers, booleans, null, lists,
objects; never floats) so they survive the jsonb round trip unchanged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import asyncpg
import msgspec

from billing_oss.server.store.pool import Connection

GENESIS = "0" * 64
Change = tuple[str, Any, Any]  # (entity, before, after): one entry of ``record_many``
_BATCH = 1000


class Problem(msgspec.Struct, frozen=True):
    seq: int
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
    head = await conn.fetchrow("SELECT seq, hash FROM audit_head FOR UPDATE")
    assert head is not None, "migration 0200 creates the audit head row"
    seq, prev_hash = head["seq"] + 1, head["hash"]
    at = dt.datetime.now(dt.UTC)
    before_v, after_v = _plain(before), _plain(after)
    digest = chain_hash(prev_hash, actor, action, entity, before_v, after_v, at)
    await conn.execute(
        "INSERT INTO audit_log (seq, at, actor, action, entity, before, after, prev_hash, hash)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9)",
        seq, at, actor, action, entity, _json(before_v), _json(after_v), prev_hash, digest,
    )
    await conn.execute("UPDATE audit_head SET seq = $1, hash = $2", seq, digest)
    return int(seq)


async def record_many(conn: Connection, actor: str, action: str,
                      changes: list[Change]) -> None:
    """Append one entry per ``(entity, before, after)`` in one statement; call inside the
    transaction of the change. Bulk changes (a bill run finalising thousands of drafts) keep
    one entry per entity without a round trip per entry."""
    if not changes:
        return
    if not conn.is_in_transaction():
        raise RuntimeError("audit.record_many must run inside the transaction of the change")
    head = await conn.fetchrow("SELECT seq, hash FROM audit_head FOR UPDATE")
    assert head is not None, "migration 0200 creates the audit head row"
    seq, prev_hash = head["seq"], head["hash"]
    at = dt.datetime.now(dt.UTC)
    columns: list[list[Any]] = [[] for _ in range(6)]
    for entity, before, after in changes:
        before_v, after_v = _plain(before), _plain(after)
        digest = chain_hash(prev_hash, actor, action, entity, before_v, after_v, at)
        seq += 1
        for column, value in zip(columns, (seq, entity, _json(before_v), _json(after_v),
                                           prev_hash, digest), strict=True):
            column.append(value)
        prev_hash = digest
    await conn.execute(
        "INSERT INTO audit_log (seq, at, actor, action, entity, before, after, prev_hash, hash)"
        " SELECT s, $1, $2, $3, e, b, a, p, h FROM unnest($4::bigint[], $5::text[],"
        " $6::jsonb[], $7::jsonb[], $8::text[], $9::text[]) AS u(s, e, b, a, p, h)",
        at, actor, action, *columns,
    )
    await conn.execute("UPDATE audit_head SET seq = $1, hash = $2", seq, prev_hash)


def chain_hash(prev_hash: str, actor: str, action: str, entity: str,
               before: Any, after: Any, at: dt.datetime) -> str:
    canonical = json.dumps(
        [prev_hash, actor, action, entity, before, after, _rfc3339(at)],
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def verify(pool: asyncpg.Pool) -> VerifyResult:
    """Walk the whole chain in ``seq`` order and report every inconsistency found."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        return await verify_on(conn)


async def verify_on(conn: Connection) -> VerifyResult:
    """``verify`` on a connection already in a (repeatable-read) transaction."""
    problems: list[Problem] = []
    expected_seq, prev_hash, rows = 1, GENESIS, 0
    head = await conn.fetchrow("SELECT seq, hash FROM audit_head")
    assert head is not None
    async for row in conn.cursor(
        "SELECT seq, at, actor, action, entity, before::text, after::text, prev_hash, hash"
        " FROM audit_log ORDER BY seq", prefetch=_BATCH,
    ):
        rows += 1
        seq = row["seq"]
        if seq != expected_seq:
            problems.append(Problem(expected_seq, f"rows {expected_seq}..{seq - 1} missing"))
        if row["prev_hash"] != prev_hash:
            problems.append(Problem(seq, "prev_hash does not link to the previous row"))
        digest = chain_hash(
            row["prev_hash"], row["actor"], row["action"], row["entity"],
            _load(row["before"]), _load(row["after"]), row["at"],
        )
        if digest != row["hash"]:
            problems.append(Problem(seq, "row content does not match its hash"))
        expected_seq, prev_hash = seq + 1, row["hash"]
    if head["seq"] != expected_seq - 1 or head["hash"] != prev_hash:
        problems.append(Problem(
            head["seq"], f"chain head is at row {head['seq']} but the log ends at row "
            f"{expected_seq - 1}: rows at the end were deleted or the head was altered",
        ))
    return VerifyResult(rows=rows, ok=not problems, problems=problems)


async def entries(pool: asyncpg.Pool, entity: str) -> list[Entry]:
    """The audit trail of one entity (``account:A1``), oldest first."""
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
