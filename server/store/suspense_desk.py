"""The operator's view of suspense: list, inspect (raw bytes and reason) and discard.

Rows are never deleted: a discard sets ``state = 'discarded'`` with the operator's reason in
``resolution``, audited. Retrying is the pipeline's job (``server.pipeline.suspense.retry``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

import asyncpg
import msgspec

from server.errors import Conflict, NotFound
from server.store import audit
from server.store.filters import Where
from server.store.pool import Connection

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


_COLUMNS = ("suspense_id, source, record_key, account_id, reason, detail, state, resolution,"
            " source_file_id, source_position, created_at, resolved_at")


async def find(pool: asyncpg.Pool, *, state: str | None, reason: str | None,
               source: str | None, account_id: str | None, after: int | None,
               limit: int) -> list[SuspenseItem]:
    w = (Where().add("state = {}", state).add("reason = {}", reason).add("source = {}", source)
         .add("account_id = {}", account_id).add("suspense_id > {}", after))
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM suspense" + w.sql()
                            + " ORDER BY suspense_id" + w.limit(limit + 1), *w.args)
    return [SuspenseItem(**dict(r)) for r in rows]


async def get(conn: Connection | asyncpg.Pool, suspense_id: int) -> SuspenseDetail:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS}, record::text AS record, raw FROM suspense WHERE suspense_id = $1",
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
        state = await conn.fetchval(
            "SELECT state FROM suspense WHERE suspense_id = $1 FOR UPDATE", suspense_id)
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
