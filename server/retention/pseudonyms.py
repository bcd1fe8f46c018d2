"""Pseudonymised subscriber numbers: ``p:`` + hex HMAC-SHA256(key, number).

The same number under the same key always gives the same pseudonym, so analytics per number
still group; without the key a pseudonym cannot be turned back into a number by trying
every number. The database computes the HMAC from the padded keys (``repo``), so the
numbers are rewritten in place, batch by batch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging

import asyncpg

from billing_oss.server.retention import repo
from billing_oss.server.store import audit

log = logging.getLogger(__name__)
BLOCK = 64  # SHA-256's block size: HMAC pads its key to it
PAGES = 2048  # 16 MiB of a partition per transaction, some 100 000 records


def pads(key: str) -> tuple[bytes, bytes]:
    """(K ⊕ ipad, K ⊕ opad) of RFC 2104 for SHA-256."""
    raw = key.encode()
    if len(raw) > BLOCK:
        raw = hashlib.sha256(raw).digest()
    raw = raw.ljust(BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in raw), bytes(b ^ 0x5C for b in raw)


def pseudonym(key: str, number: str) -> str:
    """What a number becomes (the database computes the same)."""
    digest = hmac.new(key.encode(), number.encode(), hashlib.sha256).hexdigest()
    return repo.PSEUDONYM_PREFIX + digest


def starts(first: dt.date) -> dt.datetime:
    """When a partition whose range starts on ``first`` (a month's or a day's) starts."""
    return dt.datetime.combine(first, dt.time(), dt.UTC)


def cutoff(now: dt.datetime, after_days: int) -> dt.datetime:
    return now - dt.timedelta(days=after_days)


async def run(pool: asyncpg.Pool, key: str, after_days: int, now: dt.datetime,
              actor: str, pages: int = PAGES) -> int:
    """Pseudonymise every usage record older than ``after_days`` still holding a clear
    identifier, ``pages`` pages of a partition per transaction, each audited; the records
    changed."""
    if after_days <= 0:
        return 0
    if not key:
        raise ValueError("retention.pseudonym_key is empty")
    before = cutoff(now, after_days)
    inner, outer = pads(key)
    total = 0
    for parent, partition, since in (await repo.partitions(pool)
                                     + await repo.day_partitions(pool)):
        if parent != "usage_records" or starts(since) >= before:
            continue
        # Rows moved by the updates land past the end taken here: already pseudonymised.
        end = await repo.blocks(pool, partition)
        for first in range(0, end, pages):
            async with pool.acquire() as conn, conn.transaction():
                n = await repo.pseudonymise_range(conn, partition, before, inner, outer,
                                                  first, first + pages)
                if n:
                    await audit.record(conn, actor, "usage.pseudonymise", f"usage:{partition}",
                                       None, {"before": before.isoformat(), "records": n})
            total += n
    if total:
        log.info("usage pseudonymised", extra={"fields": {"records": total,
                                                          "before": before.isoformat()}})
    return total
