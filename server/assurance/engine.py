"""Run the controls, store what each found, chain the results into the audit log, raise
failures as ``control.failed`` events and Prometheus gauges.

The controls read; only the final transaction writes: the run, one result per control, one
audit entry per result (``assurance.result``, entity ``assurance:<run>/<control>``) and one
outbox event per failing control — together or not at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal

import asyncpg
import msgspec

from billing_oss.core import metrics
from billing_oss.core.errors import BillingError, InvalidRequest
from billing_oss.server.assurance import repo
from billing_oss.server.assurance.controls import ALL, BY_NAME
from billing_oss.server.assurance.model import MICROS, Context, Control, Outcome, decimal_text
from billing_oss.server.integrations import outbox
from billing_oss.server.integrations.events import ControlFailed
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection

log = logging.getLogger(__name__)
AUDIT_ACTION = "assurance.result"
WORK_MEM = "256MB"


def select(names: Sequence[str] | None) -> list[Control]:
    """The controls named (a family name takes the whole family), else all of them."""
    if not names:
        return list(ALL)
    chosen: list[Control] = []
    for name in names:
        found = [BY_NAME[name]] if name in BY_NAME else [c for c in ALL if c.family == name]
        if not found:
            raise InvalidRequest(f"no control or family {name!r} (known: "
                                 f"{', '.join(sorted(BY_NAME))})")
        chosen.extend(c for c in found if c not in chosen)
    return chosen


Progress = Callable[[int], Awaitable[None]]  # called with how many controls have finished


async def run(pool: asyncpg.Pool, ctx: Context, *, controls: Sequence[str] | None = None,
              trigger: str, actor: str, run_id: int | None = None,
              progress: Progress | None = None) -> repo.Run:
    """Run ``controls`` (all by default), ``ctx.parallel`` at a time on connections of
    their own, and store the run (under ``run_id`` when a job drew it)."""
    chosen = select(controls)
    started = dt.datetime.now(dt.UTC)
    async with pool.acquire() as conn:
        last = await repo.last_durations(conn)
    lanes = asyncio.Semaphore(max(1, ctx.parallel))
    finished_controls = 0

    async def one(control: Control) -> repo.Result:
        nonlocal finished_controls
        async with lanes, pool.acquire() as conn:
            await repo.tune_for_controls(conn, WORK_MEM)
            result = await _evaluate(conn, control, ctx)
        finished_controls += 1
        if progress is not None:
            await progress(finished_controls)
        return result

    # Longest first (by the last run), so that no long control starts last on one lane
    # while the other lanes stand idle.
    ordered = longest_first(chosen, last)
    found = dict(zip((c.name for c in ordered),
                     await asyncio.gather(*(one(c) for c in ordered)), strict=True))
    results = [found[c.name] for c in chosen]
    finished = dt.datetime.now(dt.UTC)
    async with pool.acquire() as conn, conn.transaction():
        run_id = await repo.insert(conn, as_of=ctx.as_of, trigger=trigger, actor=actor,
                                   started_at=started, finished_at=finished, results=results,
                                   audit_seq=None, run_id=run_id)
        await audit.record_many(conn, actor, AUDIT_ACTION, [
            (f"assurance:{run_id}/{r.control}", None, _audited(r)) for r in results])
        for r in results:
            if r.status != "pass":
                await outbox.emit(conn, ControlFailed(
                    run_id=run_id, control=r.control, version=r.version,
                    offending=r.offending, at_stake=r.at_stake,
                    evidence=[e["object"] for e in r.evidence], query=r.evidence_query,
                ), stream=f"control:{r.control}")
    _export_metrics(results)
    for r in results:
        if r.status != "pass":
            log.warning("assurance control failed", extra={"fields": {
                "run": run_id, "control": r.control, "offending": r.offending,
                "at_stake": r.at_stake, "error": r.error}})
    return await repo.get(pool, run_id)


def longest_first(controls: Sequence[Control], last_ms: dict[str, int]) -> list[Control]:
    """``controls`` by their last duration, longest first; those never run keep their order
    ahead of the rest (they may be long)."""
    return sorted(controls, key=lambda c: -last_ms.get(c.name, 1 << 62))


async def _evaluate(conn: Connection, control: Control, ctx: Context) -> repo.Result:
    began = time.perf_counter()
    try:
        outcome = await control.evaluate(conn, ctx)
        error = None
    except (asyncpg.PostgresError, BillingError, ValueError, OSError) as exc:
        # One control that cannot run is a result ('error'), not the end of the run.
        outcome = Outcome(checked=None, offending=0, unpriced=0, at_stake_micros={},
                          evidence=[], query="")
        error = f"{type(exc).__name__}: {exc}"
    status = "error" if error else ("fail" if outcome.offending else "pass")
    return repo.Result(
        control=control.name, version=control.version, family=control.family, status=status,
        checked=outcome.checked, offending=outcome.offending, unpriced=outcome.unpriced,
        at_stake={cur: decimal_text(m) for cur, m in sorted(outcome.at_stake_micros.items())},
        evidence=[{**msgspec.to_builtins(o),
                   "at_stake": None if o.at_stake_micros is None
                   else decimal_text(o.at_stake_micros)} for o in outcome.evidence],
        evidence_query=outcome.query, error=error,
        duration_ms=round((time.perf_counter() - began) * 1000))


def _audited(r: repo.Result) -> dict[str, object]:
    """What the audit chain keeps of a result: its verdict and money, not the evidence."""
    return {"control": r.control, "version": r.version, "status": r.status,
            "offending": r.offending, "unpriced": r.unpriced, "at_stake": r.at_stake}


def _export_metrics(results: list[repo.Result]) -> None:
    for r in results:
        metrics.ASSURANCE_FAILING.labels(r.control).set(0 if r.status == "pass" else 1)
        metrics.ASSURANCE_OFFENDING.labels(r.control).set(r.offending)
        for currency, amount in r.at_stake.items():
            metrics.ASSURANCE_AT_STAKE.labels(r.control, currency).set(
                int(Decimal(amount) * MICROS))
