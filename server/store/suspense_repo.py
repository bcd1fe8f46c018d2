"""Suspense rows: the operator's view (list, inspect with raw bytes and reason, discard) and
what the pipeline's retry needs (claim, reclaim a key, resolve).

Rows are never deleted. A discard sets ``state = 'discarded'`` with the operator's reason in
``resolution``, audited. A retry that charges a record marks its row ``retried`` with the usage
id it became; one that fails again keeps it open with the new reason. Retrying itself is the
pipeline's job (``server.pipeline.suspense.retry``).

On Citus suspense is distributed by account (migration 1473): a record whose account is
unknown is stored under the reserved account ``''`` (``citus.NO_ACCOUNT``; read back as
None here), and rows are locked through ``lock_suspense`` and ``claim_suspense``, which
name each row's account.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from billing_oss.core.errors import Conflict, NotFound
from billing_oss.server.store import audit
from billing_oss.server.store.filters import Where
from billing_oss.server.store.pool import Connection

State = Literal["open", "retried", "discarded"]


class SuspenseItem(msgspec.Struct, frozen=True, kw_only=True):
    suspense_id: int
    source: str
    record_key: str | None
    account_id: str | None
    reason: str
    detail: str
    state: State
    resolution: str | None
    source_file_id: int | None
    source_position: str | None
    created_at: dt.datetime
    resolved_at: dt.datetime | None


class SuspenseDetail(SuspenseItem, frozen=True, kw_only=True):
    record: Any
    raw: bytes | None  # base64 in JSON


_ITEM_COLUMNS = ("suspense_id, source, record_key, nullif(account_id, '') AS account_id, reason,"
                 " detail, state, resolution, source_file_id, source_position, created_at,"
                 " resolved_at")


async def find(pool: asyncpg.Pool, *, state: str | None, reason: str | None,
               source: str | None, account_id: str | None, after: int | None,
               limit: int) -> list[SuspenseItem]:
    w = (Where().add("state = {}", state).add("reason = {}", reason).add("source = {}", source)
         .add("account_id = {}", account_id).add("suspense_id > {}", after))
    rows = await pool.fetch(f"SELECT {_ITEM_COLUMNS} FROM suspense" + w.sql()
                            + " ORDER BY suspense_id" + w.limit(limit + 1), *w.args)
    return [SuspenseItem(**dict(r)) for r in rows]


async def get(conn: Connection | asyncpg.Pool, suspense_id: int) -> SuspenseDetail:
    row = await conn.fetchrow(
        f"SELECT {_ITEM_COLUMNS}, record::text AS record, raw FROM suspense WHERE suspense_id = $1",
        suspense_id,
    )
    if row is None:
        raise NotFound(f"no suspense record {suspense_id}")
    values = dict(row)
    values["record"] = json.loads(values["record"]) if values["record"] is not None else None
    return SuspenseDetail(**values)


async def discard(pool: asyncpg.Pool, actor: str, suspense_id: int,
                  reason: str) -> SuspenseDetail:
    async with pool.acquire() as conn, conn.transaction():
        await lock(conn, [suspense_id])
        state = await conn.fetchval(
            "SELECT state FROM suspense WHERE suspense_id = $1", suspense_id)
        if state is None:
            raise NotFound(f"no suspense record {suspense_id}")
        if state != "open":
            raise Conflict(f"suspense record {suspense_id} is {state}, not open")
        before = await get(conn, suspense_id)
        await conn.execute(
            "UPDATE suspense SET state = 'discarded', resolution = $2, resolved_at = now()"
            " WHERE suspense_id = $1", suspense_id, reason,
        )
        after = await get(conn, suspense_id)
        await audit.record(conn, actor, "suspense.discard", f"suspense:{suspense_id}",
                           _summary(before), _summary(after))
    return after


async def correct(pool: asyncpg.Pool, actor: str, suspense_id: int, changes: dict[str, Any],
                  reason: str, check: Callable[[dict[str, Any]], None]) -> SuspenseDetail:
    """Set fields of an open record's decoded form (None removes one), ``check`` seeing the
    corrected record first; audited with the fields before and after, and why. The raw
    bytes stay as received: the correction is the operator's, the source's are evidence."""
    async with pool.acquire() as conn, conn.transaction():
        await lock(conn, [suspense_id])
        row = await conn.fetchrow("SELECT state, record::text AS record FROM suspense"
                                  " WHERE suspense_id = $1", suspense_id)
        if row is None:
            raise NotFound(f"no suspense record {suspense_id}")
        if row["state"] != "open":
            raise Conflict(f"suspense record {suspense_id} is {row['state']}, not open")
        if row["record"] is None:
            raise Conflict(f"suspense record {suspense_id} has no decoded record to correct")
        record = json.loads(row["record"])
        corrected = {k: v for k, v in {**record, **changes}.items() if v is not None}
        check(corrected)
        await conn.execute("UPDATE suspense SET record = $2::jsonb WHERE suspense_id = $1",
                           suspense_id, json.dumps(corrected))
        after = await get(conn, suspense_id)
        await audit.record(conn, actor, "suspense.correct", f"suspense:{suspense_id}",
                           {"record": {k: record.get(k) for k in sorted(changes)}},
                           {"record": {k: corrected.get(k) for k in sorted(changes)},
                            "reason": reason})
    return after


async def lock(conn: Connection, ids: list[int]) -> None:
    """Lock these rows for the transaction, in id order (each by its account on Citus)."""
    await conn.execute("SELECT count(*) FROM lock_suspense($1::bigint[])", ids)


def _summary(item: SuspenseDetail) -> dict[str, Any]:
    """What the audit keeps of a suspense row: its state, not its (possibly large) payload."""
    return {"state": item.state, "reason": item.reason, "resolution": item.resolution,
            "source": item.source, "record_key": item.record_key}


async def require_open(pool: asyncpg.Pool, suspense_id: int) -> SuspenseDetail:
    item = await get(pool, suspense_id)
    if item.state != "open":
        raise Conflict(f"suspense record {suspense_id} is {item.state}, not open")
    return item


async def record_retry(pool: asyncpg.Pool, actor: str, before: SuspenseDetail,
                       after: SuspenseDetail, outcome: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await audit.record(conn, actor, f"suspense.retry.{outcome}",
                           f"suspense:{before.suspense_id}", _summary(before), _summary(after))


class SuspenseRow(msgspec.Struct, kw_only=True):
    suspense_id: int
    source: str
    record_key: str | None
    account_id: str | None
    reason: str
    detail: str
    record: str | None  # JSON of the usage record, when one was decoded
    source_file_id: int | None
    source_position: str | None
    state: str
    resolution: str | None
    created_at: datetime


_ROW_COLUMNS = ("suspense_id, source, record_key, nullif(account_id, '') AS account_id, reason,"
                " detail, record::text, source_file_id, source_position, state, resolution,"
                " created_at")


def _rows(rows: list[object]) -> list[SuspenseRow]:
    return [SuspenseRow(**dict(row)) for row in rows]  # type: ignore[call-overload]


async def list_rows(
    conn: Connection, *, state: str | None = "open", reason: str | None = None,
    source: str | None = None, after: int = 0, limit: int = 100,
) -> list[SuspenseRow]:
    """Rows by ascending id after ``after`` (cursor pagination)."""
    rows = await conn.fetch(
        f"SELECT {_ROW_COLUMNS} FROM suspense WHERE suspense_id > $1 "
        "AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR reason = $3) "
        "AND ($4::text IS NULL OR source = $4) ORDER BY suspense_id LIMIT $5",
        after, state, reason, source, limit)
    return _rows(list(rows))


async def claim_for_retry(
    conn: Connection, *, ids: list[int] | None, reason: str | None, limit: int
) -> list[SuspenseRow]:
    """Open rows to retry, locked for this transaction (other workers skip them)."""
    claimed = [r[0] for r in await conn.fetch(
        "SELECT * FROM claim_suspense($1::bigint[], $2::text, $3)", ids, reason, limit)]
    rows = await conn.fetch(
        f"SELECT {_ROW_COLUMNS} FROM suspense WHERE suspense_id = ANY($1::bigint[])"
        " AND state = 'open' ORDER BY suspense_id", claimed)
    return _rows(list(rows))


async def reclaim_key(
    conn: Connection, source: str, record_key: str, account_id: str, event_time: datetime
) -> int | None:
    """The usage id reserved by the suspended record's key (claimed now if it never was),
    locked for this transaction; None if a usage row already holds the key.

    The lock makes two open rows of one key (e.g. a partial group split by its timeout)
    retried at once charge once: the second waits here, then finds the key charged.
    """
    await conn.execute(
        "INSERT INTO usage_keys (source, record_key, account_id, event_time) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (source, record_key) DO NOTHING",
        source, record_key, account_id, event_time)
    usage_id = await conn.fetchval(
        "SELECT usage_id FROM usage_keys WHERE source = $1 AND record_key = $2 FOR UPDATE",
        source, record_key)
    if await key_is_charged(conn, source, record_key):  # a fresh snapshot, after the lock
        return None
    await conn.execute(
        "UPDATE usage_keys SET account_id = $3, event_time = $4 "
        "WHERE source = $1 AND record_key = $2", source, record_key, account_id, event_time)
    return int(usage_id)


async def key_is_charged(conn: Connection, source: str, record_key: str) -> bool:
    """Whether a usage row exists for this key (the key was reused, e.g. by a later retry)."""
    return await _usage_of_key(conn, source, record_key) is not None


async def _usage_of_key(conn: Connection, source: str, record_key: str) -> int | None:
    """The usage row holding this key, if any. The key first, then its usage: on Citus the
    keys are distributed by record key and usage by account, so each is a routed read."""
    key = await conn.fetchrow(
        "SELECT account_id, event_time, usage_id FROM usage_keys"
        " WHERE source = $1 AND record_key = $2", source, record_key)
    if key is None or key["account_id"] is None:
        return None
    found: int | None = await conn.fetchval(
        "SELECT usage_id FROM usage_records WHERE account_id = $1 AND event_time = $2"
        " AND usage_id = $3", key["account_id"], key["event_time"], key["usage_id"])
    return found


async def lock_open_by_key(
    conn: Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[int]]:
    """Ids of the open rows holding these (source, record key), locked for this transaction
    (a retry skips them; one under way is waited for, and its row is then no longer open)."""
    holding = [r[0] for r in await conn.fetch(
        "SELECT suspense_id FROM suspense WHERE state = 'open' "
        "AND (source, record_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [k[0] for k in keys], [k[1] for k in keys])]
    await lock(conn, holding)
    rows = await conn.fetch(  # still open once locked
        "SELECT suspense_id, source, record_key FROM suspense WHERE state = 'open' "
        "AND suspense_id = ANY($1::bigint[]) ORDER BY suspense_id", holding)
    found: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        found.setdefault((row[1], row[2]), []).append(row[0])
    return found


async def how_closed(conn: Connection, source: str, record_key: str) -> str:
    """What became of a key's suspended record: the usage it was charged as, else the last
    resolution of its rows."""
    usage_id = await _usage_of_key(conn, source, record_key)
    if usage_id is not None:
        return f"charged as usage {usage_id}"
    row = await conn.fetchrow(
        "SELECT state, resolution FROM suspense WHERE source = $1 AND record_key = $2 "
        "ORDER BY suspense_id DESC LIMIT 1", source, record_key)
    if row is None:
        return "closed"
    return f"{row[0]}: {row[1]}" if row[1] else str(row[0])


async def resolve(conn: Connection, suspense_id: int, resolution: str) -> None:
    await conn.execute(
        "UPDATE suspense SET state = 'retried', resolution = $2, resolved_at = now() "
        "WHERE suspense_id = $1", suspense_id, resolution)


async def still_failing(conn: Connection, suspense_id: int, reason: str, detail: str) -> None:
    await conn.execute(
        "UPDATE suspense SET reason = $2, detail = $3 WHERE suspense_id = $1",
        suspense_id, reason, detail)


async def counts_by_reason(conn: Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT reason, count(*) FROM suspense WHERE state = 'open' GROUP BY reason")
    return {row[0]: row[1] for row in rows}


async def open_against_threshold(conn: Connection, threshold: int) -> list[asyncpg.Record]:
    """Per source: open suspense and whether it was marked over, for the sources over
    ``threshold`` or marked; locks the marks until the transaction ends (one checker)."""
    await conn.execute("LOCK TABLE suspense_thresholds IN SHARE ROW EXCLUSIVE MODE")
    return list(await conn.fetch(
        "SELECT source, c.n, coalesce(t.over, false) AS was_over"
        " FROM (SELECT source, count(*) AS n FROM suspense WHERE state = 'open'"
        "       GROUP BY source) c"
        " FULL JOIN suspense_thresholds t USING (source)"
        " WHERE c.n > $1 OR t.over", threshold))


async def mark_threshold(conn: Connection, source: str, over: bool, open_records: int,
                         threshold: int) -> None:
    await conn.execute(
        "INSERT INTO suspense_thresholds (source, over, open_records, threshold)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (source) DO UPDATE SET over = $2,"
        " open_records = $3, threshold = $4, changed_at = now()",
        source, over, open_records, threshold)


async def open_retryable_ids(db: asyncpg.Pool | Connection, ids: list[int] | None,
                             reason: str | None, limit: int) -> list[int]:
    """The open records a retry would take (those holding a record), in order."""
    rows = await db.fetch(
        "SELECT suspense_id FROM suspense WHERE state = 'open' AND record IS NOT NULL "
        "AND ($1::bigint[] IS NULL OR suspense_id = ANY($1)) "
        "AND ($2::text IS NULL OR reason = $2) ORDER BY suspense_id LIMIT $3",
        ids, reason, limit)
    return [r["suspense_id"] for r in rows]
