"""Emit a domain event in the transaction of the change that caused it (DESIGN.md §8).

``await emit(conn, event, account_id=...)`` is the one call a module needs: the event
commits with the change or not at all, numbered in its stream (the account's, else
``stream=`` names what it is about). Deliveries (webhooks, MQTT provisioning commands) read
the outbox afterwards, at least once and in order per stream.
"""

from __future__ import annotations

import secrets
import time

import msgspec

from billing_oss.server.integrations import repo
from billing_oss.server.integrations.events import DomainEvent
from billing_oss.server.store.pool import Connection


# Event ids: ``evt_`` and 32 hex digits — the time in milliseconds, then random bits (a bulk
# emit numbers its events after the time). Ids that rise with time add to the end of the
# outbox's index on them, where random ones touched a page anywhere in it per event.
def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def stream_of(account_id: str | None, stream: str | None) -> str:
    if account_id is not None:
        return f"acct:{account_id}"
    if not stream:
        raise ValueError("an event about no account names its stream (e.g. 'source:sftp1')")
    return stream


async def emit(conn: Connection, event: DomainEvent, *, account_id: str | None = None,
               stream: str | None = None) -> str:
    """Append ``event`` to the outbox inside the caller's transaction; returns its id."""
    if not conn.is_in_transaction():
        raise RuntimeError("outbox.emit must run inside the transaction of the change")
    if not event.event_type:
        raise TypeError(f"{type(event).__name__} declares no event type")
    event_id = f"evt_{_now_ms():012x}{secrets.token_hex(10)}"
    await repo.append(conn, stream_of(account_id, stream), event_id, event.event_type,
                      event.event_version, account_id, msgspec.json.encode(event))
    return event_id


async def emit_many(conn: Connection, items: list[tuple[DomainEvent, str]]) -> list[str]:
    """``emit`` for many ``(event, account_id)`` in two statements (bulk imports); each
    account's events are numbered in the order given. Returns their ids."""
    if not items:
        return []
    if not conn.is_in_transaction():
        raise RuntimeError("outbox.emit_many must run inside the transaction of the change")
    prefix, salt = f"evt_{_now_ms():012x}", secrets.token_hex(6)
    ids = [f"{prefix}{n:08x}{salt}" for n in range(len(items))]
    await repo.append_many(conn, [
        (stream_of(account_id, None), event_id, event.event_type, event.event_version,
         account_id, msgspec.json.encode(event))
        for (event, account_id), event_id in zip(items, ids, strict=True)])
    return ids
