"""Lists of issued documents (invoices, credit notes) as the API and the CLI page them, and
the lookup of a document by its printed number."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from billing_oss.server.store.pool import Connection


async def invoice_page(pool: asyncpg.Pool, *, account_id: str | None, status: str | None,
                       period: str | None, after: int | None, limit: int) -> list[Any]:
    return list(await pool.fetch(
        "SELECT invoice_id, account_id, status, number_text, period, currency, payable_micros "
        "FROM invoices WHERE ($1::text IS NULL OR account_id = $1) "
        "AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR period = $3) "
        "AND ($4::bigint IS NULL OR invoice_id > $4) ORDER BY invoice_id LIMIT $5",
        account_id, status, period, after, limit))


async def invoice_list(pool: asyncpg.Pool, *, account_id: str | None, status: str | None,
                       period: str | None, limit: int) -> list[Any]:
    return list(await pool.fetch(
        "SELECT invoice_id, account_id, status, number_text, period, currency,"
        " payable_micros, issue_date, due_date FROM invoices"
        " WHERE ($1::text IS NULL OR account_id = $1)"
        " AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR period = $3)"
        " ORDER BY invoice_id LIMIT $4",
        account_id, status, period, limit))


async def finalised_page(conn: Connection, *, period: str, account_id: str | None,
                         after: int | None, limit: int) -> list[int]:
    """The next ``limit`` finalised invoices of ``period`` after ``after``, by id."""
    return [r["invoice_id"] for r in await conn.fetch(
        "SELECT invoice_id FROM invoices WHERE period = $1 AND status = 'finalised'"
        " AND ($2::text IS NULL OR account_id = $2)"
        " AND ($3::bigint IS NULL OR invoice_id > $3) ORDER BY invoice_id LIMIT $4",
        period, account_id, after, limit)]


async def count_by_status(conn: Connection, *, period: str, account_id: str | None
                          ) -> dict[str, int]:
    """How many invoices of ``period`` are drafts and how many finalised."""
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM invoices WHERE period = $1"
        " AND ($2::text IS NULL OR account_id = $2) GROUP BY status", period, account_id)
    return {r["status"]: int(r["n"]) for r in rows}


async def credit_note_page(pool: asyncpg.Pool, *, account_id: str | None,
                           invoice_id: int | None, after: int | None, limit: int) -> list[Any]:
    return list(await pool.fetch(
        "SELECT c.credit_note_id, c.account_id, c.invoice_id, i.number_text AS invoice_number,"
        " c.number_text, c.issue_date, c.currency, c.total_micros,"
        " c.rounding_micros FROM credit_notes c"
        " JOIN invoices i USING (account_id, invoice_id)"
        " WHERE ($1::text IS NULL OR c.account_id = $1)"
        " AND ($2::bigint IS NULL OR c.invoice_id = $2)"
        " AND ($3::bigint IS NULL OR c.credit_note_id > $3)"
        " ORDER BY c.credit_note_id LIMIT $4",
        account_id, invoice_id, after, limit))


async def id_by_number(conn: Connection, table: str, id_column: str, series: str,
                       number: int) -> int | None:
    """The id of the document ``table`` numbers ``<series>-<number>``, if any."""
    found: int | None = await conn.fetchval(
        f"SELECT {id_column} FROM {table} WHERE series = $1 AND number = $2", series, number)
    return found


async def account_and_id(conn: Connection, table: str, id_column: str, given: str
                         ) -> asyncpg.Record | None:
    """The account and id of the document ``table`` knows by id or printed number ``given``."""
    return await conn.fetchrow(
        f"SELECT account_id, {id_column} AS id FROM {table}"
        f" WHERE {id_column}::text = $1 OR number_text = $1", given)


# Finalising and crediting (``server.billing.issuing``), inside the caller's transaction.

async def take_numbers(conn: Connection, series: str, count: int) -> int:
    """The first of ``count`` consecutive numbers of ``series``; call inside a transaction."""
    await conn.execute("INSERT INTO document_series (series) VALUES ($1) "
                       "ON CONFLICT (series) DO NOTHING", series)
    first: int = await conn.fetchval(
        "UPDATE document_series SET next_number = next_number + $2 WHERE series = $1 "
        "RETURNING next_number - $2", series, count)
    return first


async def lock_invoices(conn: Connection, invoice_ids: list[int]) -> list[Any]:
    # lock_invoices (migration 1351): Citus refuses FOR UPDATE on a distributed table
    # without the distribution column.
    return list(await conn.fetch(
        "SELECT account_id, invoice_id, status FROM lock_invoices($1)", invoice_ids))


async def mark_finalised(conn: Connection, series: str, issue_date: dt.date, due_date: dt.date,
                         accounts: list[str], invoice_ids: list[int], numbers: list[int],
                         texts: list[str]) -> list[Any]:
    return list(await conn.fetch(
        "UPDATE invoices i SET status = 'finalised', series = $1, number = n.number, "
        "number_text = n.text, issue_date = $2, due_date = $3, finalised_at = now(), "
        "updated_at = now() FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::text[]) "
        "AS n(account_id, invoice_id, number, text) "
        "WHERE i.account_id = n.account_id AND i.invoice_id = n.invoice_id "
        "RETURNING i.account_id, i.invoice_id, i.number_text, i.currency, i.payable_micros, "
        "i.issue_date, i.due_date",
        series, issue_date, due_date, accounts, invoice_ids, numbers, texts))


async def drafts_of_period(conn: Connection, period: str, accounts: list[str] | None
                           ) -> list[Any]:
    return list(await conn.fetch(
        "SELECT invoice_id, period_end FROM invoices WHERE period = $1 AND status = 'draft' "
        "AND ($2::text[] IS NULL OR account_id = ANY($2)) ORDER BY invoice_id",
        period, accounts))


async def invoice_rows(conn: Connection, invoice_id: int
                       ) -> tuple[Any, list[Any], list[Any], list[Any], int] | None:
    """An invoice's head, lines, allowances, taxes and what its credit notes took off."""
    head = await conn.fetchrow("SELECT * FROM invoices WHERE invoice_id = $1", invoice_id)
    if head is None:
        return None
    key = (head["account_id"], invoice_id)
    lines = await conn.fetch("SELECT * FROM invoice_lines WHERE account_id = $1 "
                             "AND invoice_id = $2 ORDER BY line_no", *key)
    allowances = await conn.fetch("SELECT * FROM invoice_allowances WHERE account_id = $1 "
                                  "AND invoice_id = $2 ORDER BY seq", *key)
    taxes = await conn.fetch("SELECT * FROM taxes WHERE account_id = $1 AND invoice_id = $2 "
                             "ORDER BY category, rate", *key)
    credited = await conn.fetchval("SELECT coalesce(sum(total_micros + rounding_micros), 0) "
                                   "FROM credit_notes "
                                   "WHERE account_id = $1 AND invoice_id = $2", *key)
    return head, list(lines), list(allowances), list(taxes), int(credited)


async def lock_invoice(conn: Connection, invoice_id: int) -> Any:
    return await conn.fetchrow("SELECT account_id, status FROM lock_invoices($1)",
                               [invoice_id])


async def credits_of(conn: Connection, account_id: str, invoice_id: int) -> list[Any]:
    """The credit notes an invoice has had: their lines, taxes and rounding."""
    return list(await conn.fetch("SELECT lines, taxes, rounding_micros FROM credit_notes "
                                 "WHERE account_id = $1 AND invoice_id = $2",
                                 account_id, invoice_id))


async def insert_credit_note(conn: Connection, account_id: str, invoice_id: int, series: str,
                             number: int, text: str, reason: str, issue_date: dt.date,
                             currency: str, net: int, tax: int, total: int, lines: str,
                             taxes: str, rounding: int) -> int:
    credit_id: int = await conn.fetchval(
        "INSERT INTO credit_notes (account_id, invoice_id, series, number, number_text, "
        "reason, issue_date, currency, net_micros, tax_micros, total_micros, lines, taxes, "
        "rounding_micros) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
        "RETURNING credit_note_id",
        account_id, invoice_id, series, number, text, reason, issue_date, currency, net, tax,
        total, lines, taxes, rounding)
    return credit_id


async def credit_note_row(conn: Connection, credit_note_id: int) -> Any:
    return await conn.fetchrow(
        "SELECT c.*, i.number_text AS invoice_number FROM credit_notes c JOIN invoices i "
        "USING (account_id, invoice_id) WHERE c.credit_note_id = $1", credit_note_id)
