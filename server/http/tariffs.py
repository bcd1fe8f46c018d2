"""`/v1/tariffs`: upload a catalog, publish a version, read tariffs and their versions.

There is no route that edits a version: a correction is a new version (a new
``effective_from``), and usage already rated is corrected by a rerate job.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from billing_oss.server.catalog.schema import CatalogFile, VersionDef
from billing_oss.server.http.auth import actor
from billing_oss.server.http.catalog_schema import check_catalog, check_version
from billing_oss.server.http.keys import POOL
from billing_oss.server.http.pagination import ListQuery, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Id, IntId, Timestamp
from billing_oss.server.http.validation import decode_body, decode_path, decode_query
from billing_oss.server.store import tariffs_repo
from billing_oss.server.store.tariffs_repo import CatalogLoaded, Tariff, TariffVersion


class TariffPath(msgspec.Struct, frozen=True):
    tariff_id: Id


class VersionPath(msgspec.Struct, frozen=True):
    tariff_id: Id
    version_id: IntId


class TariffPage(msgspec.Struct, frozen=True):
    items: list[Tariff]
    next_cursor: str | None


class VersionPage(msgspec.Struct, frozen=True):
    items: list[TariffVersion]
    next_cursor: str | None


async def upload_catalog(request: web.Request) -> web.Response:
    body = await decode_body(request, CatalogFile)
    billing = check_catalog(body)
    # What is stored is what was sent, as `catalog load` stores its file: the same catalog
    # gives the same rows (and version digests) on both paths.
    loaded = await tariffs_repo.upload_catalog(
        request.app[POOL], actor(request), await _as_sent(request), billing)
    return reply(loaded, status=201 if loaded.changed else 200)


async def list_tariffs(request: web.Request) -> web.Response:
    q = decode_query(request, ListQuery)
    after = decode_cursor(q.cursor, tuple[str])
    rows = await tariffs_repo.find(request.app[POOL], after[0] if after else None, q.limit)
    items, next_cursor = page(rows, q.limit, lambda t: (t.tariff_id,))
    return reply(TariffPage(items, next_cursor))


async def get_tariff(request: web.Request) -> web.Response:
    path = decode_path(request, TariffPath)
    return reply(await tariffs_repo.get(request.app[POOL], path.tariff_id))


async def list_versions(request: web.Request) -> web.Response:
    path = decode_path(request, TariffPath)
    q = decode_query(request, ListQuery)
    after = decode_cursor(q.cursor, tuple[Timestamp])
    rows = await tariffs_repo.versions(
        request.app[POOL], path.tariff_id, after[0] if after else None, q.limit)
    items, next_cursor = page(rows, q.limit, lambda v: (v.effective_from,))
    return reply(VersionPage(items, next_cursor))


async def publish_version(request: web.Request) -> web.Response:
    path = decode_path(request, TariffPath)
    body = await decode_body(request, VersionDef)
    check_version(body, path.tariff_id)
    published = await tariffs_repo.publish(
        request.app[POOL], actor(request), path.tariff_id, await _as_sent(request))
    return reply(published.version, status=201 if published.created else 200)


async def get_version(request: web.Request) -> web.Response:
    path = decode_path(request, VersionPath)
    return reply(await tariffs_repo.version(request.app[POOL], path.tariff_id, path.version_id))


async def _as_sent(request: web.Request) -> dict[str, Any]:
    """The JSON body as sent (already decoded and checked against its type)."""
    sent: dict[str, Any] = msgspec.json.decode(await request.read())
    return sent


def register(api: Api) -> None:
    tag = "tariffs"
    api.add("POST", "/v1/tariffs", upload_catalog,
            summary="Upload a catalog: tariffs, versions, accounts, products, tax rates, "
            "discounts (201 if anything was added or changed)",
            tag=tag, request=CatalogFile, response=CatalogLoaded, status=201,
            roles=("operator",), also=(200,), errors=(409,))
    api.add("GET", "/v1/tariffs", list_tariffs, summary="List tariffs", tag=tag,
            query=ListQuery, response=TariffPage, roles=("viewer",))
    api.add("GET", "/v1/tariffs/{tariff_id}", get_tariff, summary="Read a tariff", tag=tag,
            params=TariffPath, response=Tariff, roles=("viewer",))
    api.add("GET", "/v1/tariffs/{tariff_id}/versions", list_versions,
            summary="List a tariff's versions, oldest first", tag=tag, params=TariffPath,
            query=ListQuery, response=VersionPage, roles=("viewer",))
    api.add("POST", "/v1/tariffs/{tariff_id}/versions", publish_version,
            summary="Publish a version (the same content again: 200, no change)", tag=tag,
            params=TariffPath, request=VersionDef, response=TariffVersion, status=201,
            roles=("operator",), also=(200,), errors=(409,))
    api.add("GET", "/v1/tariffs/{tariff_id}/versions/{version_id}", get_version,
            summary="Read one version with its definition", tag=tag, params=VersionPath,
            response=TariffVersion, roles=("viewer",))
