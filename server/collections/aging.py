"""Aging as of any date, from the ledger alone (DESIGN.md §9).

An item (invoice, fee) is open as of a date by its amount less the credit notes and
write-offs applied to it and the allocations made to it up to that date; it falls in the
bucket of its days past due on that date. Payment money not allocated as of that date is a
credit (≤ 0) beside the buckets. The total of buckets and credit equals the ledger balance
as of that date, per currency, to the micro-unit: every entry counts on both sides.
"""

from __future__ import annotations

import datetime as dt
import itertools

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.collections import repo
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
    check_bounds(bounds)
    thresholds = [b + 1 for b in bounds]  # width_bucket: days ≤ bound stay below
    rows = await repo.aging(db, as_of, thresholds, per_account=per_account,
                            account_id=account_id)
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
