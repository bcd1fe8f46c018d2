"""The outbox: events commit with their cause or not at all, numbered without gaps per stream."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import asyncpg
import pytest

from billing_oss.server.integrations import outbox, repo
from billing_oss.server.integrations.events import REGISTRY, DomainEvent, decode


class ThingHappened(DomainEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "test.thing_happened"
    event_version: ClassVar[int] = 2
    thing_id: int
    amount: str


async def test_an_event_commits_with_its_transaction_and_not_without(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            event_id = await outbox.emit(conn, ThingHappened(thing_id=1, amount="1.50"),
                                         account_id="OB1")
        with pytest.raises(RuntimeError, match="boom"):
            async with conn.transaction():
                await outbox.emit(conn, ThingHappened(thing_id=2, amount="2"), account_id="OB1")
                raise RuntimeError("boom")
        events = await repo.events_after(conn, "acct:OB1", 0, 10)
    assert [(e.seq, e.event_id, e.type, e.version, e.account_id) for e in events] == [
        (1, event_id, "test.thing_happened", 2, "OB1")]
    assert decode(events[0].type, events[0].payload.encode()) == ThingHappened(thing_id=1,
                                                                               amount="1.50")


async def test_emit_outside_a_transaction_is_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await outbox.emit(conn, ThingHappened(thing_id=1, amount="0"), account_id="OB2")


async def test_an_event_about_no_account_names_its_stream(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        with pytest.raises(ValueError, match="names its stream"):
            await outbox.emit(conn, ThingHappened(thing_id=1, amount="0"))
        await outbox.emit(conn, ThingHappened(thing_id=1, amount="0"), stream="source:s1")
        assert [e.seq for e in await repo.events_after(conn, "source:s1", 0, 10)] == [1]


async def test_concurrent_emitters_number_a_stream_without_gaps_in_commit_order(
        pool: asyncpg.Pool) -> None:
    committed: list[int] = []

    async def emitter(n: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await outbox.emit(conn, ThingHappened(thing_id=n, amount="0"), account_id="OB3")
            await asyncio.sleep(0.01 * (n % 3))  # hold the stream a while, in varied order
            committed.append(n)

    await asyncio.gather(*(emitter(n) for n in range(20)))
    async with pool.acquire() as conn:
        events = await repo.events_after(conn, "acct:OB3", 0, 100)
    assert [e.seq for e in events] == list(range(1, 21))
    # The head row's lock makes seq order the commit order.
    assert [decode(e.type, e.payload.encode()).thing_id for e in events] == committed  # type: ignore[attr-defined]


async def test_stored_events_cannot_be_changed(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            await outbox.emit(conn, ThingHappened(thing_id=9, amount="0"), account_id="OB4")
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
            await conn.execute("UPDATE outbox_events SET payload = '{}' WHERE stream = 'acct:OB4'")


def test_an_event_type_is_declared_once() -> None:
    assert REGISTRY["test.thing_happened"] is ThingHappened
    with pytest.raises(TypeError, match="declared twice"):
        class Again(DomainEvent, frozen=True):
            event_type: ClassVar[str] = "test.thing_happened"


@pytest.mark.parametrize("count", [3, repo.COPY_FROM])
async def test_a_bulk_append_wakes_the_consumers_whichever_way_it_writes(
        pool: asyncpg.Pool, count: int) -> None:
    """From ``COPY_FROM`` events a bulk append copies them in; either way the consumers are
    woken at commit, once per stream, and the events are numbered in the order given."""
    woken: list[str] = []

    def wake(*args: object) -> None:
        woken.append(str(args[3]))

    async with pool.acquire() as listener:
        await listener.add_listener(repo.CHANNEL, wake)
        async with pool.acquire() as conn, conn.transaction():
            await outbox.emit_many(conn, [(ThingHappened(thing_id=n, amount="1"), f"OBM{count}")
                                          for n in range(count)])
        for _ in range(100):
            if woken:
                break
            await asyncio.sleep(0.05)
        await listener.remove_listener(repo.CHANNEL, wake)
        events = await repo.events_after(listener, f"acct:OBM{count}", 0, count + 1)
    assert woken == [f"acct:OBM{count}"]
    assert [e.seq for e in events] == list(range(1, count + 1))
    assert [decode(e.type, e.payload.encode()).thing_id for e in events] == list(range(count))  # type: ignore[attr-defined]
    assert {e.account_id for e in events} == {f"OBM{count}"}
