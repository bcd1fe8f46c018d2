"""Settlement with carriers over HTTP: `/v1/partners` (admins configure, viewers read),
`/v1/settlement-files` (the file ledger; operators generate the next file of a partner) and
`/v1/settlement-reports` (per partner and period, as JSON, CSV or PDF)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from billing_oss.core.errors import InvalidRequest, NotFound
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import POOL
from billing_oss.server.http.pagination import Limit, ListQuery, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.validation import decode_body, decode_path, decode_query
from billing_oss.server.settlement import outbound, partners, repo, report
from billing_oss.server.settlement.model import PartnerIn, Tadig, file_view, partner_view

READ, ACT, CONFIGURE = ("viewer",), ("operator",), ("admin",)


class PartnerPath(msgspec.Struct, frozen=True):
    tadig: Tadig


class FilePath(msgspec.Struct, frozen=True):
    file_id: Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class FileQuery(msgspec.Struct, frozen=True, kw_only=True):
    partner: Tadig | None = None
    state: Annotated[str, msgspec.Meta(max_length=20, pattern="^[a-z]+$")] | None = None
    limit: Limit = 50
    cursor: Annotated[str, msgspec.Meta(max_length=512, pattern="^[A-Za-z0-9_-]*$")] | None \
        = None


class GenerateIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    partner: Tadig
    period_from: dt.datetime
    period_to: dt.datetime
    kind: Literal["chargeable", "test"] | None = None


class ReportQuery(msgspec.Struct, frozen=True, kw_only=True):
    partner: Tadig
    period_from: dt.datetime
    period_to: dt.datetime


class PartnerPage(msgspec.Struct, frozen=True):
    items: list[dict[str, Any]]
    next_cursor: str | None


class FilePage(msgspec.Struct, frozen=True):
    items: list[dict[str, Any]]
    next_cursor: str | None


def _period(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidRequest("period_from and period_to carry a UTC offset", errors=[
            {"location": "body", "path": "period_from", "message": "no UTC offset"}])
    if end <= start:
        raise InvalidRequest("period_to is not after period_from", errors=[
            {"location": "body", "path": "period_to", "message": "not after period_from"}])
    return start, end


async def list_partners(request: web.Request) -> web.Response:
    q = decode_query(request, ListQuery)
    after = decode_cursor(q.cursor, tuple[str])
    rows = await repo.list_partners(request.app[POOL], after[0] if after else None,
                                    q.limit + 1)
    items, cursor = page(rows, q.limit, lambda p: (p.tadig,))
    return reply(PartnerPage([partner_view(p) for p in items], cursor))


async def get_partner(request: web.Request) -> web.Response:
    path = decode_path(request, PartnerPath)
    found = await repo.get_partner(request.app[POOL], path.tadig)
    if found is None:
        raise NotFound(f"no partner {path.tadig}")
    return reply(partner_view(found))


async def put_partner(request: web.Request) -> web.Response:
    path = decode_path(request, PartnerPath)
    body = await decode_body(request, PartnerIn)
    if body.tadig != path.tadig:
        raise InvalidRequest("the body's tadig is not the path's", errors=[
            {"location": "body", "path": "tadig", "message": "not the path's"}])
    async with request.app[POOL].acquire() as conn, conn.transaction():
        before, after = await partners.put(conn, actor(request), body)
    return reply(partner_view(after), status=200 if before else 201)


async def list_settlement_files(request: web.Request) -> web.Response:
    q = decode_query(request, FileQuery)
    after = decode_cursor(q.cursor, tuple[int])
    rows = await repo.list_files(request.app[POOL], partner=q.partner, state=q.state,
                                 after=after[0] if after else None, limit=q.limit + 1)
    items, cursor = page(rows, q.limit, lambda f: (f.file_id,))
    return reply(FilePage([file_view(f) for f in items], cursor))


async def get_settlement_file(request: web.Request) -> web.Response:
    path = decode_path(request, FilePath)
    found = await repo.get_file(request.app[POOL], path.file_id)
    if found is None:
        raise NotFound(f"no settlement file {path.file_id}")
    return reply(file_view(found))


async def generate_file(request: web.Request) -> web.Response:
    body = await decode_body(request, GenerateIn)
    start, end = _period(body.period_from, body.period_to)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        made = await outbound.generate(conn, actor(request), body.partner, start, end,
                                       kind=body.kind)
    return reply(file_view(made.file) | {"not_settled": made.not_settled}, status=201)


async def get_settlement_report(request: web.Request) -> web.Response:
    q = decode_query(request, ReportQuery)
    start, end = _period(q.period_from, q.period_to)
    async with request.app[POOL].acquire() as conn:
        built = await report.build(conn, q.partner, start, end)
    return reply(built)


async def get_settlement_report_csv(request: web.Request) -> web.Response:
    q = decode_query(request, ReportQuery)
    start, end = _period(q.period_from, q.period_to)
    async with request.app[POOL].acquire() as conn:
        built = await report.build(conn, q.partner, start, end)
    return web.Response(text=report.to_csv(built), content_type="text/csv")


async def get_settlement_report_pdf(request: web.Request) -> web.Response:
    q = decode_query(request, ReportQuery)
    start, end = _period(q.period_from, q.period_to)
    async with request.app[POOL].acquire() as conn:
        built = await report.build(conn, q.partner, start, end)
    pdf = await asyncio.to_thread(report.to_pdf, built)  # CPU-bound: off the loop
    return web.Response(body=pdf, content_type="application/pdf")


def register(api: Api) -> None:
    api.add("GET", "/v1/partners", list_partners, summary="List roaming partners",
            tag="partners", query=ListQuery, response=PartnerPage, roles=READ)
    api.add("GET", "/v1/partners/{tadig}", get_partner, summary="One roaming partner",
            tag="partners", params=PartnerPath, response=dict, roles=READ, errors=(404,))
    api.add("PUT", "/v1/partners/{tadig}", put_partner,
            summary="Declare or replace a roaming partner (201 new, 200 replaced)",
            tag="partners", params=PartnerPath, request=PartnerIn, response=dict, status=201,
            also=(200,), roles=CONFIGURE)
    tag = "settlement"
    api.add("GET", "/v1/settlement-files", list_settlement_files, tag=tag,
            summary="The settlement file ledger (TAP, Notification, RAP, acknowledgements)",
            query=FileQuery, response=FilePage, roles=READ)
    api.add("GET", r"/v1/settlement-files/{file_id:\d+}", get_settlement_file, tag=tag,
            summary="One settlement file", params=FilePath, response=dict, roles=READ,
            errors=(404,))
    api.add("POST", "/v1/settlement-files", generate_file, tag=tag,
            summary="Generate a partner's next TAP file (a Notification when the period had "
            "no traffic)", request=GenerateIn, response=dict, status=201, roles=ACT,
            errors=(404, 409))
    api.add("GET", "/v1/settlement-reports", get_settlement_report, tag=tag,
            summary="Settlement report of a partner and period", query=ReportQuery,
            response=report.Report, roles=READ, errors=(404,))
    api.add("GET", "/v1/settlement-reports.csv", get_settlement_report_csv, tag=tag,
            summary="Settlement report as CSV", query=ReportQuery, response=str,
            content_type="text/csv", roles=READ, errors=(404,))
    api.add("GET", "/v1/settlement-reports.pdf", get_settlement_report_pdf, tag=tag,
            summary="Settlement report as PDF", query=ReportQuery, response=bytes,
            content_type="application/pdf", roles=READ, errors=(404,))
