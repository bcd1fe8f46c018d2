"""Storing a bill run batch's invoice drafts, in the batch's transaction.

A draft of the same cycle is refreshed in place (same invoice id); its lines, allowances and
taxes go in by bulk COPY, its charge links by one INSERT … SELECT from the batch's
``run_charges`` (``inputs_repo.COLLECT``). A finalised invoice is never touched.

The rules that tie these rows to their invoice are checked here, by the only code that
writes them, not by triggers (on Citus a trigger reading another table runs on a shard,
DESIGN.md §7): parts are written only for invoices still drafts, under their row locks; a
link names a line written with it; a draft is deleted only when no link names it.
"""

from __future__ import annotations

import json

from billing_oss.core.errors import Conflict
from billing_oss.server.billing.model import InvoiceDraft
from billing_oss.server.store.pool import Connection


async def drop_emptied_drafts(conn: Connection, accounts: list[str], period: str,
                              drafts: list[InvoiceDraft]) -> list[int]:
    """Delete the batch's drafts of ``period`` that the recomputation left without lines
    (their lines and links are gone already): nothing to bill in that currency any more,
    e.g. after a plan changed currency. A finalised invoice is never touched; a draft that
    charges are still linked to is refused (deleting it would leave the links orphaned)."""
    kept = [(d.account_id, d.currency) for d in drafts]
    rows = await conn.fetch(
        """
        DELETE FROM invoices i WHERE i.account_id = ANY($1) AND i.period = $2
            AND i.status = 'draft'
            AND NOT EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS k(account, cur)
                            WHERE k.account = i.account_id AND k.cur = i.currency)
        RETURNING account_id, invoice_id
        """, accounts, period, [a for a, _ in kept], [c for _, c in kept])
    if rows:
        linked = await conn.fetchval(
            "SELECT min(invoice_id) FROM invoice_line_charges WHERE account_id = ANY($1)"
            " AND invoice_id = ANY($2)", sorted({r["account_id"] for r in rows}),
            [r["invoice_id"] for r in rows])
        if linked is not None:
            raise Conflict(f"invoice {linked} still has charges linked to its lines: "
                           "it cannot be deleted", invoice_id=linked)
    return [r["invoice_id"] for r in rows]


async def refuse_unless_drafts(conn: Connection, invoices: list[tuple[str, int]]) -> None:
    """Refuse to write lines, allowances, taxes or charge links of any of these invoices
    that is finalised: its content is fixed (DESIGN.md §3.5). The caller holds their row
    locks (the draft upsert, ``lock_draft_invoices``), so none is finalised meanwhile."""
    finalised = await conn.fetchval(
        "SELECT min(invoice_id) FROM invoices WHERE account_id = ANY($1)"
        " AND invoice_id = ANY($2) AND status <> 'draft'",
        sorted({a for a, _ in invoices}), [i for _, i in invoices])
    if finalised is not None:
        raise Conflict(f"invoice {finalised} is finalised: its lines, taxes and charge "
                       "links cannot change", invoice_id=finalised)


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
            bill_run_id = excluded.bill_run_id, period_start = excluded.period_start,
            period_end = excluded.period_end, tax_inclusive = excluded.tax_inclusive,
            reverse_charge = excluded.reverse_charge, rounding_method = excluded.rounding_method,
            line_total_micros = excluded.line_total_micros,
            allowance_micros = excluded.allowance_micros, net_micros = excluded.net_micros,
            tax_micros = excluded.tax_micros, total_micros = excluded.total_micros,
            rounding_micros = excluded.rounding_micros, payable_micros = excluded.payable_micros,
            seller = excluded.seller, buyer = excluded.buyer, notes = excluded.notes,
            updated_at = excluded.updated_at
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
    await refuse_unless_drafts(conn, [(a, i) for (a, _), i in ids.items()])
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
