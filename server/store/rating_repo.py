"""What rating reads: tariff versions, and each account's identifiers and subscriptions.

Tariffs and accounts move apart (migration 1250): ``catalog_generation`` counts changes to
``tariffs``/``tariff_versions`` (what is compiled), ``account_generation`` changes to
``account_identifiers``/``subscriptions`` (what account resolution reads), and
``account_changes`` says which accounts moved at which account generation. A worker asks
``generations`` once per batch; reads every version only when the tariffs moved; reads
every account once, then only the accounts changed since the generation it has.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

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


class TariffRows(msgspec.Struct, frozen=True, kw_only=True):
    """Every tariff version, as of tariff ``generation``."""

    generation: int
    versions: list[VersionRow]


class AccountRows(msgspec.Struct, frozen=True, kw_only=True):
    """Identifiers and subscriptions of ``changed`` accounts (None: of every account), as
    of account ``generation``. A changed account without rows here has none left."""

    generation: int
    changed: list[str] | None
    identifiers: list[tuple[str, str]]  # (identifier, account id)
    subscriptions: list[SubscriptionRow]  # by account, then valid_from


async def generations(conn: Connection | asyncpg.Pool) -> tuple[int, int]:
    """(tariff generation, account generation): one round trip, made per batch."""
    row = await conn.fetchrow("SELECT (SELECT generation FROM catalog_generation),"
                              " (SELECT generation FROM account_generation)")
    assert row is not None
    return row[0], row[1]


async def tariff_rows(conn: Connection) -> TariffRows:
    """A consistent read (one repeatable-read transaction) of every tariff version."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        generation = await conn.fetchval("SELECT generation FROM catalog_generation")
        rows = await conn.fetch(
            "SELECT v.tariff_version_id, v.tariff_id, t.currency, v.effective_from, "
            "v.definition::text AS definition FROM tariff_versions v JOIN tariffs t "
            "USING (tariff_id) ORDER BY v.tariff_id, v.effective_from")
    return TariffRows(generation=generation, versions=[
        VersionRow(tariff_version_id=r[0], tariff_id=r[1], currency=r[2].strip(),
                   effective_from=r[3], definition=json.loads(r[4])) for r in rows])


async def account_rows(conn: Connection, since: int | None) -> AccountRows:
    """Every account's rows (``since`` None), else those of the accounts changed after
    account generation ``since``; one repeatable-read transaction."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        generation = await conn.fetchval("SELECT generation FROM account_generation")
        if since is None:
            changed = None
            identifiers = await conn.fetch("SELECT identifier, account_id FROM account_identifiers")
            subscriptions = await conn.fetch(_SUBSCRIPTIONS + " ORDER BY account_id, valid_from")
        else:
            changed = [r[0] for r in await conn.fetch(
                "SELECT account_id FROM account_changes WHERE generation > $1", since)]
            identifiers = await _of_accounts(
                conn, "SELECT identifier, account_id FROM account_identifiers", changed)
            subscriptions = await _of_accounts(conn, _SUBSCRIPTIONS, changed,
                                               " ORDER BY account_id, valid_from")
    return AccountRows(
        generation=generation, changed=changed,
        identifiers=[(r[0], r[1]) for r in identifiers],
        subscriptions=[SubscriptionRow(account_id=r[0], tariff_id=r[1], valid_from=r[2],
                                       valid_to=r[3]) for r in subscriptions])


_SUBSCRIPTIONS = "SELECT account_id, tariff_id, valid_from, valid_to FROM subscriptions"


async def _of_accounts(conn: Connection, select: str, account_ids: Sequence[str],
                       order: str = "") -> list[asyncpg.Record]:
    if not account_ids:
        return []
    rows: list[asyncpg.Record] = await conn.fetch(
        select + " WHERE account_id = ANY($1::text[])" + order, account_ids)
    return rows
