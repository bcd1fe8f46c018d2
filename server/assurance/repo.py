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
                 audit_seq: int | None, run_id: int | None = None) -> int:
    """Store a run; under ``run_id`` when a job drew it beforehand (``assurance_jobs``)."""
    run_id = await conn.fetchval(
        "INSERT INTO assurance_runs (run_id, as_of, trigger, actor, controls, failed,"
        " started_at, finished_at, audit_seq) OVERRIDING SYSTEM VALUE VALUES"
        " (coalesce($9, nextval(pg_get_serial_sequence('assurance_runs', 'run_id'))),"
        " $1, $2, $3, $4, $5, $6, $7, $8) RETURNING run_id",
        as_of, trigger, actor, len(results), sum(r.status != "pass" for r in results),
        started_at, finished_at, audit_seq, run_id)
    assert run_id is not None
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


# Jobs: runs asked for over HTTP, run by the background worker (migration 1341).

class Job(msgspec.Struct, frozen=True, kw_only=True):
    run_id: int  # the job's id, and its run's once stored
    state: str  # queued | running | done | failed
    requested_by: str
    controls: list[str] | None
    as_of: dt.datetime | None
    controls_total: int
    controls_done: int
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


async def create_job(db: asyncpg.Pool | Connection, actor: str, controls: list[str] | None,
                     as_of: dt.datetime | None, total: int) -> int:
    job_id: int = await db.fetchval(
        "INSERT INTO assurance_jobs (requested_by, controls, as_of, controls_total)"
        " VALUES ($1, $2, $3, $4) RETURNING assurance_job_id", actor, controls, as_of, total)
    return job_id


async def job(db: asyncpg.Pool | Connection, job_id: int) -> Job | None:
    row = await db.fetchrow(
        "SELECT assurance_job_id AS run_id, state, requested_by, controls, as_of,"
        " controls_total, controls_done, error, created_at, started_at, finished_at"
        " FROM assurance_jobs WHERE assurance_job_id = $1", job_id)
    return None if row is None else Job(**dict(row))


async def start_job(db: asyncpg.Pool | Connection, job_id: int, as_of: dt.datetime) -> None:
    await db.execute("UPDATE assurance_jobs SET state = 'running', started_at = now(),"
                     " as_of = $2, controls_done = 0 WHERE assurance_job_id = $1",
                     job_id, as_of)


async def job_progress(db: asyncpg.Pool | Connection, job_id: int, done: int) -> None:
    await db.execute("UPDATE assurance_jobs SET controls_done = greatest(controls_done, $2)"
                     " WHERE assurance_job_id = $1", job_id, done)


async def finish_job(db: asyncpg.Pool | Connection, job_id: int) -> None:
    await db.execute("UPDATE assurance_jobs SET state = 'done', finished_at = now(),"
                     " controls_done = controls_total WHERE assurance_job_id = $1", job_id)


async def fail_job(db: asyncpg.Pool | Connection, job_id: int, error: str) -> None:
    await db.execute("UPDATE assurance_jobs SET state = 'failed', error = $2,"
                     " finished_at = now() WHERE assurance_job_id = $1", job_id, error)


async def last_durations(db: asyncpg.Pool | Connection) -> dict[str, int]:
    """Each control's duration (ms) in the last run of the last 50 that ran it, the
    engine's schedule."""
    rows = await db.fetch(
        "SELECT DISTINCT ON (control) control, duration_ms FROM assurance_results"
        " WHERE run_id > (SELECT max(run_id) - 50 FROM assurance_runs)"
        " ORDER BY control, run_id DESC")
    return {r["control"]: r["duration_ms"] for r in rows}


async def run_exists(db: asyncpg.Pool | Connection, run_id: int) -> bool:
    return bool(await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM assurance_runs WHERE run_id = $1)", run_id))


# The GL export control (``controls.gl``): the months and currencies the ledger holds.

LEDGER_MONTHS_SQL = """
SELECT date_trunc('month', entry_date)::date AS month, currency,
       sum(amount_micros)::bigint AS micros, $1::timestamptz::date AS cutoff
FROM ledger_entries WHERE entry_date <= $1::timestamptz::date GROUP BY 1, 2 ORDER BY 1, 2"""


async def ledger_months(conn: Connection, as_of: dt.datetime
                        ) -> list[tuple[dt.date, str, int, dt.date]]:
    """(month, currency, Σ ledger entries dated up to ``as_of``, ``as_of``'s date) of every
    month and currency the ledger holds."""
    return [(r["month"], r["currency"], r["micros"], r["cutoff"])
            for r in await conn.fetch(LEDGER_MONTHS_SQL, as_of)]


# The checkpoint's Merkle tree (``server.assurance.merkle``).

# One summary per document, ordered by its key; amounts are integer micro-units.
LEAVES_SQL = """
SELECT key, doc::text FROM (
  SELECT 'invoice:' || i.account_id || '/' || i.invoice_id AS key,
         jsonb_build_object('type', 'invoice', 'account_id', i.account_id,
             'invoice_id', i.invoice_id, 'number', i.number_text, 'currency', trim(i.currency),
             'issue_date', i.issue_date::text, 'period', i.period, 'net_micros', i.net_micros,
             'tax_micros', i.tax_micros, 'payable_micros', i.payable_micros,
             'lines_sha256', (SELECT encode(sha256(convert_to(coalesce(string_agg(
                 concat_ws('|', l.line_no, l.kind, l.service, l.quantity, l.net_micros,
                           l.tax_category, l.tax_rate), E'\\n' ORDER BY l.line_no), ''),
                 'UTF8')), 'hex') FROM invoice_lines l
                 WHERE l.account_id = i.account_id AND l.invoice_id = i.invoice_id)) AS doc
  FROM invoices i WHERE i.status = 'finalised'
  UNION ALL
  SELECT 'credit_note:' || n.account_id || '/' || n.credit_note_id,
         jsonb_build_object('type', 'credit_note', 'account_id', n.account_id,
             'credit_note_id', n.credit_note_id, 'invoice_id', n.invoice_id,
             'number', n.number_text, 'currency', trim(n.currency),
             'issue_date', n.issue_date::text, 'net_micros', n.net_micros,
             'tax_micros', n.tax_micros, 'total_micros', n.total_micros)
  FROM credit_notes n
  UNION ALL
  SELECT 'assurance:' || r.run_id || '/' || r.control,
         jsonb_build_object('type', 'control_result', 'run_id', r.run_id,
             'control', r.control, 'version', r.version, 'status', r.status,
             'offending', r.offending, 'at_stake', r.at_stake)
  FROM assurance_results r) d
ORDER BY key COLLATE "C"
"""


async def leaves(conn: Connection) -> list[tuple[str, str]]:
    """(key, summary JSON) of every document, in tree order."""
    return [(r["key"], r["doc"]) for r in await conn.fetch(LEAVES_SQL)]


async def leaf(conn: Connection, key: str) -> dict[str, Any] | None:
    """The summary of the document ``key``, if it is one the tree holds."""
    row = await conn.fetchrow(f"SELECT doc::text FROM ({LEAVES_SQL}) d WHERE key = $1", key)
    found: dict[str, Any] | None = None if row is None else json.loads(row["doc"])
    return found


async def set_local(conn: Connection, setting: str) -> None:
    """A planner setting for the rest of the transaction (``work_mem = '256MB'``)."""
    await conn.execute(f"SET LOCAL {setting}")


async def tune_for_controls(conn: Connection, work_mem: str) -> None:
    """Controls are a few large scans and joins: room to hash them in memory, and no JIT,
    whose compiling costs more than half a second per query and saves less (the pool resets
    both when the connection goes back)."""
    await conn.execute(f"SET work_mem = '{work_mem}'; SET jit = off")


async def offenders(conn: Connection, sql: str, as_of: dt.datetime, params: str,
                    evidence_limit: int) -> asyncpg.Record:
    """A control's query (``sql``, one row per offender) summed up: how many, how many
    unpriced, the amount at stake per currency, and the first ``evidence_limit`` offenders."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"WITH offenders AS MATERIALIZED ({sql})"
        " SELECT $1::timestamptz AS as_of, $2::jsonb AS settings,"
        " (SELECT count(*) FROM offenders) AS n,"
        " (SELECT count(*) FROM offenders WHERE at_stake_micros IS NULL) AS unpriced,"
        " (SELECT coalesce(json_object_agg(currency, s), '{}')::text FROM"
        "   (SELECT currency, sum(at_stake_micros)::text AS s FROM offenders"
        "    WHERE currency IS NOT NULL AND at_stake_micros IS NOT NULL"
        "    GROUP BY currency) m) AS stake,"
        " (SELECT coalesce(json_agg(e), '[]')::text FROM"
        "   (SELECT object, trim(currency) AS currency, at_stake_micros, detail"
        "    FROM offenders ORDER BY object LIMIT $3) e) AS evidence",
        as_of, params, evidence_limit)
    assert row is not None
    return row


async def count(conn: Connection, sql: str, as_of: dt.datetime) -> int | None:
    """A control's ``checked_sql``: how many items it looked at, as of ``as_of``."""
    checked: int | None = await conn.fetchval(sql, as_of)
    return checked
