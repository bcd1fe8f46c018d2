"""The ``simulations`` table (migration 1100): the only rows a simulation writes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg
import msgspec

from billing_oss.core.errors import NotFound
from billing_oss.server.store.pool import Connection


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    simulation_id: int
    state: str
    requested_by: str
    request: dict[str, Any]
    result: dict[str, Any] | None
    run: dict[str, Any] | None
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    progress: dict[str, Any] | None  # engine.Progress as ``progress_document`` writes it


async def create(conn: Connection | asyncpg.Pool, actor: str, request: dict[str, Any],
                 state: str = "queued") -> int:
    return int(await conn.fetchval(
        "INSERT INTO simulations (requested_by, request, state, started_at) "
        "VALUES ($1, $2::jsonb, $3, CASE WHEN $3 = 'running' THEN now() END) "
        "RETURNING simulation_id", actor, json.dumps(request), state))


async def start(conn: Connection | asyncpg.Pool, simulation_id: int) -> None:
    await conn.execute("UPDATE simulations SET state = 'running', started_at = now() "
                       "WHERE simulation_id = $1", simulation_id)


async def finish(conn: Connection | asyncpg.Pool, simulation_id: int, result: bytes,
                 run: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE simulations SET state = 'done', result = $2::jsonb, run = $3::jsonb, "
        "progress = coalesce(progress, '{}'::jsonb) || '{\"percent\": \"100\"}'::jsonb, "
        "finished_at = now() WHERE simulation_id = $1",
        simulation_id, result.decode(), json.dumps(run))


async def progress(conn: Connection | asyncpg.Pool, simulation_id: int,
                   document: dict[str, Any]) -> None:
    """A running simulation's progress (a finished one keeps its last)."""
    await conn.execute("UPDATE simulations SET progress = $2::jsonb"
                       " WHERE simulation_id = $1 AND state = 'running'",
                       simulation_id, json.dumps(document))


async def fail(conn: Connection | asyncpg.Pool, simulation_id: int, error: str) -> None:
    await conn.execute("UPDATE simulations SET state = 'failed', error = $2, "
                       "finished_at = now() WHERE simulation_id = $1", simulation_id, error)


async def get(conn: Connection | asyncpg.Pool, simulation_id: int) -> Stored:
    row = await conn.fetchrow(
        "SELECT simulation_id, state, requested_by, request::text AS request, "
        "result::text AS result, run::text AS run, error, created_at, started_at, "
        "finished_at, progress::text AS progress FROM simulations WHERE simulation_id = $1",
        simulation_id)
    if row is None:
        raise NotFound(f"no simulation {simulation_id}")
    data = dict(row)
    for key in ("request", "result", "run", "progress"):
        data[key] = json.loads(data[key]) if data[key] is not None else None
    return Stored(**data)
