"""The rater the pipeline uses, built from the catalog stored in the database.

Two parts move at their own pace (``server.store.rating_repo``): the tariffs, compiled into
the kernel's prefix tables and bands, and the accounts directory (identifier -> account and
its subscriptions). ``RaterCache.current()`` costs one small query per batch while neither
moved. When only accounts moved, it reads the changed accounts and updates the directory the
rater holds, in place: a new account is rated by the next batch, nothing is recompiled. When
the tariffs moved, it rebuilds the rater (``build_rater``, in a thread) around the same
directory. Anyone who changes the catalog (admin API, a catalog load, a rerate job) needs to
do nothing more. ``RaterCache.invalidate()`` forces a full rebuild.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import asyncpg

from billing_oss.core.metrics import RATING_COMPILES
from billing_oss.core.ports import Rater
from billing_oss.server.catalog import Account, Plan, catalog_from_definitions
from billing_oss.server.rating import Accounts, NativeRater
from billing_oss.server.store import rating_repo
from billing_oss.server.store.pool import Connection
from billing_oss.server.store.rating_repo import (
    AccountRows,
    SubscriptionRow,
    TariffRows,
    VersionRow,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
R = TypeVar("R", bound=Rater)


class RaterFactory(Protocol):
    """Builds a rater for the stored tariff ``versions`` around the ``accounts`` directory,
    which the cache keeps up to date afterwards (the rater must read it, not copy it)."""

    def __call__(self, versions: Sequence[VersionRow], accounts: Accounts) -> Rater: ...


def build_rater(versions: Sequence[VersionRow], accounts: Accounts) -> NativeRater:
    """The production rater: the native kernel over the stored versions; its charges cite
    each version's ``tariff_version_id``. Each call compiles (``RATING_COMPILES``)."""
    began = time.perf_counter()
    tariffs: dict[str, dict[str, Any]] = {}
    for v in versions:
        tariff = tariffs.setdefault(v.tariff_id, {"id": v.tariff_id, "currency": v.currency,
                                                  "versions": []})
        tariff["versions"].append(v.definition)
    currency = versions[0].currency if versions else "EUR"
    catalog = catalog_from_definitions(currency, list(tariffs.values()), {})
    version_ids = {(v.tariff_id, _micros(v.effective_from)): v.tariff_version_id
                   for v in versions}
    rater = NativeRater(catalog, accounts=accounts, version_ids=version_ids)
    RATING_COMPILES.observe(time.perf_counter() - began)
    return rater


async def load_rater(conn: Connection) -> NativeRater:
    """A rater of the catalog as ``conn`` sees it, for one-off users (controls, reports) that
    keep no cache."""
    rater, _, _ = await build_from(await read_catalog(conn), build_rater)
    return rater


CatalogRows = tuple[AccountRows, TariffRows]


async def read_catalog(conn: Connection) -> CatalogRows:
    """Everything a rater is built from: every account, every tariff version."""
    return await rating_repo.account_rows(conn, None), await rating_repo.tariff_rows(conn)


async def build_from(rows: CatalogRows, factory: Callable[[Sequence[VersionRow], Accounts], R],
                     ) -> tuple[R, Accounts, tuple[int, int]]:
    """A rater, its accounts directory and the (tariff, account) generations it reflects.
    A full read of a million identifiers takes a while: the directory is filled off the event
    loop, as the prefix tables are compiled."""
    account_rows, tariff_rows = rows
    accounts = Accounts()
    await asyncio.to_thread(apply_account_rows, accounts, account_rows)
    rater = await asyncio.to_thread(factory, tariff_rows.versions, accounts)
    return rater, accounts, (tariff_rows.generation, account_rows.generation)


def apply_account_rows(accounts: Accounts, rows: AccountRows) -> None:
    """Bring ``accounts`` up to date with ``rows``. An account is rated on the plan of each
    record's event time; an account with no subscription at all is not resolved
    (``UNKNOWN_ACCOUNT``)."""
    plans = _plans(rows.subscriptions)
    current = {identifier: plans[account_id] for identifier, account_id in rows.identifiers
               if account_id in plans}
    accounts.replace(rows.changed or (), current)


def _plans(subscriptions: Sequence[SubscriptionRow]) -> dict[str, Account]:
    """account id -> its ``Account``: its subscriptions, and as ``tariff_id`` the tariff of
    the one valid now (else the latest)."""
    now = datetime.now(UTC)
    histories: dict[str, list[Plan]] = {}
    current: dict[str, str] = {}
    for s in subscriptions:  # ordered by account, valid_from
        histories.setdefault(s.account_id, []).append(Plan(
            _micros(s.valid_from), None if s.valid_to is None else _micros(s.valid_to),
            s.tariff_id))
        if s.valid_from <= now and (s.valid_to is None or now < s.valid_to):
            current[s.account_id] = s.tariff_id
        else:
            current.setdefault(s.account_id, s.tariff_id)
    return {account_id: Account(account_id, current[account_id], tuple(history))
            for account_id, history in histories.items()}


def _micros(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1)


class RaterCache:
    """The current rater for a pool: rebuilt when the tariffs move, its accounts directory
    updated in place when accounts move."""

    def __init__(self, pool: asyncpg.Pool, factory: RaterFactory) -> None:
        self._pool = pool
        self._factory = factory
        self._rater: Rater | None = None
        self._accounts = Accounts()
        self._seen: tuple[int, int] | None = None  # (tariff, account) generations reflected
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._rater = None

    @property
    def generations(self) -> tuple[int, int] | None:
        """The (tariff, account) generations the current rater reflects."""
        return self._seen

    async def current(self) -> Rater:
        now = await rating_repo.generations(self._pool)
        rater = self._rater
        if rater is not None and now == self._seen:
            return rater
        async with self._lock:
            if self._rater is None or now != self._seen:
                await self._refresh()
            assert self._rater is not None
            return self._rater

    async def _refresh(self) -> None:
        if self._rater is None or self._seen is None:
            await self._rebuild()
        else:
            await self._catch_up(self._seen)

    async def _rebuild(self) -> None:
        """Everything read afresh, into a new directory (a rater in use keeps its own)."""
        # The pooled connection goes back before the compile.
        async with self._pool.acquire() as conn:
            rows = await read_catalog(conn)
        self._rater, self._accounts, self._seen = await build_from(rows, self._factory)

    async def _catch_up(self, seen: tuple[int, int]) -> None:
        """Only what moved since ``seen``: the changed accounts, the tariffs if they did."""
        tariff_generation, account_generation = seen
        async with self._pool.acquire() as conn:
            tariffs_now, accounts_now = await rating_repo.generations(conn)
            account_rows = (await rating_repo.account_rows(conn, account_generation)
                            if accounts_now != account_generation else None)
            tariff_rows = (await rating_repo.tariff_rows(conn)
                           if tariffs_now != tariff_generation else None)
        if account_rows is not None:
            await asyncio.to_thread(apply_account_rows, self._accounts, account_rows)
            account_generation = account_rows.generation
            self._seen = (tariff_generation, account_generation)
        if tariff_rows is not None:
            self._rater = await asyncio.to_thread(self._factory, tariff_rows.versions,
                                                  self._accounts)
            self._seen = (tariff_rows.generation, account_generation)
