"""The state the ledger's writers keep, formed anew from the ledger (``billing-oss ledger
rebuild``): what repairs the journal's days when ``ledger.journal_days`` finds them wrong,
and the aging kept from today on (migration 1510) after a change to the ledger by hand.

Each part in one transaction of its own, audited (``ledger.rebuild``), under the lock its
fold takes. The journal's rebuild holds the deltas against writes (its statements each take a
snapshot of their own), so postings wait for it; the aging's is one statement, so postings go
on and one committed meanwhile is counted once, by the delta its snapshot leaves alone. The
rows a rebuild deleted leave the indexes by a vacuum after the commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.collections import aging_kept_repo, journal_days_repo
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection

AUDIT_ACTION = "ledger.rebuild"
_PARTS: dict[str, tuple[Callable[[Connection], Awaitable[int]],
                        Callable[[Connection], Awaitable[None]]]] = {
    "journal": (journal_days_repo.form, journal_days_repo.vacuum),
    "aging": (aging_kept_repo.form, aging_kept_repo.vacuum),
}
PARTS = tuple(_PARTS)


async def rebuild(pool: asyncpg.Pool, parts: Sequence[str], *, actor: str) -> dict[str, int]:
    """Rebuild ``parts`` (of ``PARTS``) one after the other; the rows each now keeps."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise InvalidRequest(f"kept state {', '.join(unknown) or 'none'}: choose among"
                             f" {', '.join(PARTS)}")
    kept = {}
    for part in dict.fromkeys(parts):
        form, vacuum = _PARTS[part]
        async with pool.acquire() as conn:
            async with conn.transaction():
                kept[part] = await form(conn)
                await audit.record(conn, actor, AUDIT_ACTION, f"kept:{part}", None,
                                   {"rows": kept[part]})
            await vacuum(conn)
    return kept
