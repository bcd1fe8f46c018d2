"""The journal's days kept at posting (``collections.journal_days_repo``) against the export's
builder (``ledger.journal.build``) over the ledger's own entries: per currency and day, the
same entries, debit and credit, to the micro-unit."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import asyncpg

from billing_oss.server.collections import journal_days_repo
from billing_oss.server.config import LedgerConfig
from billing_oss.server.ledger import repo as ledger_repo
from billing_oss.server.ledger.journal import build

EVER = (dt.date(1970, 1, 1), dt.date(2999, 12, 31))
Days = dict[tuple[str, dt.date], tuple[int, int, int]]


async def built_days(db: asyncpg.Pool, account_id: str | None = None) -> Days:
    """Per (currency, day): the builder's entries, debit and credit over the ledger."""
    days: dict[tuple[str, dt.date], list[int]] = defaultdict(lambda: [0, 0, 0])
    currencies = [r[0].strip() for r in await db.fetch(
        "SELECT DISTINCT currency FROM ledger_entries ORDER BY 1")]
    for currency in currencies:
        rows = [r for r in await ledger_repo.entries(db, *EVER, currency)
                if account_id is None or r["account_id"] == account_id]
        for e in build(rows, LedgerConfig(currency=currency), *EVER).entries:
            day = days[(currency, e.date)]
            day[0] += 1
            day[1] += e.debit_micros
            day[2] += e.credit_micros
    return {k: (v[0], v[1], v[2]) for k, v in days.items()}


async def kept_days(db: asyncpg.Pool, account_id: str | None = None) -> Days:
    """Per (currency, day): the kept level (every account), or one account's deltas."""
    if account_id is None:
        rows = await journal_days_repo.days(db)
    else:
        rows = await db.fetch(
            "SELECT trim(currency) AS currency, entry_date, sum(entries)::bigint AS entries,"
            " sum(debit_micros) AS debit_micros, sum(credit_micros) AS credit_micros"
            " FROM ledger_journal_deltas WHERE account_id = $1 GROUP BY 1, 2", account_id)
    return {(r["currency"], r["entry_date"]): (int(r["entries"]), int(r["debit_micros"]),
                                                int(r["credit_micros"]))
            for r in rows if r["entries"]}


async def assert_kept_days_are_the_builders(db: asyncpg.Pool,
                                            account_id: str | None = None) -> None:
    kept, built = await kept_days(db, account_id), await built_days(db, account_id)
    assert kept == built, sorted(set(kept.items()) ^ set(built.items()))
