"""The same schema on a Citus coordinator (DESIGN.md §7): where each table lives.

The migrations are the same files on plain PostgreSQL and on Citus. On a coordinator (the
``citus`` extension is installed in the database) ``place_tables`` runs after them, in the
migrator's transaction, and puts every table where it scales:

- traffic tables are distributed by ``account_id`` and co-located with ``usage_records``, so
  a per-account query and a bill run's per-account work stay on one shard;
- traffic tables keyed by something that is not an account (record-key claims, message
  offsets, partial parts) are distributed by their own key: a claim is one routed insert
  wherever the account's shard is;
- the catalog and partner data, read by every node, are reference tables;
- suspense and the outbox's heads and events are distributed by ``account_id`` too: a
  suspended record of no known account and an event about no account are stored under the
  reserved account ``''`` (migrations 1472, 1473); suspense rows are locked account by
  account (``lock_suspense``, ``claim_suspense``), the outbox consumers' cursors stay on the
  coordinator, and emitting notifies from the coordinator's transaction;
- the control plane — accounts and what account resolution reads (their statement triggers
  hand out generations and NOTIFY the servers listening on the coordinator), jobs, files,
  webhooks and the outbox's cursors, the audit chain — stays on the coordinator as Citus
  local tables, with its triggers as on one PostgreSQL.

Citus refuses a few things the single-node schema has, and this step changes only those, on
Citus only: foreign keys from distributed tables to coordinator tables (accounts, bill runs,
rerate jobs) are dropped — the writers create the account first, as they do now — and unique
keys without the distribution column (document ``(series, number)``, ``anomaly_flags
(flag_id)``) are replaced by ones that include it; numbers stay unique because one series
counter row hands them out. Triggers on distributed tables are created with
``enable_unsafe_triggers``: the row guards that look only at their own row, fired on its
shard (the charge rollups' statement trigger reads the co-located usage shard by name,
migration 1350); ledger postings and the invoice part checks are done by the code that
writes (migration 1480). The collections helpers run inside queries routed to an account's
shard and read that account's other rows, so the database allows that nesting on every node
(``allow_nested_distributed_execution``).

Idempotent: a table already placed is skipped, so a later migration's new table is placed at
the next start.
"""

from __future__ import annotations

import logging

import asyncpg

from billing_oss.server.store.pool import Connection

log = logging.getLogger(__name__)

# The account a row about no account is stored under in the tables distributed by account
# (a suspended record of no known account, an outbox event about a file or a partner): no
# account has an empty id, and Citus takes no NULL in the distribution column. Stored so on
# one PostgreSQL too; the repositories read it back as no account.
NO_ACCOUNT = ""

# Distributed by account_id and co-located with usage_records (the first one is the anchor).
BY_ACCOUNT: tuple[str, ...] = (
    "usage_records", "charges", "charge_rollups", "charge_rollups_monthly",
    "charge_account_months", "charge_account_presence", "charge_account_days", "adjustments",
    "invoices", "invoice_lines", "invoice_line_charges",
    "invoice_allowances", "taxes", "credit_notes", "payments", "ledger_entries",
    "payment_allocations", "aging_open", "ledger_journal_deltas", "dunning_events", "disputes",
    "dunning_suspensions",
    "anomaly_flags", "rerate_job_accounts", "suspense", "outbox_heads", "outbox_events",
)
# Traffic tables whose key is not an account: distributed by that key.
BY_OWN_KEY: tuple[tuple[str, str], ...] = (
    ("usage_keys", "record_key"),
    ("source_offsets", "position"),
    ("http_idempotency_keys", "idempotency_key"),
    ("partial_records", "group_key"),
    ("meter_readings", "meter"),
)
# Read everywhere, written rarely: a copy on every node.
REFERENCE: tuple[str, ...] = (
    "products", "tax_rates", "partners", "exchange_rates", "dunning_ladders",
    "currency_minor_steps",
)

# Unique keys without the distribution column: replaced by ones that include it.
_UNIQUE_REWRITES: tuple[tuple[str, str, str], ...] = (
    ("invoices", "invoices_series_number_key", "(account_id, series, number)"),
    ("credit_notes", "credit_notes_series_number_key", "(account_id, series, number)"),
)
_DROP_INDEXES: tuple[str, ...] = ("anomaly_flags_id",)


async def is_citus(conn: Connection | asyncpg.Pool) -> bool:
    """Whether this database is a Citus coordinator (the extension is installed in it)."""
    return bool(await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'citus'"))


async def _placed(conn: Connection) -> set[str]:
    rows = await conn.fetch("SELECT logicalrelid::regclass::text AS name FROM pg_dist_partition")
    return {row["name"] for row in rows}


async def _drop_foreign_keys_to(conn: Connection, table: str, keep: set[str]) -> None:
    """Drop ``table``'s foreign keys to tables outside ``keep`` (Citus refuses them)."""
    rows = await conn.fetch(
        "SELECT conname, confrelid::regclass::text AS target FROM pg_constraint"
        " WHERE contype = 'f' AND conrelid = $1::regclass AND conparentid = 0", table)
    for row in rows:
        if row["target"] not in keep:
            await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{row["conname"]}"')


async def place_tables(conn: Connection) -> list[str]:
    """Distribute or replicate every table of the plan not placed yet; return those placed
    now. The others stay on the coordinator. Runs with ``citus.enable_unsafe_triggers`` on
    (set by the migrator)."""
    placed = await _placed(conn)
    done: list[str] = []
    existing = {row["name"] for row in await conn.fetch(
        "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition")}
    existing.discard("schema_migrations")

    for table in REFERENCE:
        if table in existing and table not in placed:
            await conn.execute("SELECT create_reference_table($1)", table)
            done.append(table)

    by_account = [t for t in BY_ACCOUNT if t in existing]
    colocated = set(by_account) | set(REFERENCE)
    for table in by_account:
        if table in placed:
            continue
        await _drop_foreign_keys_to(conn, table, colocated)
        for name, constraint, columns in _UNIQUE_REWRITES:
            if name == table:
                await conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {constraint}")
                await conn.execute(
                    f"CREATE UNIQUE INDEX IF NOT EXISTS {constraint} ON {table} {columns}")
        for index in _DROP_INDEXES:
            if index.startswith(table):
                await conn.execute(f"DROP INDEX IF EXISTS {index}")
        anchor = "default" if table == by_account[0] else by_account[0]
        await conn.execute(
            "SELECT create_distributed_table($1, 'account_id', colocate_with => $2)",
            table, anchor)
        done.append(table)

    for table, column in BY_OWN_KEY:
        if table in existing and table not in placed:
            await _drop_foreign_keys_to(conn, table, set(REFERENCE))
            await conn.execute("SELECT create_distributed_table($1, $2)", table, column)
            done.append(table)
    # The collections helpers run inside queries already routed to an account's shard and
    # read that account's other rows: co-located, on the same worker, run there locally.
    await conn.execute(
        "SELECT run_command_on_all_nodes(format('ALTER DATABASE %I SET"
        " citus.allow_nested_distributed_execution = on', current_database()))")
    if done:
        log.info("citus: tables placed", extra={"fields": {"tables": ",".join(done)}})
    return done
