"""The journal's totals per day, kept at posting (migration 1543, issue #24).

Each writer of ledger entries appends, in its own transaction, the journal entries it
makes and their debit and credit to ``ledger_journal_deltas`` (``write``): a row per
(account, currency, entry date) for one account's entries, per (currency, entry date) under
no account for a batch of many accounts'. The PL/pgSQL writer (``collections_release_excess``)
appends its own. ``tests/unit/test_ledger_journal_writes_guard.py`` fails on a writer that
does not. The amounts are the export's builder's (``journal.build``), by the SQL
``ledger_journal_sides`` that ``tests/integration/test_ledger_journal_sides.py`` proves
equal to it.

Appending, never updating, keeps the concurrent postings of a bill run off each other's rows;
the fold (``fold``, on serve's compaction clock) moves the deltas into ``ledger_journal_days``,
a row per currency and day. A period's totals read its days and the deltas not folded yet:
O(days), not O(entries).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple, TypeAlias

import asyncpg

from billing_oss.server.store import compaction_lock
from billing_oss.server.store.citus import NO_ACCOUNT
from billing_oss.server.store.pool import Connection

Db: TypeAlias = "Connection | asyncpg.Pool"
# Taken by readers of the days beside the deltas (the fold takes it exclusive).
FOLD_LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(hashtext('fold_ledger_journal'))"

_INSERT = """
INSERT INTO ledger_journal_deltas (account_id, currency, entry_date, entries, debit_micros,
                                   credit_micros)
SELECT {account}, m.currency, m.entry_date, count(*), sum(m.debit_micros)::bigint,
       sum(m.credit_micros)::bigint
"""
# One account's entries: its filter written out, which on Citus routes the insert to its
# shard. Several accounts' (a bill run's batch, a bank file): (account, id) pairs joined to
# the entries, each pair one probe of the primary key (two lists under = ANY would probe
# every account with every id), and a row per currency and day under no account
# (``citus.NO_ACCOUNT``), not per account: the days of a 100,000-invoice bill run are then a
# few hundred deltas until the fold, where rows per account made the totals read 136 ms.
_WRITE_ONE = _INSERT.format(account="m.account_id") + """FROM ledger_journal_moves m
WHERE m.account_id = $1 AND m.entry_id = ANY($2::bigint[]) GROUP BY 1, 2, 3"""
_WRITE_MANY = _INSERT.format(account="$3::text") + """
FROM unnest($1::text[], $2::bigint[]) AS u(account_id, entry_id)
JOIN ledger_journal_moves m ON m.account_id = u.account_id AND m.entry_id = u.entry_id
GROUP BY 2, 3"""
_WRITE_PAYMENTS = _INSERT.format(account="$3::text") + """
FROM unnest($1::text[], $2::bigint[]) AS u(account_id, payment_id)
JOIN ledger_journal_moves m ON m.account_id = u.account_id AND m.payment_id = u.payment_id
WHERE m.kind = 'payment' GROUP BY 2, 3"""


async def write(conn: Connection, account_ids: Sequence[str], entry_ids: Sequence[int]) -> None:
    """Append the journal of the ledger entries just written (``account_ids[i]`` the
    account of ``entry_ids[i]``)."""
    if not entry_ids:
        return
    if len(set(account_ids)) == 1:
        await conn.execute(_WRITE_ONE, account_ids[0], list(entry_ids))
    else:
        await conn.execute(_WRITE_MANY, list(account_ids), list(entry_ids), NO_ACCOUNT)


async def write_payments(conn: Connection, account_ids: Sequence[str],
                         payment_ids: Sequence[int]) -> None:
    """Append the journal of the ``payment`` entries of payments just written (copied in
    bulk, their entry ids unread): ``account_ids[i]`` the account of ``payment_ids[i]``."""
    if payment_ids:
        await conn.execute(_WRITE_PAYMENTS, list(account_ids), list(payment_ids), NO_ACCOUNT)


# --- reading --------------------------------------------------------------------------------

class DayTotals(NamedTuple):
    entries: int
    debit_micros: int
    credit_micros: int


TOTALS = """
WITH days AS (
    SELECT currency, entries, debit_micros, credit_micros FROM ledger_journal_days
    WHERE entry_date BETWEEN $1 AND $2
    UNION ALL
    SELECT currency, entries, debit_micros, credit_micros FROM ledger_journal_deltas
    WHERE entry_date BETWEEN $1 AND $2
)
SELECT trim(currency) AS currency, sum(entries)::bigint AS entries,
       sum(debit_micros) AS debit_micros, sum(credit_micros) AS credit_micros
FROM days GROUP BY 1 ORDER BY 1
"""


async def totals(db: Db, start: dt.date, end: dt.date) -> dict[str, DayTotals]:
    """Per currency, the journal of the period ``[start, end]``: entries, debit, credit."""
    rows = await compaction_lock.fetch_between_compactions(db, TOTALS, [start, end],
                                                          lock=FOLD_LOCK_SHARED)
    return {r["currency"]: DayTotals(int(r["entries"]), int(r["debit_micros"]),
                                     int(r["credit_micros"])) for r in rows}


_DAYS = """
WITH days AS (
    SELECT currency, entry_date, entries, debit_micros, credit_micros FROM ledger_journal_days
    UNION ALL
    SELECT currency, entry_date, entries, debit_micros, credit_micros FROM ledger_journal_deltas
)
SELECT trim(currency) AS currency, entry_date, sum(entries)::bigint AS entries,
       sum(debit_micros) AS debit_micros, sum(credit_micros) AS credit_micros
FROM days GROUP BY 1, 2 ORDER BY 1, 2
"""


async def days(db: Db) -> list[asyncpg.Record]:
    """Every (currency, entry_date) the level holds, with its entries, debit and credit."""
    return await compaction_lock.fetch_between_compactions(db, _DAYS, [], lock=FOLD_LOCK_SHARED)


# --- keeping --------------------------------------------------------------------------------

async def fold(db: Db) -> int:
    """Move the deltas into their days; deltas folded."""
    folded: int = await db.fetchval("SELECT fold_ledger_journal()")
    return folded


async def fresh(db: Db) -> int:
    """The deltas not folded yet."""
    count: int = await db.fetchval("SELECT count(*) FROM ledger_journal_deltas")
    return count


async def vacuum(db: Db) -> None:
    """After a large fold (outside a transaction): the deltas it deleted leave the index."""
    await db.execute("VACUUM (ANALYZE) ledger_journal_deltas")


_REBUILD = "SELECT rebuild_ledger_journal()"


async def form(conn: Connection) -> int:
    """Form the level anew from the ledger, in the caller's transaction; its rows."""
    await conn.execute(_REBUILD)
    rows: int = await conn.fetchval("SELECT count(*) FROM ledger_journal_days")
    return rows


async def rebuild(db: Db) -> None:
    """Form the level anew from the ledger in a transaction of its own, then ``vacuum``
    (after a seed wrote the ledger by plain SQL; ``db`` is not in a transaction)."""
    await db.execute(_REBUILD)
    await vacuum(db)
