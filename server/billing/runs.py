"""Bill runs: for each batch of accounts, one transaction reads the inputs, computes every
(account, currency) invoice and stores the drafts with their lines, taxes and charge links.

A dry run does the same work and rolls the transaction back: a preview that writes nothing.
A real run is audited (``bill_run:<id>``): its start, each batch (the drafts it stored, in the
batch's transaction) and its end.
A draft of the same cycle is recomputed in place (same invoice id), so late usage within the
grace period lands on it; a finalised invoice is never touched (its cycle's late charges
wait for the next cycle's invoice).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable

import asyncpg
import msgspec

from server.billing import inputs
from server.billing.compute import compute
from server.billing.model import BillingInput, InvoiceDraft, Settings
from server.billing.tax import TaxRate
from server.store import audit
from server.store.pool import Connection


class RunResult(msgspec.Struct):
    bill_run_id: int | None
    period: str
    dry_run: bool
    accounts: int
    invoices: int
    charges: int
    seconds: float
    frozen: int = 0  # accounts whose draft was left unchanged: grace period over
    invoice_ids: list[int] = []
    previews: list[InvoiceDraft] = []


class _Rollback(Exception):
    pass


async def bill_run(pool: asyncpg.Pool, period: str, settings: Settings, *,
                   accounts: list[str] | None = None, dry_run: bool = False,
                   batch_size: int = 1000, now: dt.datetime | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   actor: str) -> RunResult:
    """``actor`` names who asked in the audit log (``key:<id>``, ``cli:<user>``)."""
    started = time.perf_counter()
    frozen_before = None if settings.grace_days is None else (
        (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=settings.grace_days))
    async with pool.acquire() as conn:
        ids = await inputs.account_ids(conn, accounts)
        rates = await inputs.tax_rates(conn)
        run_id = None if dry_run else await _start(conn, actor, period, accounts)
        result = RunResult(bill_run_id=run_id, period=period, dry_run=dry_run,
                           accounts=len(ids), invoices=0, charges=0, seconds=0.0)
        try:
            for first in range(0, len(ids), batch_size):
                chunk = ids[first:first + batch_size]
                await _batch(conn, chunk, period, settings, rates, run_id, result,
                             frozen_before, actor)
                if progress:
                    progress(min(first + batch_size, len(ids)), len(ids))
        except Exception as exc:
            if run_id is not None:
                await _finish(conn, actor, run_id, result, error=str(exc))
            raise
        if run_id is not None:
            await _finish(conn, actor, run_id, result)
    result.seconds = time.perf_counter() - started
    return result


async def _start(conn: Connection, actor: str, period: str, accounts: list[str] | None) -> int:
    async with conn.transaction():
        run_id: int = await conn.fetchval(
            "INSERT INTO bill_runs (period, accounts) VALUES ($1, $2) RETURNING bill_run_id",
            period, accounts)
        await audit.record(conn, actor, "bill_run.start", f"bill_run:{run_id}", None,
                           {"period": period, "accounts": accounts})
    return run_id


async def _finish(conn: Connection, actor: str, run_id: int, result: RunResult,
                  error: str | None = None) -> None:
    state = "failed" if error is not None else "done"
    async with conn.transaction():
        await conn.execute(
            "UPDATE bill_runs SET state = $2, error = $3, invoices = $4, charges = $5, "
            "finished_at = now() WHERE bill_run_id = $1",
            run_id, state, error, result.invoices, result.charges)
        await audit.record(conn, actor, f"bill_run.{state}", f"bill_run:{run_id}",
                           {"state": "running"},
                           {"state": state, "error": error, "accounts": result.accounts,
                            "invoices": result.invoices, "charges": result.charges,
                            "frozen": result.frozen})


async def _batch(conn: Connection, ids: list[str], period: str, settings: Settings,
                 rates: tuple[TaxRate, ...], run_id: int | None, result: RunResult,
                 frozen_before: dt.datetime | None, actor: str) -> None:
    try:
        async with conn.transaction():
            batch = await inputs.read_batch(conn, ids, period, frozen_before)
            drafts = [d for d in _compute_all(batch, settings, rates) if d.lines]
            if run_id is None:
                result.charges += batch.charges
                result.frozen += batch.frozen
                result.invoices += len(drafts)
                result.previews.extend(drafts)
                raise _Rollback
            stored = await store_drafts(conn, drafts, run_id)
            # Last in the transaction: the audit head stays locked only until the commit.
            await audit.record(conn, actor, "bill_run.batch", f"bill_run:{run_id}", None, {
                "first_account": ids[0], "last_account": ids[-1], "account_count": len(ids),
                "charges": batch.charges, "frozen": batch.frozen,
                "invoice_ids": stored})
        result.charges += batch.charges
        result.frozen += batch.frozen
        result.invoices += len(drafts)
        result.invoice_ids.extend(stored)
    except _Rollback:
        pass


def _compute_all(batch: inputs.Batch, settings: Settings,
                 rates: tuple[TaxRate, ...]) -> list[InvoiceDraft]:
    out = []
    for account_id, account in batch.accounts.items():
        cycle = batch.cycles[account_id]
        subs = tuple(batch.subscriptions.get(account_id, ()))
        adjustments = tuple(batch.adjustments.get(account_id, ()))
        currencies = {c for (a, c) in batch.usage if a == account_id}
        currencies |= {s.product.currency for s in subs if s.product.recurring_fee_micros}
        currencies |= {a.currency for a in adjustments}
        tax_day = cycle.end_local - dt.timedelta(days=1)
        for currency in sorted(currencies):
            out.append(compute(BillingInput(
                account=account, currency=currency,
                usage=tuple(batch.usage.get((account_id, currency), ())),
                subscriptions=subs, adjustments=adjustments,
                discounts=inputs.discounts_on(batch, account_id, tax_day), tax_rates=rates,
                bill_recurring=(account_id, currency) not in batch.finalised,
            ), cycle, settings))
    return out


async def store_drafts(conn: Connection, drafts: list[InvoiceDraft], run_id: int) -> list[int]:
    """Insert new drafts or refresh the existing draft of the cycle; then lines, allowances,
    taxes (bulk COPY) and the charge links (one INSERT … SELECT from the run's charges)."""
    rows = await conn.fetch(
        """
        INSERT INTO invoices AS i (account_id, bill_run_id, period, period_start, period_end,
            currency, tax_inclusive, reverse_charge, rounding_method, line_total_micros,
            allowance_micros, net_micros, tax_micros, total_micros, rounding_micros,
            payable_micros, seller, buyer, notes)
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::timestamptz[],
            $5::timestamptz[], $6::text[], $7::bool[], $8::bool[], $9::text[], $10::bigint[],
            $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[],
            $16::bigint[], $17::jsonb[], $18::jsonb[], $19::text[])
        ON CONFLICT (account_id, period, currency) WHERE status = 'draft' DO UPDATE SET
            bill_run_id = excluded.bill_run_id, tax_inclusive = excluded.tax_inclusive,
            reverse_charge = excluded.reverse_charge, rounding_method = excluded.rounding_method,
            line_total_micros = excluded.line_total_micros,
            allowance_micros = excluded.allowance_micros, net_micros = excluded.net_micros,
            tax_micros = excluded.tax_micros, total_micros = excluded.total_micros,
            rounding_micros = excluded.rounding_micros, payable_micros = excluded.payable_micros,
            seller = excluded.seller, buyer = excluded.buyer, notes = excluded.notes,
            updated_at = now()
        RETURNING account_id, currency, invoice_id
        """,
        *_columns([
            (d.account_id, run_id, d.period, d.period_start, d.period_end, d.currency,
             d.tax_inclusive, d.reverse_charge, d.rounding_method, d.totals.line_total_micros,
             d.totals.allowance_micros, d.totals.net_micros, d.totals.tax_micros,
             d.totals.total_micros, d.totals.rounding_micros, d.totals.payable_micros,
             json.dumps(d.seller), json.dumps(d.buyer), "\n".join(d.notes))
            for d in drafts], 19),
    )
    ids = {(r["account_id"], r["currency"].strip()): r["invoice_id"] for r in rows}
    lines, allowances, taxes, links = [], [], [], []
    for d in drafts:
        invoice_id = ids[d.account_id, d.currency]
        for ln in d.lines:
            lines.append((
                d.account_id, invoice_id, ln.line_no, ln.kind, ln.service, ln.description,
                ln.quantity, ln.unit, ln.charges, ln.gross_micros, ln.discount_micros,
                ln.net_micros, ln.inclusive_micros, ln.tax_category, ln.tax_rate,
                ln.subscription_id, ln.adjustment_id,
                json.dumps({**ln.detail, **({"zone": ln.zone} if ln.zone is not None else {})}),
            ))
            if ln.kind == "usage" and ln.zone is not None:
                links.append((d.account_id, d.currency, ln.service, ln.zone, invoice_id,
                              ln.line_no))
        allowances += [(d.account_id, invoice_id, a.seq, a.discount_id, a.reason,
                        a.amount_micros, a.tax_category, a.tax_rate) for a in d.allowances]
        taxes += [(d.account_id, invoice_id, t.category, t.rate, t.taxable, t.tax,
                   t.exemption_reason) for t in d.taxes]
    await conn.copy_records_to_table("invoice_lines", records=lines, columns=_LINE_COLUMNS)
    if allowances:
        await conn.copy_records_to_table("invoice_allowances", records=allowances)
    await conn.copy_records_to_table("taxes", records=taxes)
    await conn.execute(
        "CREATE TEMP TABLE run_lines (account_id text, currency text, service text, zone text, "
        "invoice_id bigint, line_no int) ON COMMIT DROP")
    await conn.copy_records_to_table("run_lines", records=links)
    await conn.execute(
        "INSERT INTO invoice_line_charges (account_id, charge_id, invoice_id, line_no) "
        "SELECT c.account_id, c.charge_id, m.invoice_id, m.line_no FROM run_charges c "
        "JOIN run_lines m ON m.account_id = c.account_id AND m.currency = c.currency "
        "AND m.service = c.service AND m.zone = c.zone ORDER BY c.account_id, c.charge_id")
    return sorted(ids.values())


_LINE_COLUMNS = (
    "account_id", "invoice_id", "line_no", "kind", "service", "description", "quantity", "unit",
    "charges", "gross_micros", "discount_micros", "net_micros", "inclusive_micros",
    "tax_category", "tax_rate", "subscription_id", "adjustment_id", "detail",
)


def _columns(rows: list[tuple[object, ...]], width: int) -> list[list[object]]:
    return [[r[i] for r in rows] for i in range(width)] if rows else [[] for _ in range(width)]
