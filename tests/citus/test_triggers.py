"""No trigger on a distributed table does work or reads another table (issue #21).

Every trigger on every distributed or reference table, and on each of their shards on the
workers, must be one of the self-contained guards: a row trigger that looks only at the row
it fires on and refuses the change. Citus creates a distributed table's triggers on each of
its shards and fires them there, on the worker, for that shard's rows; a guard that reads
nothing but OLD needs nothing from any other shard. The guards are then shown to refuse on
the cluster what they refuse on one PostgreSQL.
"""

from __future__ import annotations

import json
import re

import asyncpg
import pytest

pytestmark = pytest.mark.citus

# (table, trigger) → the function it runs; each function only raises, or reads OLD.status.
ALLOWED = {
    ("invoices", "invoices_immutable"): "refuse_finalised_invoice_change",
    ("credit_notes", "credit_notes_immutable"): "refuse_change",
    ("adjustments", "adjustments_immutable"): "refuse_change",
    ("ledger_entries", "ledger_entries_immutable"): "refuse_change",
    ("payments", "payments_immutable"): "refuse_change",
    ("payment_allocations", "payment_allocations_immutable"): "refuse_change",
    ("outbox_events", "outbox_events_immutable"): "outbox_events_append_only",
}

TRIGGERS = (
    "SELECT c.relname AS relation, t.tgname AS trigger, p.proname AS function"
    " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_proc p ON p.oid = t.tgfoid"
    " WHERE NOT t.tgisinternal AND n.nspname = 'public'")


def unallowed(found: set[tuple[str, str, str]], tables: set[str]) -> set[tuple[str, str, str]]:
    """The triggers of ``found`` (relation, trigger, function) on one of ``tables`` or on a
    shard of one (``<table>_<shard id>``, its trigger ``<trigger>_<shard id>`` or as named)
    that are not an allowed guard running its own function."""
    bad = set()
    for relation, trigger, function in found:
        table = relation if relation in tables else re.sub(r"_\d+$", "", relation)
        if table not in tables:
            continue
        name = re.sub(r"_\d+$", "", trigger)
        if ALLOWED.get((table, name)) != function:
            bad.add((relation, trigger, function))
    return bad


async def test_distributed_tables_and_shards_carry_only_row_guards(
        citus_pool: asyncpg.Pool) -> None:
    async with citus_pool.acquire() as conn:
        tables = {r["name"] for r in await conn.fetch(
            "SELECT table_name::text AS name FROM citus_tables"
            " WHERE citus_table_type IN ('distributed', 'reference')")}
        assert {"invoices", "invoice_lines", "invoice_line_charges", "ledger_entries",
                "credit_notes", "taxes", "payments"} <= tables
        on_coordinator = {tuple(r) for r in await conn.fetch(TRIGGERS)}
        rows = await conn.fetch(
            "SELECT nodename, nodeport, success, result FROM run_command_on_workers($1)",
            "SELECT coalesce(json_agg(json_build_array(relation, trigger, function)), '[]')"
            f" FROM ({TRIGGERS}) x")
    assert len(rows) == 2 and all(r["success"] for r in rows), rows
    on_workers = {(str(a), str(b), str(c)) for r in rows for a, b, c in json.loads(r["result"])}
    # The guards kept are there, on the shards too: Citus fires them where the rows are.
    for (table, name), function in ALLOWED.items():
        assert (table, name, function) in on_coordinator
        assert any(re.sub(r"_\d+$", "", rel) == table and t.startswith(name) and f == function
                   for rel, t, f in on_workers if rel != table), (table, name)
    assert unallowed(on_coordinator, tables) == set()
    assert unallowed(on_workers, tables) == set()


async def test_row_guards_refuse_on_the_shards(citus_pool: asyncpg.Pool) -> None:
    async with citus_pool.acquire() as conn:
        await conn.execute("INSERT INTO accounts (account_id) VALUES ('G1')")
        await conn.execute(
            "INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date,"
            " due_date, description) VALUES ('G1', 'fee', 'EUR', 1000000, '2026-01-01',"
            " '2026-01-01', 'fee')")
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
            await conn.execute("UPDATE ledger_entries SET amount_micros = 1"
                               " WHERE account_id = 'G1'")
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
            await conn.execute("DELETE FROM ledger_entries WHERE account_id = 'G1'")
        invoice_id = await conn.fetchval(
            "INSERT INTO invoices (account_id, period, period_start, period_end, currency,"
            " rounding_method, line_total_micros, allowance_micros, net_micros, tax_micros,"
            " total_micros, rounding_micros, payable_micros, seller, buyer, status, series,"
            " number, number_text, issue_date, due_date) VALUES ('G1', 'p', now(), now(),"
            " 'EUR', 'half-up', 1, 0, 1, 0, 1, 0, 1, '{}', '{}', 'finalised', 'G', 1, 'G-1',"
            " '2026-01-01', '2026-01-15') RETURNING invoice_id")
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="finalised"):
            await conn.execute("UPDATE invoices SET notes = 'x' WHERE account_id = 'G1'"
                               " AND invoice_id = $1", invoice_id)
        # An ordinary multi-shard statement fires them on every shard it touches.
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="finalised"):
            await conn.execute("DELETE FROM invoices WHERE status = 'finalised'")
