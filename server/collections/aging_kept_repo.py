"""Aging from today on, from state the ledger's writers keep (migration 1510, issue #24).

Every ledger entry and allocation moves money between cells (account, currency, due date;
no due date: payment money, the credit) from a day on: an item into its due date, a
payment, refund or reversal into credit, an entry applied to an item into the item's due
date, an allocation out of the item's due date into credit. Each writer of ledger entries
or allocations appends its moves to ``aging_open`` here, in its own transaction (the
PL/pgSQL writers, ``collections_settle`` and ``collections_release_excess``, append theirs
themselves); ``tests/unit/test_ledger_writes_guard.py`` fails on a writer that does not.

Appending, never updating, keeps concurrent writers off each other's rows; compaction
(``compact``, on serve's clock) folds them per account and into the level without the
account that totals across accounts read. So aging across accounts reads a row per currency
and due date plus the deltas not folded yet, one account reads its own few rows, and a
page of accounts reads those accounts' rows in key order from its cursor. Dates before the
day before the last compaction are not kept (their moves are folded together): those are
read from the ledger (``aging.aging`` chooses).

This module holds the kept tables' SQL (the rest of the package's is in ``repo``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import TypeAlias

import asyncpg

from billing_oss.server.store import compaction_lock
from billing_oss.server.store.pool import Connection

Db: TypeAlias = "Connection | asyncpg.Pool"
# (account, currency, due date or None for credit, the day it counts from, micro-units)
Move: TypeAlias = tuple[str, str, "dt.date | None", dt.date, int]

_COLUMNS = ["account_id", "currency", "due_date", "from_on", "amount_micros"]
_COPY_FROM = 200  # moves from which a COPY beats one INSERT of arrays
_LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(hashtext('compact_aging'))"


def item(account_id: str, currency: str, due: dt.date, on: dt.date, amount: int) -> Move:
    """An invoice or fee entering the ledger."""
    return (account_id, currency, due, on, amount)


def credit(account_id: str, currency: str, on: dt.date, amount: int) -> Move:
    """A payment (negative), a refund or a reversal (positive)."""
    return (account_id, currency, None, on, amount)


def allocation(account_id: str, currency: str, due: dt.date, item_date: dt.date,
               on: dt.date, amount: int) -> tuple[Move, Move]:
    """``amount`` of payment money allocated to an item (negative: released) on ``on``."""
    day = max(on, item_date)
    return (account_id, currency, due, day, -amount), (account_id, currency, None, day, amount)


async def write(conn: Connection, moves: Sequence[Move],
                told: Collection[tuple[str, str, dt.date]] = ()) -> None:
    """Append moves (in the writer's transaction), those of one cell and day summed: a
    payment allocated on its day nets to zero in credit. A credit cell is written even at
    zero, as compaction keeps it: it says the account has history from that day; but not
    for the (account, currency, day) in ``told``, whose history an item of the account
    dated no later already tells."""
    summed: dict[tuple[str, str, dt.date | None, dt.date], int] = {}
    for account_id, currency, due, on, amount in moves:
        key = (account_id, currency, due, on)
        summed[key] = summed.get(key, 0) + amount
    moves = [(*key, amount) for key, amount in summed.items()
             if amount or (key[2] is None and (key[0], key[1], key[3]) not in told)]
    if not moves:
        return
    if len(moves) >= _COPY_FROM:
        await conn.copy_records_to_table("aging_open", columns=_COLUMNS, records=moves)
        return
    await conn.execute(
        "INSERT INTO aging_open (account_id, currency, due_date, from_on, amount_micros)"
        " SELECT * FROM unnest($1::text[], $2::char(3)[], $3::date[], $4::date[],"
        " $5::bigint[])", *([m[i] for m in moves] for i in range(5)))


async def write_entry(conn: Connection, account_id: str, entry_id: int) -> None:
    """Append the move of a ledger entry just written (of any kind), read back with the item
    it applies to."""
    await conn.execute(
        "INSERT INTO aging_open (account_id, currency, due_date, from_on, amount_micros)"
        " SELECT e.account_id, e.currency, coalesce(e.due_date, i.due_date),"
        " greatest(e.entry_date, i.entry_date), e.amount_micros FROM ledger_entries e"
        " LEFT JOIN ledger_entries i ON i.account_id = e.account_id"
        "   AND i.entry_id = e.applies_to"
        " WHERE e.account_id = $1 AND e.entry_id = $2", account_id, entry_id)


async def write_allocation(conn: Connection, account_id: str, entry_id: int, amount: int,
                           on: dt.date) -> None:
    """Append the moves of an allocation just written to the item ``entry_id``."""
    await conn.execute(
        "INSERT INTO aging_open (account_id, currency, due_date, from_on, amount_micros)"
        " SELECT i.account_id, i.currency, m.due, greatest($4::date, i.entry_date), m.amount"
        " FROM ledger_entries i CROSS JOIN LATERAL (VALUES (i.due_date, -$3::bigint),"
        "   (NULL::date, $3::bigint)) AS m(due, amount)"
        " WHERE i.account_id = $1 AND i.entry_id = $2", account_id, entry_id, amount, on)


# --- reading --------------------------------------------------------------------------------

def serves(as_of: dt.date, today: dt.date | None = None) -> bool:
    """Whether the kept state answers aging as of ``as_of``: today (UTC) or later. The
    compaction folds the days up to the day before it runs, so every day from today on is
    still told apart."""
    return as_of >= (today or dt.datetime.now(dt.UTC).date())


# The same rows as repo._AGING gives: (account?, currency, bucket, amount, credit), bucket -1
# for payment money.
_BUCKET = ("CASE WHEN due_date IS NULL THEN -1"
           " ELSE width_bucket($1 - due_date, $2::int[]) END")
_COUNTS = "(from_on IS NULL OR from_on <= $1)"

_TOTALS = f"""
SELECT currency, {_BUCKET} AS bucket, sum(amount_micros)::bigint AS amount, 0::bigint AS credit
FROM (SELECT currency, due_date, from_on, amount_micros FROM aging_totals
      UNION ALL
      SELECT currency, due_date, from_on, amount_micros FROM aging_open WHERE NOT compacted) x
WHERE {_COUNTS}
GROUP BY 1, 2
"""

_ACCOUNT_TOTALS = f"""
SELECT currency, {_BUCKET} AS bucket, sum(amount_micros)::bigint AS amount, 0::bigint AS credit
FROM aging_open WHERE account_id = $3 AND {_COUNTS}
GROUP BY 1, 2
"""

_ACCOUNT = f"""
SELECT account_id, currency, {_BUCKET} AS bucket, sum(amount_micros)::bigint AS amount,
       0::bigint AS credit
FROM aging_open WHERE account_id = $3 AND {_COUNTS}
GROUP BY 1, 2, 3
"""

# A page of (account, currency) lines in key order from the cursor (the index gives the
# first ones and the scan stops there), then their rows.
_PAGE = f"""
WITH lines AS (
    SELECT account_id, currency FROM aging_open
    WHERE {{after}} {_COUNTS}
    GROUP BY account_id, currency ORDER BY account_id, currency LIMIT $3
)
SELECT o.account_id, o.currency, {_BUCKET.replace('due_date', 'o.due_date')} AS bucket,
       sum(o.amount_micros)::bigint AS amount, 0::bigint AS credit
FROM lines l JOIN aging_open o ON o.account_id = l.account_id AND o.currency = l.currency
WHERE (o.from_on IS NULL OR o.from_on <= $1)
GROUP BY 1, 2, 3
"""

_EVERY_ACCOUNT = f"""
SELECT account_id, currency, {_BUCKET} AS bucket, sum(amount_micros)::bigint AS amount,
       0::bigint AS credit
FROM aging_open WHERE {_COUNTS}
GROUP BY 1, 2, 3
"""


async def totals(db: Db, as_of: dt.date, thresholds: list[int],
                 account_id: str | None = None) -> list[asyncpg.Record]:
    """Per (currency, bucket) across accounts, or of one account."""
    if account_id is not None:
        return await db.fetch(_ACCOUNT_TOTALS, as_of, thresholds, account_id)
    return await compaction_lock.fetch_between_compactions(db, _TOTALS, [as_of, thresholds],
                                                           lock=_LOCK_SHARED)


async def per_account(db: Db, as_of: dt.date, thresholds: list[int],
                      account_id: str | None = None) -> list[asyncpg.Record]:
    """Per (account, currency, bucket): of one account, or of every account."""
    if account_id is not None:
        return await db.fetch(_ACCOUNT, as_of, thresholds, account_id)
    return await db.fetch(_EVERY_ACCOUNT, as_of, thresholds)


async def page(db: Db, as_of: dt.date, thresholds: list[int], after: tuple[str, str] | None,
               limit: int) -> list[asyncpg.Record]:
    """The rows of the first ``limit`` (account, currency) lines after ``after``."""
    if after is None:
        return await db.fetch(_PAGE.format(after=""), as_of, thresholds, limit)
    return await db.fetch(_PAGE.format(after="(account_id, currency) > ($4, $5) AND"),
                          as_of, thresholds, limit, after[0], after[1])


# --- keeping --------------------------------------------------------------------------------

async def compact(db: Db) -> int:
    """Fold the deltas into their accounts' rows and the level without the account; rows
    folded away."""
    folded: int = await db.fetchval("SELECT compact_aging()")
    return folded


async def fresh(db: Db) -> int:
    """The deltas not folded yet (through their partial index, which a plain index scan
    also rids of the entries of deltas a compaction deleted)."""
    count: int = await db.fetchval("SELECT count(*) FROM aging_open WHERE NOT compacted")
    return count


async def vacuum(db: Db) -> None:
    """After a large fold (outside a transaction): the deltas it deleted are removed from
    the indexes and the statistics renewed. Left to autovacuum, every reader stepped over
    their index entries meanwhile: after the 1.9 M-entry ledger's rebuild the totals' scan
    of the (empty) fresh deltas took 244 ms and a page of accounts read 1,300 index pages
    for 96 rows."""
    await db.execute("VACUUM (ANALYZE) aging_open")


_REBUILD = "SELECT rebuild_aging()"


async def form(conn: Connection) -> int:
    """Form the kept rows anew from the ledger, in the caller's transaction; their rows."""
    await conn.execute(_REBUILD)
    rows: int = await conn.fetchval("SELECT count(*) FROM aging_open")
    return rows


async def rebuild(db: Db) -> None:
    """Form the kept rows anew from the ledger (after a seed wrote it by plain SQL), then
    vacuum them (``db`` is not in a transaction)."""
    await db.execute(_REBUILD)
    await vacuum(db)
