"""`/v1/archives`: what ``billing-oss archive`` made, and its plan.

``GET /v1/archives/plan`` says per month with partitions whether the archive would take it,
hold it (and what holds it) or keep it (within the retention period), as of now or
``as_of``; ``GET /v1/archives`` lists the archives made. Archiving itself writes files on
the server's disk and stays a command (``billing-oss archive run``).
"""

from __future__ import annotations

import datetime as dt

import msgspec
from aiohttp import web

from billing_oss.server.http.keys import CONFIG, POOL
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Timestamp
from billing_oss.server.http.validation import decode_query
from billing_oss.server.retention import archive


class PlanQuery(msgspec.Struct, frozen=True, kw_only=True):
    as_of: Timestamp | None = None


class PlanPage(msgspec.Struct, frozen=True):
    archive_after_months: int
    items: list[archive.MonthPlan]


class ArchivePage(msgspec.Struct, frozen=True):
    items: list[archive.Archive]


async def get_plan(request: web.Request) -> web.Response:
    q = decode_query(request, PlanQuery)
    after = request.app[CONFIG].retention.archive_after_months
    plans = await archive.plan(request.app[POOL], q.as_of or dt.datetime.now(dt.UTC), after)
    return reply(PlanPage(after, plans))


async def list_archives(request: web.Request) -> web.Response:
    return reply(ArchivePage(await archive.list_archives(request.app[POOL])))


def register(api: Api) -> None:
    tag = "archives"
    api.add("GET", "/v1/archives/plan", get_plan,
            summary="Per month: archived next, held (and why) or kept", tag=tag,
            query=PlanQuery, response=PlanPage, roles=("operator",))
    api.add("GET", "/v1/archives", list_archives,
            summary="Archived months: files, rows, sha256", tag=tag, response=ArchivePage,
            roles=("operator",))
