"""The rater the pipeline uses, built from the database and rebuilt when the catalog changes.

``load_snapshot(conn)`` reads what rating needs — every tariff version's definition, account
identifiers and subscriptions — together with ``catalog_generation``, which triggers bump on
any change to those tables (and announce with ``NOTIFY billing_catalog``).
``RaterCache.current()`` costs one small query per batch while the generation is unchanged
and rebuilds the rater (through the injected factory) when it moved. Anyone who changes the
catalog (admin API publishing a version, a rerate job) needs to do nothing more: the next batch
picks the new catalog up. ``RaterCache.invalidate()`` forces a rebuild.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from billing_oss.core.ports import Rater
from billing_oss.server.store.pool import Connection


class VersionRow(msgspec.Struct, frozen=True, kw_only=True):
    tariff_version_id: int
    tariff_id: str
    currency: str
    effective_from: datetime
    definition: dict[str, Any]


class SubscriptionRow(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    tariff_id: str
    valid_from: datetime
    valid_to: datetime | None


class CatalogSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Everything rating reads from the database, as of ``generation``."""

    generation: int
    versions: list[VersionRow]
    identifiers: dict[str, str]  # identifier → account id
    subscriptions: list[SubscriptionRow]


RaterFactory = Callable[[CatalogSnapshot], Rater]


async def load_snapshot(conn: Connection) -> CatalogSnapshot:
    """A consistent read (one repeatable-read transaction) of the rating inputs."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        generation = await conn.fetchval("SELECT generation FROM catalog_generation")
        versions = await conn.fetch(
            "SELECT v.tariff_version_id, v.tariff_id, t.currency, v.effective_from, "
            "v.definition::text AS definition FROM tariff_versions v JOIN tariffs t "
            "USING (tariff_id) ORDER BY v.tariff_id, v.effective_from")
        identifiers = await conn.fetch("SELECT identifier, account_id FROM account_identifiers")
        subscriptions = await conn.fetch(
            "SELECT account_id, tariff_id, valid_from, valid_to FROM subscriptions "
            "ORDER BY account_id, valid_from")
    return CatalogSnapshot(
        generation=generation,
        versions=[VersionRow(tariff_version_id=r[0], tariff_id=r[1], currency=r[2].strip(),
                             effective_from=r[3], definition=json.loads(r[4]))
                  for r in versions],
        identifiers={r[0]: r[1] for r in identifiers},
        subscriptions=[SubscriptionRow(account_id=r[0], tariff_id=r[1], valid_from=r[2],
                                       valid_to=r[3]) for r in subscriptions],
    )


class RaterCache:
    """The current rater for a pool; rebuilt when ``catalog_generation`` moves."""

    def __init__(self, pool: asyncpg.Pool, factory: RaterFactory) -> None:
        self._pool = pool
        self._factory = factory
        self._rater: Rater | None = None
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._rater = None

    async def current(self) -> Rater:
        generation = await self._pool.fetchval("SELECT generation FROM catalog_generation")
        rater = self._rater
        if rater is not None and rater.generation == generation:
            return rater
        async with self._lock:
            if self._rater is None or self._rater.generation != generation:
                async with self._pool.acquire() as conn:
                    snapshot = await load_snapshot(conn)
                # Building compiles prefix tries; keep the loop responsive meanwhile.
                self._rater = await asyncio.to_thread(self._factory, snapshot)
            return self._rater
