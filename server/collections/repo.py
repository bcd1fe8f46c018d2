"""Every SQL statement of the collections package (asyncpg, parameterised).

Writers run inside the caller's transaction after ``lock`` has serialised the account's
receivables; readers take a connection or a pool. Every writer of ledger entries or
allocations appends their moves to the kept aging (``aging_kept_repo``) in that transaction,
and every writer of ledger entries their journal to the kept days (``journal_days_repo``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple, TypeAlias

import asyncpg

from billing_oss.server.collections import aging_kept_repo, journal_days_repo
from billing_oss.server.collections.model import Allocation, Entry, Mandate, Payment
from billing_oss.server.store.pool import Connection

Db: TypeAlias = "Connection | asyncpg.Pool"

_PAYMENT = (
    "SELECT p.account_id, p.payment_id, p.amount_micros, p.currency, p.received_on, p.method,"
    " p.reference, p.source, p.external_id, p.created_at,"
    " coalesce((SELECT sum(a.amount_micros) FROM payment_allocations a"
    "   WHERE a.account_id = p.account_id AND a.payment_id = p.payment_id), 0)"
    "   AS allocated_micros,"
    " coalesce((SELECT sum(e.amount_micros) FROM ledger_entries e WHERE e.kind = 'refund'"
    "   AND e.account_id = p.account_id AND e.payment_id = p.payment_id), 0)"
    "   AS refunded_micros,"
    " coalesce((SELECT sum(e.amount_micros) FROM ledger_entries e WHERE e.kind = 'reversal'"
    "   AND e.account_id = p.account_id AND e.payment_id = p.payment_id), 0)"
    "   AS reversed_micros"
    " FROM payments p"
)


# One account's payments: every table filtered by the account itself (the same rows as
# ``_PAYMENT`` with ``p.account_id = $1``), which on Citus routes the query to its shard.
_ACCOUNT_PAYMENT = (_PAYMENT.replace("a.account_id = p.account_id", "a.account_id = $1")
                    .replace("e.account_id = p.account_id", "e.account_id = $1")
                    + " WHERE p.account_id = $1")


async def lock(conn: Connection, account_id: str) -> None:
    await conn.execute("SELECT collections_lock($1)", account_id)


async def account(db: Db, account_id: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT account_id, currency, status, attrs FROM accounts"
                             " WHERE account_id = $1", account_id)


async def payment(db: Db, payment_id: int, *, with_allocations: bool = True) -> Payment | None:
    row = await db.fetchrow(_PAYMENT + " WHERE p.payment_id = $1", payment_id)
    if row is None:
        return None
    allocations = await _allocations(db, row["account_id"], payment_id) \
        if with_allocations else ()
    return _payment(row, allocations)


async def payment_by_external(db: Db, account_id: str, source: str,
                              external_id: str) -> Payment | None:
    payment_id = await db.fetchval(
        "SELECT payment_id FROM payments WHERE account_id = $1 AND source = $2"
        " AND external_id = $3", account_id, source, external_id)
    return None if payment_id is None else await payment(db, payment_id)


async def payments(db: Db, account_id: str | None, after: int | None,
                   limit: int) -> list[Payment]:
    """Payments in id order after ``after`` (limit + 1 rows: the caller pages)."""
    # One account's filter is written out, not folded into an OR: on Citus it is what
    # routes the query to that account's shard.
    rows = await db.fetch(
        (_ACCOUNT_PAYMENT if account_id is not None else _PAYMENT + " WHERE $1::text IS NULL")
        + " AND ($2::bigint IS NULL OR p.payment_id > $2) ORDER BY p.payment_id LIMIT $3",
        account_id, after, limit + 1)
    return [_payment(r, ()) for r in rows]


async def insert_payment(conn: Connection, *, account_id: str, amount_micros: int,
                         currency: str, received_on: dt.date, method: str,
                         reference: str | None, source: str, external_id: str | None,
                         description: str) -> int:
    payment_id: int = await conn.fetchval(
        "INSERT INTO payments (account_id, amount_micros, currency, received_on, method,"
        " reference, source, external_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " RETURNING payment_id",
        account_id, amount_micros, currency, received_on, method, reference, source,
        external_id)
    entry_id: int = await conn.fetchval(
        "INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date,"
        " payment_id, description) VALUES ($1, 'payment', $2, $3, $4, $5, $6)"
        " RETURNING entry_id",
        account_id, currency, -amount_micros, received_on, payment_id, description)
    await aging_kept_repo.write(
        conn, [aging_kept_repo.credit(account_id, currency, received_on, -amount_micros)])
    await journal_days_repo.write(conn, [account_id], [entry_id])
    return payment_id


async def insert_entry(conn: Connection, *, account_id: str, kind: str, currency: str,
                       amount_micros: int, entry_date: dt.date, payment_id: int | None = None,
                       applies_to: int | None = None, due_date: dt.date | None = None,
                       invoice_id: int | None = None, description: str = "",
                       reason: str | None = None) -> int:
    entry_id: int = await conn.fetchval(
        "INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date,"
        " due_date, applies_to, invoice_id, payment_id, description, reason)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING entry_id",
        account_id, kind, currency, amount_micros, entry_date, due_date, applies_to,
        invoice_id, payment_id, description, reason)
    await aging_kept_repo.write_entry(conn, account_id, entry_id)
    await journal_days_repo.write(conn, [account_id], [entry_id])
    return entry_id


async def invoice_item(conn: Connection, account_id: str,
                       invoice_id: int) -> asyncpg.Record | None:
    """The ledger item of a finalised invoice with its open amount now."""
    return await conn.fetchrow(
        "SELECT e.entry_id, e.entry_date, e.currency,"
        " collections_item_open(e.account_id, e.entry_id) AS open_micros,"
        " collections_item_released_on(e.account_id, e.entry_id) AS released_on"
        " FROM ledger_entries e WHERE e.account_id = $1 AND e.kind = 'invoice'"
        " AND e.invoice_id = $2", account_id, invoice_id)


async def post_invoices(conn: Connection, rows: list[tuple[str, int, str, str, int, dt.date,
                                                          dt.date | None]]) -> None:
    """One ``invoice`` entry per (account, invoice id, number text, currency, payable,
    issue date, due date), in the order given, due on its due date (its issue date if none)."""
    written = await conn.fetch(
        "INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date,"
        " due_date, invoice_id, description)"
        " SELECT n.account_id, 'invoice', n.currency, n.payable, n.issued,"
        " coalesce(n.due, n.issued), n.invoice_id, 'Invoice ' || n.number_text"
        " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],"
        " $6::date[], $7::date[]) WITH ORDINALITY"
        " AS n(account_id, invoice_id, number_text, currency, payable, issued, due, ord)"
        " ORDER BY n.ord RETURNING account_id, entry_id",
        *([r[i] for r in rows] for i in range(7)))
    await journal_days_repo.write(conn, [r["account_id"] for r in written],
                                  [r["entry_id"] for r in written])
    await aging_kept_repo.write(conn, [
        aging_kept_repo.item(account, currency, due or issued, issued, payable)
        for account, _, _, currency, payable, issued, due in rows])


async def holding_credit(conn: Connection, accounts: list[str]) -> set[tuple[str, str]]:
    """The (account, currency) pairs of these accounts with payment money unapplied now."""
    # The subqueries are ``collections_payment_unapplied`` written out, filtered by the
    # payment's account: on Citus every one is pushed down to the account's shard.
    rows = await conn.fetch(
        "SELECT DISTINCT p.account_id, p.currency FROM payments p"
        " WHERE p.account_id = ANY($1) AND p.amount_micros"
        " - coalesce((SELECT sum(a.amount_micros) FROM payment_allocations a"
        "   WHERE a.account_id = p.account_id AND a.payment_id = p.payment_id), 0)"
        " - coalesce((SELECT sum(e.amount_micros) FROM ledger_entries e"
        "   WHERE e.account_id = p.account_id AND e.payment_id = p.payment_id"
        "   AND e.kind IN ('refund', 'reversal')), 0) > 0", accounts)
    return {(r["account_id"], r["currency"].strip()) for r in rows}


async def post_credit_note(conn: Connection, account_id: str, invoice_id: int,
                           credit_note_id: int, number_text: str, currency: str,
                           amount_micros: int, issued: dt.date) -> int | None:
    """The ``credit_note`` entry reducing the invoice's item by ``amount_micros``, dated
    when both existed; None (nothing written) when the invoice has no ledger item. The
    caller holds the account's collections lock."""
    row = await conn.fetchrow(
        "INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date,"
        " applies_to, invoice_id, credit_note_id, description)"
        " SELECT e.account_id, 'credit_note', $4, -$5::bigint, greatest($6, e.entry_date),"
        " e.entry_id, e.invoice_id, $3, 'Credit note ' || $7::text FROM ledger_entries e"
        " WHERE e.account_id = $1 AND e.kind = 'invoice' AND e.invoice_id = $2"
        " RETURNING entry_id, applies_to",
        account_id, invoice_id, credit_note_id, currency, amount_micros, issued, number_text)
    if row is None:
        return None
    await aging_kept_repo.write_entry(conn, account_id, row["entry_id"])
    await journal_days_repo.write(conn, [account_id], [row["entry_id"]])
    item: int = row["applies_to"]
    return item


async def release_excess(conn: Connection, account_id: str, entry_id: int,
                         on: dt.date) -> None:
    """Release the item's allocations (newest first) until its open amount is ≥ 0 (a
    write-off of the item reversed first: ``collections_release_excess`` keeps the aging
    and the journal's days of the entry it writes)."""
    await conn.execute("SELECT collections_release_excess($1, $2, $3)", account_id, entry_id, on)


async def invoice_account(db: Db, invoice_id: int) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT account_id, status FROM invoices WHERE invoice_id = $1",
                             invoice_id)


async def allocate(conn: Connection, account_id: str, payment_id: int, entry_id: int,
                   amount_micros: int, allocated_on: dt.date) -> None:
    await conn.execute(
        "INSERT INTO payment_allocations (account_id, payment_id, entry_id, amount_micros,"
        " allocated_on) VALUES ($1, $2, $3, $4, $5)",
        account_id, payment_id, entry_id, amount_micros, allocated_on)
    await aging_kept_repo.write_allocation(conn, account_id, entry_id, amount_micros, allocated_on)


async def last_release(conn: Connection, account_id: str, payment_id: int) -> dt.date | None:
    day: dt.date | None = await conn.fetchval(
        "SELECT max(allocated_on) FROM payment_allocations WHERE account_id = $1"
        " AND payment_id = $2 AND amount_micros < 0", account_id, payment_id)
    return day


async def settle(conn: Connection, account_id: str, currency: str,
                 payment_id: int | None = None) -> int:
    """Allocate unapplied money to open items oldest first (one payment's, or all)."""
    total: int = await conn.fetchval("SELECT collections_settle($1, $2, $3)",
                                     account_id, currency, payment_id)
    return total


async def release(conn: Connection, account_id: str, payment_id: int, amount_micros: int | None,
                  on: dt.date) -> int:
    """Release the payment's allocations, newest first, for ``amount_micros`` (None: all).
    Each release is dated ``on`` or the allocation's own date if later. Returns how much."""
    rows = await conn.fetch(
        "SELECT entry_id, sum(amount_micros)::bigint AS net, max(allocated_on) AS last_on"
        " FROM payment_allocations WHERE account_id = $1 AND payment_id = $2"
        " GROUP BY entry_id HAVING sum(amount_micros) > 0 ORDER BY max(allocation_id) DESC",
        account_id, payment_id)
    left = sum(r["net"] for r in rows) if amount_micros is None else amount_micros
    released = 0
    for r in rows:
        if left <= 0:
            break
        take = min(left, r["net"])
        await allocate(conn, account_id, payment_id, r["entry_id"], -take,
                       max(on, r["last_on"]))
        left -= take
        released += take
    return released


async def _allocations(db: Db, account_id: str, payment_id: int) -> tuple[Allocation, ...]:
    rows = await db.fetch(
        "SELECT a.entry_id, e.invoice_id, e.kind, sum(a.amount_micros) AS amount_micros"
        " FROM payment_allocations a JOIN ledger_entries e"
        "   ON e.account_id = a.account_id AND e.entry_id = a.entry_id"
        " WHERE a.account_id = $1 AND a.payment_id = $2"
        " GROUP BY a.entry_id, e.invoice_id, e.kind HAVING sum(a.amount_micros) <> 0"
        " ORDER BY a.entry_id", account_id, payment_id)
    return tuple(Allocation(entry_id=r["entry_id"], invoice_id=r["invoice_id"], kind=r["kind"],
                            amount_micros=int(r["amount_micros"])) for r in rows)


def _payment(row: Any, allocations: tuple[Allocation, ...]) -> Payment:
    return Payment(
        account_id=row["account_id"], payment_id=row["payment_id"],
        amount_micros=row["amount_micros"], currency=row["currency"].strip(),
        received_on=row["received_on"], method=row["method"], reference=row["reference"],
        source=row["source"], external_id=row["external_id"], created_at=row["created_at"],
        allocated_micros=int(row["allocated_micros"]),
        refunded_micros=int(row["refunded_micros"]),
        reversed_micros=int(row["reversed_micros"]), allocations=allocations)


# --- reading the ledger -------------------------------------------------------------------

# Aging is linear in the ledger: an item counts its amount in the bucket of its days past
# due, what was applied to it (credit notes, write-offs) there too, and each allocation to
# it leaves that bucket for the credit column, where payments, refunds and reversals count.
# So no item's open amount is formed: the entries and allocations up to the date are summed
# straight into (currency, bucket), each allocation and applied entry finding its item's
# bucket by one hash join on the items, and the total of buckets and credit is the ledger
# balance by construction (an allocation counts on both sides).
_AGING = """
WITH items AS (
    SELECT account_id, entry_id, currency, width_bucket($1 - due_date, $2::int[]) AS bucket
    FROM ledger_entries WHERE due_date IS NOT NULL AND entry_date <= $1 {filter}
), moves AS (
    SELECT {key} currency,
           CASE WHEN due_date IS NULL THEN -1
                ELSE width_bucket($1 - due_date, $2::int[]) END AS bucket,
           amount_micros AS open, 0::bigint AS credit
    FROM ledger_entries
    WHERE kind IN ('invoice', 'fee', 'payment', 'refund', 'reversal') AND entry_date <= $1
      {filter}
    UNION ALL
    SELECT {item_key} i.currency, i.bucket, m.amount, m.credit
    FROM (SELECT account_id, applies_to AS entry_id, amount_micros AS amount,
                 0::bigint AS credit
          FROM ledger_entries
          WHERE applies_to IS NOT NULL AND entry_date <= $1 {filter}
          UNION ALL
          SELECT account_id, entry_id, -amount_micros, amount_micros
          FROM payment_allocations WHERE allocated_on <= $1 {filter}) m
    JOIN items i ON i.account_id = m.account_id AND i.entry_id = m.entry_id
)
SELECT {key} currency, bucket, sum(open)::bigint AS amount, sum(credit)::bigint AS credit
FROM moves GROUP BY {key} currency, bucket
"""


async def aging(db: Db, as_of: dt.date, thresholds: list[int], *, per_account: bool,
                account_id: str | None = None) -> list[asyncpg.Record]:
    """(account_id?, currency, bucket, amount, credit) rows: ``amount`` is what the bucket
    holds (bucket -1: payment money, ≤ 0), 0 current, i the i-th band past due; ``credit``
    is what the bucket's items were allocated, which is payment money applied (the money
    not applied is bucket -1's amount plus every bucket's credit)."""
    args: list[Any] = [as_of, thresholds]
    plain = ""
    if account_id is not None:
        args.append(account_id)
        plain = "AND account_id = $3"
    sql = _AGING.format(filter=plain, key="account_id," if per_account else "",
                        item_key="i.account_id," if per_account else "")
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _read_in_memory(conn, sql, args)
    return await _read_in_memory(db, sql, args)


async def _read_in_memory(conn: Connection, sql: str, args: list[Any]) -> list[asyncpg.Record]:
    async with conn.transaction():
        await tune_for_ledger_scans(conn)
        return await conn.fetch(sql, *args)


async def without_jit(conn: Connection) -> None:
    """No JIT for the rest of the transaction: a bank file's batch probes indexes a few
    thousand times, which the planner costs like scans, and compiling them took a second per
    batch that the probes never needed."""
    await conn.execute("SET LOCAL jit = off")


async def tune_for_ledger_scans(conn: Connection) -> None:
    """For the rest of the transaction: room to hash a million ledger items in memory, and
    no JIT, whose compiling cost more than a second per query over the ledger and saved less
    (aging, a dunning run)."""
    await conn.execute("SET LOCAL work_mem = '128MB'; SET LOCAL jit = off")


async def balance(db: Db, as_of: dt.date, account_id: str | None = None) -> dict[str, int]:
    """The ledger balance per currency as of a date (everyone's, or one account's)."""
    rows = await db.fetch(
        "SELECT currency, sum(amount_micros)::bigint AS amount FROM ledger_entries"
        " WHERE entry_date <= $1 AND "
        + ("account_id = $2" if account_id is not None else "$2::text IS NULL")
        + " GROUP BY currency", as_of, account_id)
    return {r["currency"].strip(): int(r["amount"]) for r in rows}


async def statement(db: Db, account_id: str, start: dt.date,
                    end: dt.date) -> tuple[dict[str, int], list[Entry]]:
    """Opening balance per currency before ``start`` and the entries of [start, end] with
    the running balance after each."""
    opening_rows = await db.fetch(
        "SELECT currency, sum(amount_micros)::bigint AS amount FROM ledger_entries"
        " WHERE account_id = $1 AND entry_date < $2 GROUP BY currency", account_id, start)
    opening = {r["currency"].strip(): int(r["amount"]) for r in opening_rows}
    rows = await db.fetch(
        "SELECT entry_id, kind, currency, amount_micros, entry_date, due_date, invoice_id,"
        " payment_id, description, reason FROM ledger_entries WHERE account_id = $1"
        " AND entry_date BETWEEN $2 AND $3 ORDER BY entry_date, entry_id",
        account_id, start, end)
    running = dict(opening)
    entries = []
    for r in rows:
        currency = r["currency"].strip()
        running[currency] = running.get(currency, 0) + r["amount_micros"]
        entries.append(Entry(**{**dict(r), "currency": currency,
                                "balance_micros": running[currency]}))
    return opening, entries


# --- bank-file imports ----------------------------------------------------------------------

async def lock_statement_accounts(conn: Connection, accounts: list[str]) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('camt:' || a, 0))"
        " FROM (SELECT DISTINCT a FROM unnest($1::text[]) a ORDER BY a) s", accounts)


async def lock_accounts(conn: Connection, accounts: list[str]) -> None:
    await conn.execute("SELECT collections_lock(a) FROM (SELECT DISTINCT a FROM"
                       " unnest($1::text[]) a ORDER BY a) s", accounts)


async def known_bank_entries(conn: Connection, statement_accounts: list[str],
                             keys: list[str]) -> set[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT b.statement_account, b.entry_key FROM bank_entries b"
        " JOIN unnest($1::text[], $2::text[]) AS u(s, k)"
        "   ON b.statement_account = u.s AND b.entry_key = u.k", statement_accounts, keys)
    return {(r["statement_account"], r["entry_key"]) for r in rows}


# Every step is a probe of an index per value (OFFSET 0 keeps each lateral lookup a
# probe): without statistics on the partial expression index, one OR over both ways of
# naming an invoice, or a join on them, was estimated at every invoice, so each batch
# read the whole table with a regexp per row, then the whole ledger to join it.
INVOICES_BY_REFERENCE = (
    "SELECT i.account_id, i.invoice_id, i.number_text, a.currency AS account_currency,"
    " upper(regexp_replace(i.number_text, '[^A-Za-z0-9]', '', 'g')) AS body,"
    " e.entry_id"
    " FROM (SELECT f.* FROM unnest($1::text[]) AS n(v) CROSS JOIN LATERAL"
    "     (SELECT account_id, invoice_id, number_text FROM invoices"
    "      WHERE number_text = n.v OFFSET 0) f"
    "   UNION SELECT f.* FROM unnest($2::text[]) AS b(v) CROSS JOIN LATERAL"
    "     (SELECT account_id, invoice_id, number_text FROM invoices"
    "      WHERE upper(regexp_replace(number_text, '[^A-Za-z0-9]', '', 'g')) = b.v"
    "      AND number_text IS NOT NULL OFFSET 0) f) i"
    " CROSS JOIN LATERAL (SELECT currency FROM accounts"
    "   WHERE account_id = i.account_id OFFSET 0) a"
    " LEFT JOIN LATERAL (SELECT entry_id FROM ledger_entries"
    "   WHERE account_id = i.account_id AND kind = 'invoice' AND invoice_id = i.invoice_id"
    "   OFFSET 0) e ON true")


async def invoices_by_reference(conn: Connection, numbers: list[str],
                                bodies: list[str]) -> list[asyncpg.Record]:
    """Finalised or draft invoices whose number, or its RF body, is among those given, with
    their account's currency and their ledger item (None for a draft)."""
    return await conn.fetch(INVOICES_BY_REFERENCE, numbers, bodies)


class OpenItem(NamedTuple):
    open_micros: int
    since: dt.date  # its own date, or the day an allocation to it was last released if later
    currency: str
    due_date: dt.date
    entry_date: dt.date


async def open_amounts(conn: Connection, accounts: list[str],
                       entry_ids: list[int]) -> dict[int, OpenItem]:
    """Per item: what it owes now, and the day from which it owes that (an allocation is
    never dated before it), with what its allocations' moves need."""
    # collections_item_open's and collections_item_released_on's queries, per item by its
    # indexes, without a call of those PL/pgSQL functions (a query plan) each.
    rows = await conn.fetch(
        "SELECT u.e, e.amount_micros + coalesce(c.amount, 0) - coalesce(a.amount, 0) AS open,"
        " greatest(e.entry_date, a.released_on) AS since, e.currency, e.due_date,"
        " e.entry_date"
        " FROM (SELECT DISTINCT a, e FROM unnest($1::text[], $2::bigint[]) AS u(a, e)) u"
        " JOIN ledger_entries e ON e.account_id = u.a AND e.entry_id = u.e"
        " LEFT JOIN LATERAL (SELECT sum(c.amount_micros) AS amount FROM ledger_entries c"
        "   WHERE c.account_id = u.a AND c.applies_to = u.e) c ON true"
        " LEFT JOIN LATERAL (SELECT sum(p.amount_micros) AS amount, max(p.allocated_on)"
        "   FILTER (WHERE p.amount_micros < 0) AS released_on FROM payment_allocations p"
        "   WHERE p.account_id = u.a AND p.entry_id = u.e) a ON true", accounts, entry_ids)
    return {r["e"]: OpenItem(int(r["open"]), r["since"], r["currency"], r["due_date"],
                             r["entry_date"]) for r in rows}


async def payment_ids(conn: Connection, count: int) -> list[int]:
    """``count`` payment ids drawn from their sequence (``insert_payments`` uses them)."""
    return [r[0] for r in await conn.fetch(
        "SELECT nextval(pg_get_serial_sequence('payments', 'payment_id'))"
        " FROM generate_series(1, $1::int)", count)]


async def insert_payments(conn: Connection, ids: list[int],
                          rows: list[tuple[str, int, str, dt.date, str, str | None, str, str]],
                          allocations: list[tuple[str, int, int, int, dt.date]],
                          items: dict[int, OpenItem]) -> None:
    """Bulk payments ``(account, amount, currency, received_on, method, reference, source,
    external_id)`` under ``ids`` (``payment_ids``) with their ledger entries, and
    ``(account, payment_id, entry_id, amount, allocated_on)`` allocations of them to the
    ``items`` (``open_amounts``)."""
    # Copied in, not inserted from arrays (the rows of a 100,000-entry bank file were a
    # fifth of its import).
    await conn.copy_records_to_table("payments", columns=_PAYMENT_COLUMNS, records=[
        (a, p, m, c, d, method, ref, source, ext)
        for p, (a, m, c, d, method, ref, source, ext) in zip(ids, rows, strict=True)])
    await conn.copy_records_to_table("ledger_entries", columns=_PAYMENT_ENTRY_COLUMNS, records=[
        (a, "payment", c, -m, d, p, "Payment (bank transfer)")
        for p, (a, m, c, d, *_) in sorted(zip(ids, rows, strict=True))])
    if allocations:
        await conn.copy_records_to_table("payment_allocations", records=allocations, columns=[
            "account_id", "payment_id", "entry_id", "amount_micros", "allocated_on"])
    # Written together, a payment allocated on its day nets to zero in credit; the item it
    # paid, dated no later, already tells the account's history from then: no row for it.
    moves = [aging_kept_repo.credit(a, c, d, -m) for a, m, c, d, *_ in rows]
    told = set()
    for a, _, e, m, on in allocations:
        i = items[e]
        moves += aging_kept_repo.allocation(a, i.currency, i.due_date, i.entry_date, on, m)
        told.add((a, i.currency, max(on, i.entry_date)))
    await aging_kept_repo.write(conn, moves, told=told)
    await journal_days_repo.write_payments(conn, [r[0] for r in rows], ids)


_PAYMENT_COLUMNS = ["account_id", "payment_id", "amount_micros", "currency", "received_on",
                    "method", "reference", "source", "external_id"]
_PAYMENT_ENTRY_COLUMNS = ["account_id", "kind", "currency", "amount_micros", "entry_date",
                          "payment_id", "description"]


async def payment_by_reference(conn: Connection, reference: str) -> int | None:
    payment_id: int | None = await conn.fetchval(
        "SELECT payment_id FROM payments WHERE reference = $1 ORDER BY payment_id DESC"
        " LIMIT 1", reference)
    return payment_id


BankRow = tuple[str, str, str, int, str, str | None, bool, int, str, dt.date | None,
                str | None, int | None, int | None, str]


async def insert_bank_entries(conn: Connection, rows: list[BankRow]) -> None:
    """Bulk ``(statement_account, entry_key, file_name, entry_no, status, reason, credit,
    amount, currency, booked_on, account_id, payment_id, invoice_id, remittance)``."""
    if rows:
        await conn.copy_records_to_table("bank_entries", records=rows, columns=[
            "statement_account", "entry_key", "file_name", "entry_no", "status", "reason",
            "credit", "amount_micros", "currency", "booked_on", "account_id", "payment_id",
            "invoice_id", "remittance"])


async def bank_entries(db: Db, status: str | None, after: tuple[str, str] | None,
                       limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT * FROM bank_entries WHERE ($1::text IS NULL OR status = $1)"
        " AND ($2::text IS NULL OR (statement_account, entry_key) > ($2, $3))"
        " ORDER BY statement_account, entry_key LIMIT $4",
        status, after[0] if after else None, after[1] if after else None, limit + 1)


# --- dunning --------------------------------------------------------------------------------

async def ladders(db: Db) -> dict[str, str]:
    rows = await db.fetch("SELECT class, steps::text AS steps FROM dunning_ladders"
                          " ORDER BY class")
    return {r["class"]: r["steps"] for r in rows}


async def put_ladder(conn: Connection, klass: str, steps_json: str) -> str | None:
    before: str | None = await conn.fetchval(
        "SELECT steps::text FROM dunning_ladders WHERE class = $1 FOR UPDATE", klass)
    # The time goes in the VALUES, not the DO UPDATE: Citus refuses a function that is not
    # IMMUTABLE in the DO UPDATE of a distributed (reference) table, and computes VALUES once.
    await conn.execute(
        "INSERT INTO dunning_ladders (class, steps, updated_at) VALUES ($1, $2::jsonb, now())"
        " ON CONFLICT (class) DO UPDATE SET steps = excluded.steps,"
        " updated_at = excluded.updated_at",
        klass, steps_json)
    return before


# The overdue invoices that still owe something are formed first, once (allocations and
# applied entries summed per item, in bigint; a tenth of the invoices at most), and only
# they meet the ladders' steps, unrolled into a handful of (class, step) rows, and the
# steps already taken: a jsonb ladder joined to every invoice, then its steps, was carried
# through every hash of a million invoices.
_DUE_STEPS = """
WITH allocated AS (
    SELECT account_id, entry_id, sum(amount_micros)::bigint AS amount FROM payment_allocations
    WHERE ($2::text IS NULL OR account_id = $2) GROUP BY account_id, entry_id
), applied AS (
    SELECT account_id, applies_to, sum(amount_micros)::bigint AS amount FROM ledger_entries
    WHERE applies_to IS NOT NULL AND ($2::text IS NULL OR account_id = $2)
    GROUP BY account_id, applies_to
), owing AS (
    SELECT e.account_id, e.entry_id, e.invoice_id, e.currency, ($1 - e.due_date) AS days,
           e.amount_micros + coalesce(c.amount, 0) - coalesce(a.amount, 0) AS open,
           coalesce(acc.attrs->>'dunning_class', 'default') AS class
    FROM ledger_entries e
    JOIN accounts acc ON acc.account_id = e.account_id
    LEFT JOIN applied c ON c.account_id = e.account_id AND c.applies_to = e.entry_id
    LEFT JOIN allocated a ON a.account_id = e.account_id AND a.entry_id = e.entry_id
    WHERE e.kind = 'invoice' AND e.due_date < $1 AND acc.status <> 'closed'
      AND ($2::text IS NULL OR e.account_id = $2)
      AND e.amount_micros + coalesce(c.amount, 0) - coalesce(a.amount, 0) > 0
)
SELECT o.account_id, o.entry_id, o.invoice_id, rtrim(o.currency), o.open, o.days,
       s.step_no, s.action, s.fee
FROM owing o
CROSS JOIN LATERAL (
    SELECT s.step_no::int AS step_no, s.step->>'action' AS action, s.step->>'fee' AS fee
    FROM dunning_ladders l
    CROSS JOIN LATERAL jsonb_array_elements(l.steps) WITH ORDINALITY AS s(step, step_no)
    WHERE l.class = o.class AND o.days >= (s.step->>'day')::int OFFSET 0) s
WHERE NOT EXISTS (SELECT 1 FROM disputes d WHERE d.account_id = o.account_id
                  AND d.entry_id = o.entry_id AND d.closed_on IS NULL)
  AND NOT EXISTS (SELECT 1 FROM dunning_events x WHERE x.account_id = o.account_id
                  AND x.entry_id = o.entry_id AND x.step_no = s.step_no)
"""


async def stage_due_steps(conn: Connection, as_of: dt.date, account_id: str | None) -> None:
    """Ladder steps due and not yet taken for every overdue, undisputed invoice, into the
    transaction's temporary table ``dunning_due`` (they stay in the database: a run's
    hundreds of thousands of steps are written from there, set-based)."""
    await conn.execute(
        "DROP TABLE IF EXISTS pg_temp.dunning_due;"
        " CREATE TEMPORARY TABLE dunning_due (account_id text, entry_id bigint,"
        " invoice_id bigint, currency text, open bigint, days integer, step_no integer,"
        " action text, fee text, fee_micros bigint, fee_entry_id bigint) ON COMMIT DROP")
    await conn.execute(
        "INSERT INTO dunning_due (account_id, entry_id, invoice_id, currency, open, days,"
        " step_no, action, fee) " + _DUE_STEPS, as_of, account_id)


async def due_fee_kinds(conn: Connection) -> list[asyncpg.Record]:
    """The distinct ``(fee, currency)`` of the staged fee steps (a handful: priced by the
    caller)."""
    return await conn.fetch("SELECT DISTINCT fee, currency FROM dunning_due"
                            " WHERE action = 'fee'")


async def price_due_fees(conn: Connection, fees: list[tuple[str | None, str, int]]) -> None:
    """Set each staged fee step's amount from ``(fee, currency, micros)`` and give it the
    id its ledger item will have."""
    if not fees:
        return
    await conn.execute(
        "UPDATE dunning_due d SET fee_micros = f.m,"
        " fee_entry_id = nextval(pg_get_serial_sequence('ledger_entries', 'entry_id'))"
        " FROM unnest($1::text[], $2::text[], $3::bigint[]) AS f(t, c, m)"
        " WHERE d.action = 'fee' AND d.fee IS NOT DISTINCT FROM f.t AND d.currency = f.c",
        *[list(c) for c in zip(*fees, strict=True)])


async def due_summary(conn: Connection) -> tuple[list[asyncpg.Record], list[str], list[str]]:
    """The staged steps by action and currency (count, fees), the accounts they newly
    suspend, and the accounts they terminate."""
    totals = await conn.fetch(
        "SELECT action, currency, count(*) AS steps, coalesce(sum(fee_micros), 0)::bigint"
        " AS fees FROM dunning_due GROUP BY action, currency ORDER BY action, currency")
    # The staged table is the session's own (on Citus a local table, which cannot join a
    # distributed one): the accounts are read first, then asked of the suspensions.
    asked = [r["account_id"] for r in await conn.fetch(
        "SELECT DISTINCT account_id FROM dunning_due WHERE action = 'suspend' ORDER BY 1")]
    already = await suspended(conn, asked)
    terminating = await conn.fetch("SELECT DISTINCT account_id FROM dunning_due"
                                   " WHERE action = 'terminate' ORDER BY 1")
    return (totals, [a for a in asked if a not in already],
            [r["account_id"] for r in terminating])


async def take_due_steps(conn: Connection, as_of: dt.date, suspending: list[str]) -> None:
    """Write the staged steps: the fees as ledger items, the steps taken, the suspensions."""
    fees = await conn.fetch(
        "INSERT INTO ledger_entries (entry_id, account_id, kind, currency, amount_micros,"
        " entry_date, due_date, description, reason) OVERRIDING SYSTEM VALUE"
        " SELECT fee_entry_id, account_id, 'fee', currency, fee_micros, $1, $1,"
        " 'Reminder fee, invoice ' || invoice_id, 'dunning' FROM dunning_due"
        " WHERE action = 'fee' ORDER BY fee_entry_id RETURNING account_id, entry_id", as_of)
    await journal_days_repo.write(conn, [r["account_id"] for r in fees],
                                  [r["entry_id"] for r in fees])
    await conn.execute(
        "INSERT INTO aging_open (account_id, currency, due_date, from_on, amount_micros)"
        " SELECT account_id, currency, $1, $1, fee_micros FROM dunning_due"
        " WHERE action = 'fee'", as_of)
    await conn.execute(
        "INSERT INTO dunning_events (account_id, entry_id, step_no, action, invoice_id,"
        " run_on, days_past_due, open_micros, fee_entry_id) SELECT account_id, entry_id,"
        " step_no, action, invoice_id, $1, days, open, fee_entry_id FROM dunning_due"
        " ORDER BY account_id, entry_id, step_no", as_of)
    await suspend(conn, suspending, as_of)


# The audit entry of each staged fee (audit.record_rows: entity, before, after).
DUE_FEE_AUDIT = (
    "SELECT 'ledger_entry:' || account_id || '/' || fee_entry_id AS entity, NULL::jsonb"
    " AS before, jsonb_build_object('account_id', account_id, 'invoice_id', invoice_id,"
    " 'kind', 'fee', 'amount_micros', fee_micros, 'currency', currency, 'on', $1::date)"
    " AS after FROM dunning_due WHERE action = 'fee' ORDER BY account_id, entry_id, step_no")


async def due_steps_for_events(conn: Connection) -> list[asyncpg.Record]:
    """What each staged step's event says, per account in the order the steps are taken."""
    return await conn.fetch(
        "SELECT account_id, invoice_id, step_no, action, days, open, currency, fee_micros"
        " FROM dunning_due ORDER BY account_id, entry_id, step_no")


async def suspended(db: Db, accounts: list[str]) -> set[str]:
    rows = await db.fetch("SELECT account_id FROM dunning_suspensions WHERE lifted_on IS NULL"
                          " AND account_id = ANY($1::text[])", accounts)
    return {r["account_id"] for r in rows}


async def suspend(conn: Connection, accounts: list[str], on: dt.date) -> None:
    await conn.execute(
        "INSERT INTO dunning_suspensions (account_id, suspended_on) SELECT a, $2"
        " FROM unnest($1::text[]) a ON CONFLICT DO NOTHING", accounts, on)


async def still_owing_for_suspension(conn: Connection, accounts: list[str]) -> set[str]:
    """Accounts among those whose suspending invoices still owe something (and are not
    disputed: a dispute pauses dunning for its invoice)."""
    # The open amount as collections_item_open computes it, summed by joins over the
    # suspending invoices only: a daily run asks this of every suspended account.
    rows = await conn.fetch(
        "WITH x AS (SELECT DISTINCT x.account_id, x.entry_id FROM dunning_events x"
        "   WHERE x.account_id = ANY($1::text[]) AND x.action = 'suspend'),"
        " allocated AS (SELECT a.account_id, a.entry_id, sum(a.amount_micros) AS amount"
        "   FROM payment_allocations a JOIN x ON x.account_id = a.account_id"
        "   AND x.entry_id = a.entry_id GROUP BY a.account_id, a.entry_id),"
        " applied AS (SELECT c.account_id, c.applies_to AS entry_id,"
        "   sum(c.amount_micros) AS amount FROM ledger_entries c JOIN x"
        "   ON x.account_id = c.account_id AND x.entry_id = c.applies_to"
        "   GROUP BY c.account_id, c.applies_to)"
        " SELECT DISTINCT x.account_id FROM x"
        " JOIN ledger_entries e ON e.account_id = x.account_id AND e.entry_id = x.entry_id"
        " LEFT JOIN allocated a ON a.account_id = x.account_id AND a.entry_id = x.entry_id"
        " LEFT JOIN applied c ON c.account_id = x.account_id AND c.entry_id = x.entry_id"
        " WHERE e.amount_micros + coalesce(c.amount, 0) - coalesce(a.amount, 0) > 0"
        " AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.account_id = x.account_id"
        "   AND d.entry_id = x.entry_id AND d.closed_on IS NULL)", accounts)
    return {r["account_id"] for r in rows}


async def lift(conn: Connection, accounts: list[str], on: dt.date, by: str) -> None:
    await conn.execute(
        "UPDATE dunning_suspensions SET lifted_on = $2, lifted_by = $3"
        " WHERE account_id = ANY($1::text[]) AND lifted_on IS NULL", accounts, on, by)


async def open_dispute(conn: Connection, account_id: str, entry_id: int, invoice_id: int,
                       reason: str, on: dt.date) -> int:
    dispute_id: int = await conn.fetchval(
        "INSERT INTO disputes (account_id, entry_id, invoice_id, reason, opened_on)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING dispute_id",
        account_id, entry_id, invoice_id, reason, on)
    return dispute_id


async def close_dispute(conn: Connection, dispute_id: int, on: dt.date) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "UPDATE disputes SET closed_on = $2 WHERE dispute_id = $1 AND closed_on IS NULL"
        " RETURNING account_id, invoice_id", dispute_id, on)


# --- write-offs -----------------------------------------------------------------------------

async def invoice_tax_share(conn: Connection, account_id: str,
                            invoice_id: int) -> tuple[int, int]:
    """(tax, payable) of an invoice: the share of a written-off amount that was VAT."""
    row = await conn.fetchrow("SELECT tax_micros, payable_micros FROM invoices"
                              " WHERE account_id = $1 AND invoice_id = $2",
                              account_id, invoice_id)
    assert row is not None
    return int(row["tax_micros"]), int(row["payable_micros"])


async def written_off(conn: Connection, account_id: str, entry_id: int) -> int:
    """What is written off an item now (write-offs less their reversals, ≥ 0)."""
    total: int = await conn.fetchval(
        "SELECT coalesce(-sum(amount_micros), 0)::bigint FROM ledger_entries"
        " WHERE account_id = $1 AND applies_to = $2"
        " AND kind IN ('write_off', 'write_off_reversal')", account_id, entry_id)
    return total


# --- SEPA direct debit ----------------------------------------------------------------------

_MANDATE = ("SELECT account_id, mandate_id, iban, bic, signed_on, sequence_type, ended_on"
            " FROM sepa_mandates")


async def mandate(db: Db, account_id: str) -> Mandate | None:
    row = await db.fetchrow(_MANDATE + " WHERE account_id = $1", account_id)
    return None if row is None else Mandate(**dict(row))


async def mandates(db: Db, after: str | None, limit: int) -> list[Mandate]:
    rows = await db.fetch(_MANDATE + " WHERE ($1::text IS NULL OR account_id > $1)"
                          " ORDER BY account_id LIMIT $2", after, limit + 1)
    return [Mandate(**dict(r)) for r in rows]


async def put_mandate(conn: Connection, m: Mandate) -> bool:
    """Store an account's mandate (replacing its previous one); False when the mandate id
    is another account's."""
    taken = await conn.fetchval("SELECT 1 FROM sepa_mandates WHERE mandate_id = $1"
                                " AND account_id <> $2", m.mandate_id, m.account_id)
    if taken:
        return False
    try:
        async with conn.transaction():  # a savepoint: a concurrent taker loses cleanly
            await conn.execute(
                "INSERT INTO sepa_mandates (account_id, mandate_id, iban, bic, signed_on,"
                " sequence_type, ended_on) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (account_id) DO UPDATE SET mandate_id = excluded.mandate_id,"
                " iban = excluded.iban, bic = excluded.bic, signed_on = excluded.signed_on,"
                " sequence_type = excluded.sequence_type, ended_on = excluded.ended_on,"
                " updated_at = now()", m.account_id, m.mandate_id, m.iban, m.bic,
                m.signed_on, m.sequence_type, m.ended_on)
    except asyncpg.UniqueViolationError:
        return False
    return True


async def live_mandate_accounts(conn: Connection) -> list[str]:
    rows = await conn.fetch("SELECT account_id FROM sepa_mandates WHERE ended_on IS NULL"
                            " ORDER BY account_id")
    return [r["account_id"] for r in rows]


async def direct_debit_candidates(conn: Connection, due_by: dt.date) -> list[asyncpg.Record]:
    """Open, undisputed EUR invoices due by ``due_by`` of accounts with a live mandate, with
    the mandate, oldest first per account."""
    return await conn.fetch(
        "SELECT m.account_id, m.mandate_id, m.iban, m.bic, m.signed_on, m.sequence_type,"
        " a.name, e.invoice_id, i.number_text, o.open"
        " FROM sepa_mandates m JOIN accounts a ON a.account_id = m.account_id"
        " JOIN ledger_entries e ON e.account_id = m.account_id AND e.kind = 'invoice'"
        " JOIN invoices i ON i.invoice_id = e.invoice_id"
        " CROSS JOIN LATERAL (SELECT collections_item_open(e.account_id, e.entry_id)"
        "   AS open) o"
        " WHERE m.ended_on IS NULL AND a.currency = 'EUR' AND e.currency = 'EUR'"
        " AND a.status <> 'closed' AND e.due_date <= $1 AND o.open > 0"
        " AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.account_id = e.account_id"
        "   AND d.entry_id = e.entry_id AND d.closed_on IS NULL)"
        " ORDER BY m.account_id, e.due_date, e.entry_id", due_by)


async def new_sepa_batch_id(conn: Connection) -> int:
    batch_id: int = await conn.fetchval(
        "SELECT nextval(pg_get_serial_sequence('sepa_batches', 'batch_id'))")
    return batch_id


async def insert_sepa_batch(conn: Connection, *, batch_id: int, message_id: str,
                            due_by: dt.date, collection_date: dt.date, transactions: int,
                            total_micros: int, document: str, created_by: str) -> None:
    await conn.execute(
        "INSERT INTO sepa_batches (batch_id, message_id, due_by, collection_date,"
        " transactions, total_micros, document, created_by) OVERRIDING SYSTEM VALUE"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", batch_id, message_id, due_by,
        collection_date, transactions, total_micros, document, created_by)


async def advance_mandates(conn: Connection, accounts: list[str], on: dt.date) -> None:
    """After a collection: FRST becomes RCUR, OOFF and FNAL end the mandate."""
    await conn.execute(
        "UPDATE sepa_mandates SET sequence_type = CASE WHEN sequence_type = 'FRST'"
        " THEN 'RCUR' ELSE sequence_type END, ended_on = CASE WHEN sequence_type IN"
        " ('OOFF', 'FNAL') THEN $2::date END, updated_at = now()"
        " WHERE account_id = ANY($1::text[])",
        accounts, on)


async def sepa_batch_document(db: Db, batch_id: int) -> str | None:
    document: str | None = await db.fetchval(
        "SELECT document FROM sepa_batches WHERE batch_id = $1", batch_id)
    return document


# --- an account's open invoices ------------------------------------------------------------

async def open_invoices(db: Db, account_id: str) -> list[asyncpg.Record]:
    """The account's finalised invoices that still owe something, oldest due first, with
    what each owes now."""
    return await db.fetch(
        "SELECT e.invoice_id, i.number_text, e.entry_date, e.due_date, e.currency,"
        " e.amount_micros, o.open_micros FROM ledger_entries e"
        " JOIN invoices i ON i.invoice_id = e.invoice_id"
        " CROSS JOIN LATERAL (SELECT collections_item_open(e.account_id, e.entry_id)"
        "   AS open_micros) o"
        " WHERE e.account_id = $1 AND e.kind = 'invoice' AND o.open_micros > 0"
        " ORDER BY e.due_date, e.entry_id", account_id)


async def lock_dunning(conn: Connection) -> None:
    """One dunning run at a time, until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('dunning', 0))")


async def suspended_accounts(db: Db) -> list[str]:
    """Every account whose service dunning suspended and has not lifted."""
    rows = await db.fetch("SELECT account_id FROM dunning_suspensions WHERE lifted_on IS NULL")
    return [r["account_id"] for r in rows]
