"""Every SQL statement of the retention package (asyncpg, parameterised).

Partition names come from the catalog (``pg_inherits``), never from input, and are quoted
with ``quote_ident`` before they are written into a statement.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterable, Callable, Coroutine
from typing import Any, TypeAlias

import asyncpg

from billing_oss.server.store.citus import is_citus
from billing_oss.server.store.pool import Connection

Db: TypeAlias = "Connection | asyncpg.Pool"

# The monthly-partitioned tables, in the order an archive exports and restores them.
MONTHLY = ("usage_records", "charges")
# Subscriber identifiers of a usage record (DESIGN.md §5b) that pseudonymisation replaces.
IDENTIFIERS = ("calling", "called", "imsi", "msisdn")
PSEUDONYM_PREFIX = "p:"
ARCHIVE_LOCK = "billing-oss.retention.archive"


def quote(name: str) -> str:
    """A catalog name as an SQL identifier (partition names are lower-case words)."""
    return '"' + name.replace('"', '""') + '"'


# --- policy ------------------------------------------------------------------------------

async def put_policy(db: Db, pseudonymise_after_days: int, archive_after_months: int) -> None:
    await db.execute(
        "INSERT INTO retention_policy (pseudonymise_after_days, archive_after_months)"
        " VALUES ($1, $2) ON CONFLICT (singleton) DO UPDATE SET"
        " pseudonymise_after_days = excluded.pseudonymise_after_days,"
        " archive_after_months = excluded.archive_after_months, updated_at = now()"
        " WHERE (retention_policy.pseudonymise_after_days, retention_policy.archive_after_months)"
        " IS DISTINCT FROM (excluded.pseudonymise_after_days, excluded.archive_after_months)",
        pseudonymise_after_days, archive_after_months)


# --- partitions ------------------------------------------------------------------------------

async def ensure_partitions(db: Db, months: list[dt.date]) -> None:
    await db.execute(
        "SELECT ensure_month_partition(t::regclass, m)"
        " FROM unnest($1::text[]) t, unnest($2::date[]) m", list(MONTHLY), months)


async def _leaves(db: Db, suffix: str) -> list[tuple[str, str]]:
    """(parent, partition) of the monthly tables' partitions whose names end as ``suffix``."""
    rows = await db.fetch(
        "SELECT p.relname AS parent, c.relname AS part FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
        " WHERE p.relname = ANY($1::text[]) AND p.relnamespace = c.relnamespace"
        " AND pg_table_is_visible(c.oid) AND c.relname ~ $2"
        " ORDER BY c.relname", list(MONTHLY), suffix)
    return [(r["parent"], r["part"]) for r in rows]


async def partitions(db: Db) -> list[tuple[str, str, dt.date]]:
    """(parent, partition, first day of its UTC month) of every month partition."""
    found = []
    for parent, part in await _leaves(db, "_[0-9]{4}_[0-9]{2}$"):
        year, month = part[-7:].split("_")
        found.append((parent, part, dt.date(int(year), int(month), 1)))
    return found


async def day_partitions(db: Db) -> list[tuple[str, str, dt.date]]:
    """(parent, partition, its UTC day) of every day partition: the open months' (migration
    1550), and a closed month's until it is folded."""
    found = []
    for parent, part in await _leaves(db, "_[0-9]{4}_[0-9]{2}_[0-9]{2}$"):
        year, month, day = part[-10:].split("_")
        found.append((parent, part, dt.date(int(year), int(month), int(day))))
    return found


async def split_month(db: Db, parent: str, month: dt.date) -> bool:
    """The month's empty table made ahead replaced by its days (False: it holds records,
    or is days already)."""
    done: bool = await db.fetchval("SELECT split_month_partition($1::regclass, $2)",
                                   parent, month)
    return done


async def fold_month(db: Db, parent: str, month: dt.date) -> int | None:
    """The month's days folded into one table: the records moved (None: not days). Raises
    ``asyncpg.LockNotAvailableError`` when a writer would have waited on it."""
    moved: int | None = await db.fetchval("SELECT fold_month_partition($1::regclass, $2)",
                                          parent, month)
    return moved


async def estimated_rows(db: Db, partition: str) -> int:
    """The planner's row estimate (0 before the first ANALYZE): no scan."""
    n: int = await db.fetchval("SELECT greatest(reltuples, 0)::bigint FROM pg_class"
                               " WHERE oid = $1::regclass", quote(partition))
    return n


async def count_rows(db: Db, partition: str) -> int:
    n: int = await db.fetchval(f"SELECT count(*) FROM {quote(partition)}")
    return n


async def columns(db: Db, partition: str) -> list[str]:
    rows = await db.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum", quote(partition))
    return [r["attname"] for r in rows]


# --- what holds a month ----------------------------------------------------------------------

async def holds(db: Db, start: dt.datetime, end: dt.datetime,
                partition: str | None) -> dict[str, int]:
    """How many of each thing still needing the month [start, end) there are; the
    charges partition (if any) is read for charges on no invoice line."""
    counts: dict[str, int] = dict(await db.fetchrow(
        "SELECT"
        " (SELECT count(*) FROM invoices WHERE status = 'draft'"
        "   AND period_start < $2 AND period_end > $1) AS draft_invoices,"
        " (SELECT count(*) FROM invoices i JOIN ledger_entries e ON e.account_id = i.account_id"
        "   AND e.kind = 'invoice' AND e.invoice_id = i.invoice_id"
        "   WHERE i.status = 'finalised' AND i.period_start < $2 AND i.period_end > $1"
        "   AND collections_item_open(e.account_id, e.entry_id) > 0) AS unpaid_invoices,"
        " (SELECT count(*) FROM disputes d JOIN invoices i ON i.account_id = d.account_id"
        "   AND i.invoice_id = d.invoice_id WHERE d.closed_on IS NULL"
        "   AND i.period_start < $2 AND i.period_end > $1) AS open_disputes,"
        " (SELECT count(*) FROM suspense WHERE state = 'open'"
        "   AND retention_suspense_time(record, created_at) >= $1"
        "   AND retention_suspense_time(record, created_at) < $2) AS open_suspense,"
        " (SELECT count(*) FROM rerate_jobs WHERE state IN ('queued', 'running')"
        "   AND period_start < $2 AND period_end > $1) AS pending_rerates",
        start, end) or {})
    counts["uninvoiced_charges"] = 0
    if partition is not None:
        counts["uninvoiced_charges"] = await db.fetchval(
            f"SELECT count(*) FROM {quote(partition)} c WHERE NOT EXISTS ("
            " SELECT 1 FROM invoice_line_charges l JOIN invoices i"
            " ON i.account_id = l.account_id AND i.invoice_id = l.invoice_id"
            " WHERE l.account_id = c.account_id AND l.charge_id = c.charge_id"
            " AND i.status = 'finalised')")
    return counts


# --- pseudonymisation ------------------------------------------------------------------------

def _pseudonym_sql(column: str) -> str:
    """HMAC-SHA256 written with sha256(): H((K ⊕ opad) ‖ H((K ⊕ ipad) ‖ m)), the padded keys
    given as $1 and $2, so the numbers never leave the database to be hashed."""
    return (f"CASE WHEN {column} IS NULL OR {column} LIKE '{PSEUDONYM_PREFIX}%' THEN {column}"
            f" ELSE '{PSEUDONYM_PREFIX}' || encode(sha256($2::bytea || sha256($1::bytea"
            f" || retention_utf8({column}))), 'hex') END")


def clear(alias: str = "") -> str:
    """The condition: a record still holds an identifier in the clear."""
    p = f"{alias}." if alias else ""
    return " OR ".join(f"({p}{c} IS NOT NULL AND {p}{c} NOT LIKE '{PSEUDONYM_PREFIX}%')"
                       for c in IDENTIFIERS)


CLEAR = clear()


def disputed(alias: str) -> str:
    """The condition: the record falls in the period of an invoice of its account under an
    open dispute. Its numbers stay until the dispute closes: the bill is being challenged,
    and the customer and the operator need the itemised calls to settle it."""
    return ("EXISTS (SELECT 1 FROM disputes d JOIN invoices i ON i.account_id = d.account_id"
            " AND i.invoice_id = d.invoice_id WHERE d.closed_on IS NULL"
            f" AND d.account_id = {alias}.account_id AND {alias}.event_time >= i.period_start"
            f" AND {alias}.event_time < i.period_end)")


def pseudonymised(alias: str = "") -> str:
    """The condition: a record holds a pseudonym (it can no longer be rated again)."""
    p = f"{alias}." if alias else ""
    return "(" + " OR ".join(f"coalesce({p}{c} LIKE '{PSEUDONYM_PREFIX}%', false)"
                             for c in IDENTIFIERS) + ")"


async def blocks(db: Db, partition: str) -> int:
    """The partition's size in pages now (pseudonymisation walks it a range at a time). On a
    Citus coordinator the partition holds nothing itself and each of its shards is walked by
    the same page ranges: the largest shard's size."""
    if await is_citus(db):
        shards: int = await db.fetchval(
            "SELECT coalesce(max(result::bigint), 0) FROM run_command_on_shards($1, $$SELECT"
            " pg_relation_size('%s') / current_setting('block_size')::int$$) WHERE success",
            quote(partition))
        return shards
    n: int = await db.fetchval(
        "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int",
        quote(partition))
    return n


async def pseudonymise_range(conn: Connection, partition: str, before: dt.datetime,
                             inner: bytes, outer: bytes, first: int, last: int) -> int:
    """Replace the identifiers of the records in pages [first, last) of ``partition`` that
    happened before ``before`` and still hold one in the clear; how many were changed. A
    TID range scan reads only those pages, so each batch costs its own pages, however much
    of the partition earlier batches already did."""
    sets = ", ".join(f"{c} = {_pseudonym_sql(c)}" for c in IDENTIFIERS)
    status: str = await conn.execute(
        f"UPDATE {quote(partition)} u SET {sets}"
        f" WHERE ctid >= format('(%s,0)', $4::bigint)::tid"
        f" AND ctid < format('(%s,0)', $5::bigint)::tid"
        f" AND event_time < $3 AND ({CLEAR}) AND NOT {disputed('u')}",
        inner, outer, before, first, last)
    return int(status.split()[-1])


async def clear_records(db: Db, before: dt.datetime) -> int:
    """Records before ``before`` still to pseudonymise (disputed ones wait)."""
    n: int = await db.fetchval(
        f"SELECT count(*) FROM usage_records u WHERE event_time < $1 AND ({CLEAR})"
        f" AND NOT {disputed('u')}", before)
    return n


# --- archives --------------------------------------------------------------------------------

async def lock_archiving(conn: Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", ARCHIVE_LOCK)


async def lock_for_archive(conn: Connection, partitions: list[str]) -> None:
    """Writers wait (readers do not) while a month is exported, so what is dropped is what
    the files hold."""
    for name in partitions:
        await conn.execute(f"LOCK TABLE {quote(name)} IN EXCLUSIVE MODE")


async def export_csv(conn: Connection, partition: str,
                     output: Callable[[bytes], Coroutine[Any, Any, None]]) -> int:
    """COPY the partition out as CSV with a header row; the rows written. Copied as a query:
    Citus counts the header row in the status of a table's COPY, not in a query's."""
    status: str = await conn.copy_from_query(f"SELECT * FROM {quote(partition)}",
                                             output=output, format="csv", header=True)
    return int(status.split()[-1])


async def source_files_of(conn: Connection, partition: str) -> list[int]:
    rows = await conn.fetch(f"SELECT DISTINCT source_file_id FROM {quote(partition)}"
                            " WHERE source_file_id IS NOT NULL ORDER BY 1")
    return [r[0] for r in rows]


async def detach_and_drop(conn: Connection, parent: str, partition: str,
                          lock_timeout_ms: int) -> int:
    """Drop one partition; the rows it held when it went. Detaching locks the whole parent:
    waiting behind a long query would stall every writer queued behind this, so the wait is
    bounded (the transaction fails and nothing is dropped)."""
    rows = await count_rows(conn, partition)
    await conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
    await conn.execute(f"ALTER TABLE {quote(parent)} DETACH PARTITION {quote(partition)}")
    await conn.execute(f"DROP TABLE {quote(partition)}")
    return rows


async def insert_archive(conn: Connection, month: dt.date, directory: str,
                         manifest_sha256: str, manifest: dict[str, Any],
                         tables: list[dict[str, Any]], source_files: list[int],
                         at: dt.datetime) -> int:
    archive_id: int = await conn.fetchval(
        "INSERT INTO retention_archives (month, directory, manifest_sha256, manifest, state,"
        " created_at) VALUES ($1, $2, $3, $4::jsonb, 'dropped', $5) RETURNING archive_id",
        month, directory, manifest_sha256, json.dumps(manifest), at)
    await conn.executemany(
        "INSERT INTO retention_archive_tables (archive_id, table_name, partition, file, rows,"
        " sha256, dropped_rows) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(archive_id, t["table"], t["partition"], t["file"], t["rows"], t["sha256"],
          t["dropped_rows"]) for t in tables])
    await conn.execute(
        "INSERT INTO retention_archived_files (source_file_id, month)"
        " SELECT unnest($1::bigint[]), $2 ON CONFLICT DO NOTHING", source_files, month)
    return archive_id


async def archives(db: Db, month: dt.date | None = None) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT a.archive_id, a.month, a.directory, a.manifest_sha256, a.state, a.created_at,"
        " a.restored_at, coalesce(json_agg(json_build_object('table', t.table_name,"
        "  'partition', t.partition, 'file', t.file, 'rows', t.rows, 'sha256', t.sha256,"
        "  'dropped_rows', t.dropped_rows) ORDER BY t.table_name)"
        "  FILTER (WHERE t.table_name IS NOT NULL), '[]')::text AS tables"
        " FROM retention_archives a LEFT JOIN retention_archive_tables t USING (archive_id)"
        " WHERE $1::date IS NULL OR a.month = $1 GROUP BY a.archive_id ORDER BY a.archive_id",
        month)


async def copy_into(conn: Connection, partition: str, columns: list[str],
                    source: AsyncIterable[bytes]) -> int:
    """COPY CSV rows (header first) into the partition itself: the statement trigger of its
    parent (the analytics rollups, which kept the archived month) does not fire."""
    status: str = await conn.copy_to_table(partition, source=source, columns=columns,
                                           format="csv", header=True)
    return int(status.split()[-1])


async def mark_restored(conn: Connection, archive_id: int, month: dt.date,
                        at: dt.datetime) -> None:
    await conn.execute("UPDATE retention_archives SET state = 'restored', restored_at = $2"
                       " WHERE archive_id = $1", archive_id, at)
    await conn.execute("DELETE FROM retention_archived_files WHERE month = $1", month)
