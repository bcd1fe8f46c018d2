"""The SQL of assurance runs and results (tables of migration 0900)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg
import msgspec

from billing_oss.core.errors import NotFound
from billing_oss.server.store.pool import Connection


class Result(msgspec.Struct, frozen=True, kw_only=True):
    control: str
    version: int
    family: str
    status: str  # pass | fail | error
    checked: int | None
    offending: int
    unpriced: int
    at_stake: dict[str, str]  # currency → decimal string
    evidence: list[dict[str, Any]]
    evidence_query: str
    error: str | None
    duration_ms: int


class Run(msgspec.Struct, frozen=True, kw_only=True):
    run_id: int
    as_of: dt.datetime
    trigger: str
    actor: str
    controls: int
    failed: int
    started_at: dt.datetime
    finished_at: dt.datetime
    audit_seq: int | None
    results: list[Result] = []


async def insert(conn: Connection, *, as_of: dt.datetime, trigger: str, actor: str,
                 started_at: dt.datetime, finished_at: dt.datetime, results: list[Result],
                 audit_seq: int | None) -> int:
    run_id: int = await conn.fetchval(
        "INSERT INTO assurance_runs (as_of, trigger, actor, controls, failed, started_at,"
        " finished_at, audit_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING run_id",
        as_of, trigger, actor, len(results), sum(r.status != "pass" for r in results),
        started_at, finished_at, audit_seq)
    await conn.executemany(
        "INSERT INTO assurance_results (run_id, control, version, family, status, checked,"
        " offending, unpriced, at_stake, evidence, evidence_query, error, duration_ms)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11, $12, $13)",
        [(run_id, r.control, r.version, r.family, r.status, r.checked, r.offending, r.unpriced,
          json.dumps(r.at_stake), json.dumps(r.evidence), r.evidence_query, r.error,
          r.duration_ms) for r in results])
    return run_id


_RUN = ("SELECT run_id, as_of, trigger, actor, controls, failed, started_at, finished_at,"
        " audit_seq FROM assurance_runs")


async def runs(db: asyncpg.Pool | Connection, *, before: int | None, limit: int) -> list[Run]:
    rows = await db.fetch(_RUN + " WHERE $1::bigint IS NULL OR run_id < $1"
                          " ORDER BY run_id DESC LIMIT $2", before, limit)
    return [Run(**dict(r)) for r in rows]


async def get(db: asyncpg.Pool | Connection, run_id: int) -> Run:
    row = await db.fetchrow(_RUN + " WHERE run_id = $1", run_id)
    if row is None:
        raise NotFound(f"no assurance run {run_id}")
    results = await db.fetch(
        "SELECT control, version, family, status, checked, offending, unpriced,"
        " at_stake::text, evidence::text, evidence_query, error, duration_ms"
        " FROM assurance_results WHERE run_id = $1 ORDER BY control", run_id)
    return Run(**dict(row), results=[
        Result(**{**dict(r), "at_stake": json.loads(r["at_stake"]),
                  "evidence": json.loads(r["evidence"])}) for r in results])
