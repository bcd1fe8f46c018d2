"""Bill runs: a cycle's charges turned into draft invoices, account batch by account batch,
optionally followed by the finalisation of the period's drafts whose grace period is over.

A dry run (``preview``) computes every batch in a transaction it rolls back: a preview that
writes nothing. A real run is a job (``server.jobs``): submitted ``queued`` and audited
(``bill_run:<id>``), then claimed and run by a worker — the server's, in the background, or
the caller's own (``bill_run``: the CLI, the tests). Each batch's transaction stores the
batch's drafts (``server.billing.drafting``), advances the run's counters and resume point
(the batch's last account) and is audited; the end — finalisation included — commits in
one transaction with the run's ``done``.

A run interrupted by a crash or a shutdown is resumed after its last committed batch by the
next worker that claims it. That is correct because a batch is idempotent on drafts: it
rebuilds its accounts' drafts from every charge not on another invoice, never touches a
finalised invoice, and leaves alone drafts whose grace period is over; so even running a
committed batch again would change nothing but late usage, and a resumed run ends exactly
as an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Sequence

import asyncpg
import msgspec

from billing_oss.core.errors import NotFound
from billing_oss.server import jobs
from billing_oss.server.billing import bill_runs_repo, inputs_repo, issuing
from billing_oss.server.billing.drafting import compute_batch
from billing_oss.server.billing.drafts_repo import drop_emptied_drafts, store_drafts
from billing_oss.server.billing.model import InvoiceDraft, Settings
from billing_oss.server.catalog.tax import TaxRate
from billing_oss.server.config import BillingConfig
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection

RunProgress = Callable[[int, int], None]  # (accounts done, accounts in the run)


class RunSettings(msgspec.Struct, frozen=True):
    billing: Settings
    batch_size: int = 1000  # accounts per transaction
    invoice_series: str = "INV"
    payment_terms_days: int = 30


def run_settings(config: BillingConfig) -> RunSettings:
    return RunSettings(
        billing=Settings(seller=config.seller(), rounding=config.rounding,
                         grace_days=config.grace_days),
        batch_size=config.batch_size, invoice_series=config.invoice_series,
        payment_terms_days=config.payment_terms_days)


class Run(msgspec.Struct, frozen=True, kw_only=True):
    """A bill run as stored: what was asked, how far it got, what it made."""

    bill_run_id: int
    period: str
    accounts: list[str] | None  # None: every account not closed
    finalize: bool
    force: bool
    state: str
    requested_by: str
    accounts_total: int | None
    accounts_done: int
    invoices: int
    charges: int
    frozen: int  # accounts whose draft was past its grace period: left unchanged
    invoice_ids: list[int]
    finalized: list[int]
    in_grace: list[int]  # drafts not finalised: still in their grace period
    in_grace_until: dt.datetime | None
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class RunResult(msgspec.Struct):
    bill_run_id: int | None
    period: str
    dry_run: bool
    accounts: int
    invoices: int
    charges: int
    seconds: float
    frozen: int = 0
    invoice_ids: list[int] = []
    previews: list[InvoiceDraft] = []
    finalized: list[int] = []
    in_grace: list[int] = []
    in_grace_until: dt.datetime | None = None


class _Rollback(Exception):
    pass


async def bill_run(pool: asyncpg.Pool, period: str, settings: Settings, *,
                   accounts: list[str] | None = None, dry_run: bool = False,
                   finalize: bool = False, force: bool = False, batch_size: int = 1000,
                   invoice_series: str = "INV", payment_terms_days: int = 30,
                   now: dt.datetime | None = None, progress: RunProgress | None = None,
                   actor: str) -> RunResult:
    """Bill a cycle in this process and wait for the end (a failure is raised). ``actor``
    names who asked in the audit log (``key:<id>``, ``cli:<user>``)."""
    started = time.perf_counter()
    if dry_run:
        result = await preview(pool, period, settings, accounts=accounts,
                               batch_size=batch_size, now=now)
    else:
        kind = BillRuns(pool, RunSettings(settings, batch_size, invoice_series,
                                          payment_terms_days), now=now, progress=progress)
        async with pool.acquire() as holder:
            async with holder.transaction():
                run_id = await submit(holder, actor, period, accounts, finalize=finalize,
                                      force=force)
                # Claimed before the commit: no worker can see the run unclaimed.
                await jobs.try_claim(holder, kind, run_id)
            try:
                await jobs.run_claimed(pool, holder, kind, run_id, asyncio.Event())
            finally:
                await jobs.release(holder, kind, run_id)
            result = result_of(await get(holder, run_id))
    result.seconds = time.perf_counter() - started
    return result


async def submit(conn: Connection, actor: str, period: str, accounts: list[str] | None, *,
                 finalize: bool = False, force: bool = False) -> int:
    """Queue a run (audited ``bill_run.start``); a worker takes it from there."""
    async with conn.transaction():
        run_id = await bill_runs_repo.insert(conn, period, accounts, finalize, force, actor)
        await audit.record(conn, actor, "bill_run.start", f"bill_run:{run_id}", None,
                           {"period": period, "accounts": accounts, "finalize": finalize,
                            "force": force})
    return run_id


async def get(conn: Connection | asyncpg.Pool, run_id: int) -> Run:
    row = await bill_runs_repo.row(conn, run_id)
    if row is None:
        raise NotFound(f"no bill run {run_id}", bill_run_id=run_id)
    return Run(**dict(row))


async def find(pool: asyncpg.Pool, *, state: str | None, period: str | None,
               after: int | None, limit: int) -> list[Run]:
    rows = await bill_runs_repo.rows(pool, state=state, period=period, after=after,
                                     limit=limit + 1)
    return [Run(**dict(r)) for r in rows]


def result_of(run: Run) -> RunResult:
    return RunResult(
        bill_run_id=run.bill_run_id, period=run.period, dry_run=False,
        accounts=run.accounts_total or 0, invoices=run.invoices, charges=run.charges,
        seconds=0.0, frozen=run.frozen, invoice_ids=run.invoice_ids, finalized=run.finalized,
        in_grace=run.in_grace, in_grace_until=run.in_grace_until)


class BillRuns:
    """Bill runs for ``server.jobs``: claimed, run and resumed like every job table."""

    table = "bill_runs"
    name = "bill_run"
    lock_space = 0x42494C4C  # "BILL": advisory lock namespace of bill run claims

    def __init__(self, pool: asyncpg.Pool, settings: RunSettings, *,
                 now: dt.datetime | None = None, progress: RunProgress | None = None) -> None:
        self._pool, self._settings = pool, settings
        self._now, self._progress = now, progress

    async def run(self, holder: Connection, job_id: int, stop: asyncio.Event) -> None:
        await execute(holder, job_id, self._settings, stop, now=self._now,
                      progress=self._progress)

    async def fail(self, pool: asyncpg.Pool, job_id: int, error: str) -> None:
        async with pool.acquire() as conn, conn.transaction():
            run = await bill_runs_repo.mark_failed(conn, job_id, error)
            await audit.record(conn, run["requested_by"], "bill_run.failed",
                               f"bill_run:{job_id}", {"state": "running"},
                               {"state": "failed", "error": error, **_counts(run)})


async def execute(conn: Connection, run_id: int, settings: RunSettings, stop: asyncio.Event,
                  *, now: dt.datetime | None = None, progress: RunProgress | None = None) -> None:
    """Run (or resume) a claimed run on ``conn``; return early, the run left ``running``,
    once ``stop`` is set."""
    run = await get(conn, run_id)
    now = now or dt.datetime.now(dt.UTC)
    ids = await inputs_repo.account_ids(conn, run.accounts)
    resume = await bill_runs_repo.resume_account(conn, run_id)
    todo = [a for a in ids if resume is None or a > resume]
    total = run.accounts_done + len(todo)
    async with conn.transaction():
        await bill_runs_repo.mark_running(conn, run_id, total)
        if run.state == "running":  # claimed again after a crash or a shutdown
            await audit.record(conn, run.requested_by, "bill_run.resume", f"bill_run:{run_id}",
                               {"accounts_done": run.accounts_done, "resume_after": resume},
                               {"accounts_left": len(todo)})
    rates = await inputs_repo.tax_rates(conn)
    grace = settings.billing.grace_days
    frozen_before = None if grace is None else now - dt.timedelta(days=grace)
    done = run.accounts_done
    for first in range(0, len(todo), settings.batch_size):
        if stop.is_set():
            return
        chunk = todo[first:first + settings.batch_size]
        await _store_batch(conn, run, chunk, settings.billing, rates, frozen_before)
        done += len(chunk)
        if progress:
            progress(done, total)
    await _finish(conn, run, settings, now)


async def _store_batch(conn: Connection, run: Run, ids: list[str], settings: Settings,
                       rates: tuple[TaxRate, ...], frozen_before: dt.datetime | None) -> None:
    async with conn.transaction():
        batch, drafts = await compute_batch(conn, ids, run.period, settings, rates,
                                            frozen_before)
        dropped = await drop_emptied_drafts(conn, list(batch.accounts), run.period, drafts)
        stored = await store_drafts(conn, drafts, run.bill_run_id)
        await bill_runs_repo.add_batch(
            conn, run.bill_run_id, accounts=len(ids), invoices=len(drafts),
            charges=batch.charges, frozen=batch.frozen, invoice_ids=stored, last_account=ids[-1])
        # Last in the transaction: the audit head stays locked only until the commit.
        await audit.record(conn, run.requested_by, "bill_run.batch", f"bill_run:{run.bill_run_id}",
                           None, {"first_account": ids[0], "last_account": ids[-1],
                                  "account_count": len(ids), "charges": batch.charges,
                                  "frozen": batch.frozen, "invoice_ids": stored,
                                  "drafts_dropped": dropped})


async def _finish(conn: Connection, run: Run, settings: RunSettings, now: dt.datetime) -> None:
    """Finalise what the run was asked to and mark it done, in one transaction."""
    async with conn.transaction():
        due = issuing.Due([], [], None)
        finalized: list[int] = []
        if run.finalize:
            due = await issuing.drafts_due(conn, run.period, run.accounts,
                                             settings.billing.grace_days or 0, now,
                                             force=run.force)
            if due.due:
                finalized = await issuing.finalise(
                    conn, due.due, settings.invoice_series, now.date(),
                    settings.payment_terms_days, actor=run.requested_by)
        row = await bill_runs_repo.mark_done(conn, run.bill_run_id, finalized, due.waiting,
                                             due.waiting_until)
        await audit.record(conn, run.requested_by, "bill_run.done", f"bill_run:{run.bill_run_id}",
                           {"state": "running"},
                           {"state": "done", "error": None, **_counts(row),
                            "finalized": finalized, "in_grace": due.waiting})


def _counts(row: asyncpg.Record) -> dict[str, int]:
    return {"accounts": row["accounts_done"], "invoices": row["invoices"],
            "charges": row["charges"], "frozen": row["frozen"]}


async def preview(pool: asyncpg.Pool, period: str, settings: Settings, *,
                  accounts: Sequence[str] | None = None, batch_size: int = 1000,
                  now: dt.datetime | None = None) -> RunResult:
    """What a run would make now, computed batch by batch and rolled back."""
    grace = settings.grace_days
    frozen_before = None if grace is None else (
        (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=grace))
    async with pool.acquire() as conn:
        ids = await inputs_repo.account_ids(conn, None if accounts is None else list(accounts))
        rates = await inputs_repo.tax_rates(conn)
        result = RunResult(bill_run_id=None, period=period, dry_run=True, accounts=len(ids),
                           invoices=0, charges=0, seconds=0.0)
        for first in range(0, len(ids), batch_size):
            try:
                async with conn.transaction():
                    batch, drafts = await compute_batch(conn, ids[first:first + batch_size],
                                                        period, settings, rates, frozen_before)
                    result.charges += batch.charges
                    result.frozen += batch.frozen
                    result.invoices += len(drafts)
                    result.previews.extend(drafts)
                    raise _Rollback
            except _Rollback:
                pass
    return result
