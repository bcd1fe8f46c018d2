"""Aging as of any date (DESIGN.md §9): from today on from the state the ledger's writers
keep (``aging_kept_repo``), before today from the ledger alone; both give the same rows.

An item (invoice, fee) is open as of a date by its amount less the credit notes and
write-offs applied to it and the allocations made to it up to that date; it falls in the
bucket of its days past due on that date. Payment money not allocated as of that date is a
credit (≤ 0) beside the buckets. The total of buckets and credit equals the ledger balance
as of that date, per currency, to the micro-unit: every entry counts on both sides.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.collections import aging_kept_repo, repo
from billing_oss.server.collections.model import DEFAULT_BUCKETS, AgingRow


def check_bounds(bounds: tuple[int, ...]) -> tuple[int, ...]:
    """Bucket bounds in days past due: strictly increasing, the first ≥ 0."""
    if not bounds or bounds[0] < 0 or any(b >= c for b, c in itertools.pairwise(bounds)):
        raise InvalidRequest(
            "invalid query: buckets: increasing whole days past due, the first ≥ 0",
            errors=[{"location": "query", "path": "buckets",
                     "message": "increasing whole days past due, the first ≥ 0"}])
    return bounds


async def aging(db: repo.Db, as_of: dt.date, *, bounds: tuple[int, ...] = DEFAULT_BUCKETS,
                per_account: bool = False, account_id: str | None = None) -> list[AgingRow]:
    """One row per currency (and per account when ``per_account``), sorted."""
    if aging_kept_repo.serves(as_of):
        return await kept(db, as_of, bounds=bounds, per_account=per_account,
                          account_id=account_id)
    return await from_ledger(db, as_of, bounds=bounds, per_account=per_account,
                             account_id=account_id)


async def from_ledger(db: repo.Db, as_of: dt.date, *,
                      bounds: tuple[int, ...] = DEFAULT_BUCKETS, per_account: bool = False,
                      account_id: str | None = None) -> list[AgingRow]:
    """``aging`` summed from every ledger entry and allocation up to ``as_of``."""
    check_bounds(bounds)
    rows = await repo.aging(db, as_of, _thresholds(bounds), per_account=per_account,
                            account_id=account_id)
    return _lines(rows, bounds, per_account)


async def kept(db: repo.Db, as_of: dt.date, *, bounds: tuple[int, ...] = DEFAULT_BUCKETS,
               per_account: bool = False, account_id: str | None = None) -> list[AgingRow]:
    """``aging`` from the kept state: as of today (UTC) or later only."""
    check_bounds(bounds)
    thresholds = _thresholds(bounds)
    rows = await (aging_kept_repo.per_account(db, as_of, thresholds, account_id) if per_account
                  else aging_kept_repo.totals(db, as_of, thresholds, account_id))
    return _lines(rows, bounds, per_account)


async def kept_page(db: repo.Db, as_of: dt.date, *, bounds: tuple[int, ...] = DEFAULT_BUCKETS,
                    after: tuple[str, str] | None, limit: int) -> list[AgingRow]:
    """The first ``limit`` (account, currency) lines after ``after``, from the kept state."""
    check_bounds(bounds)
    rows = await aging_kept_repo.page(db, as_of, _thresholds(bounds), after, limit)
    return _lines(rows, bounds, True)


async def lines_after(db: repo.Db, as_of: dt.date, *, bounds: tuple[int, ...],
                      account_id: str | None, after: tuple[str, str] | None,
                      limit: int) -> list[AgingRow]:
    """The per-account lines after the cursor ``after``, at least the first ``limit`` of
    them: a page in key order from the kept state where it serves, else every line of the
    ledger's aging past the cursor."""
    if account_id is None and aging_kept_repo.serves(as_of):
        return await kept_page(db, as_of, bounds=bounds, after=after, limit=limit)
    rows = await aging(db, as_of, bounds=bounds, per_account=True, account_id=account_id)
    return [r for r in rows if after is None or (r.account_id or "", r.currency) > after]


def _thresholds(bounds: tuple[int, ...]) -> list[int]:
    return [b + 1 for b in bounds]  # width_bucket: days ≤ bound stay below


def _lines(rows: list[Any], bounds: tuple[int, ...], per_account: bool) -> list[AgingRow]:
    width = len(bounds) + 1
    table: dict[tuple[str | None, str], tuple[list[int], list[int]]] = {}
    for r in rows:
        key = (r["account_id"] if per_account else None, r["currency"].strip())
        buckets, credit = table.setdefault(key, ([0] * width, [0]))
        credit[0] += int(r["credit"])
        if r["bucket"] < 0:
            credit[0] += int(r["amount"])
        else:
            buckets[r["bucket"]] += int(r["amount"])
    return [AgingRow(account_id=account, currency=currency, buckets=tuple(buckets),
                     credit_micros=credit[0])
            for (account, currency), (buckets, credit) in sorted(
                table.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))]
