"""The rollup levels of a range of days rebuilt from the charges (``billing-oss report
rebuild``): what repairs a level the ``rollups.levels`` control finds wrong, or the hourly
level of days an older writer charged without it (migration 1512's backfill ran before it).

One transaction, under the compaction's lock, audited (``rollups.rebuild``): ingest keeps
writing meanwhile, and a charge it commits during the rebuild stays counted once, by its
delta (migration 1542).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.analytics import repo
from billing_oss.server.store import audit

LEVELS = ("daily", "monthly", "hourly")
AUDIT_ACTION = "rollups.rebuild"


async def rebuild(pool: asyncpg.Pool, first: dt.date, last: dt.date, *, actor: str,
                  levels: Sequence[str] = LEVELS) -> dict[str, int]:
    """Rebuild ``levels`` of the UTC days ``first``..``last`` (inclusive; the monthly level:
    the whole months holding them); rows written per level."""
    if last < first:
        raise InvalidRequest(f"empty range: {first} to {last}")
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown or not levels:
        raise InvalidRequest(f"levels {', '.join(unknown) or 'none'}: choose among"
                             f" {', '.join(LEVELS)}")
    async with pool.acquire() as conn, conn.transaction():
        try:
            written = await repo.rebuild(conn, first, last, levels)
        except asyncpg.InvalidParameterValueError as exc:
            raise InvalidRequest(str(exc)) from None
        await audit.record(conn, actor, AUDIT_ACTION, f"rollups:{first}..{last}", None,
                           {"first": first.isoformat(), "last": last.isoformat(),
                            "levels": list(levels), "rows": written})
    return written
