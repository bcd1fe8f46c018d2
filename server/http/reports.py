"""`/v1/reports/{report}`: revenue, usage, top accounts and losing segments from the daily
charge rollups (``server.analytics.reports``). Viewers read. Dates are UTC days, ``to``
excluded; ``by`` is a comma-separated list of dimensions."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.analytics import anomalies, reports
from billing_oss.server.analytics.anomalies import Flag
from billing_oss.server.analytics.reports import Report
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Id, IntId
from billing_oss.server.http.validation import decode_body, decode_path, decode_query

Dimensions = Annotated[str, msgspec.Meta(max_length=200, pattern="^[A-Za-z0-9_.,-]*$",
                                         examples=["zone,country"])]


class ReportPath(msgspec.Struct, frozen=True):
    report: Literal["revenue", "usage", "top", "segments", "forecast", "mrr",
                    "collections"]


class ReportQuery(msgspec.Struct, frozen=True, kw_only=True):
    by: Dimensions = ""
    period: Literal["day", "week", "month", "total"] = "month"
    from_: dt.date | None = msgspec.field(name="from", default=None)
    to: dt.date | None = None
    account_id: Id | None = None
    service: Literal["voice", "sms", "data", "event"] | None = None
    top: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    horizon: Annotated[int, msgspec.Meta(ge=1, le=90)] = 14  # forecast: days ahead
    below_forecast: bool = False  # segments: only those also below their forecast


async def get_analytics_report(request: web.Request) -> web.Response:
    path = decode_path(request, ReportPath)
    q = decode_query(request, ReportQuery)
    end = q.to or dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    start = q.from_ or end - dt.timedelta(days=90)
    by = [d for d in q.by.split(",") if d]
    report = await reports.build(request.app[POOL], path.report, by=by, period=q.period,
                                 start=start, end=end, account=q.account_id,
                                 service=q.service, top=q.top, horizon=q.horizon,
                                 below_forecast=q.below_forecast)
    return reply(report)


class FlagQuery(msgspec.Struct, frozen=True, kw_only=True):
    state: Literal["new", "confirmed", "dismissed"] | None = None
    account_id: Id | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class FlagPage(msgspec.Struct, frozen=True):
    items: list[Flag]
    next_cursor: str | None


class DetectIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    from_: dt.date = msgspec.field(name="from")  # first UTC day scored
    to: dt.date  # the day after the last


class DetectOut(msgspec.Struct, frozen=True):
    method: str
    flagged: list[Flag]  # the flags this run added


class FlagPath(msgspec.Struct, frozen=True):
    flag_id: IntId


class ReviewIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    state: Literal["confirmed", "dismissed"]


async def list_flags(request: web.Request) -> web.Response:
    q = decode_query(request, FlagQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    rows = await anomalies.find(request.app[POOL], state=q.state, account=q.account_id,
                                after=after[0] if after else None, limit=q.limit + 1)
    items, next_cursor = page(rows, q.limit, lambda f: (f.flag_id,))
    return reply(FlagPage(items, next_cursor))


async def detect(request: web.Request) -> web.Response:
    body = await decode_body(request, DetectIn)
    if not body.from_ < body.to or (body.to - body.from_).days > 366:
        raise InvalidRequest("from must be before to, at most 366 days apart")
    found = await anomalies.run(request.app[POOL], first=body.from_,
                                last=body.to - dt.timedelta(days=1))
    return reply(DetectOut(anomalies.METHOD, found))


async def review(request: web.Request) -> web.Response:
    path = decode_path(request, FlagPath)
    body = await decode_body(request, ReviewIn)
    return reply(await anomalies.review(request.app[POOL], path.flag_id, body.state,
                                        actor(request)))


def register(api: Api) -> None:
    api.add("GET", "/v1/reports/{report}", get_analytics_report,
            summary="A report from the daily rollups: revenue, usage, top accounts, "
            "segments losing revenue (with their drivers), a revenue forecast, or MRR/ARR with "
            "new and churned accounts and ARPU", tag="reports",
            params=ReportPath, query=ReportQuery, response=Report, roles=("viewer",),
            errors=(422,))
    api.add("GET", "/v1/anomalies", list_flags, summary="Anomaly flags, oldest first",
            tag="reports", query=FlagQuery, response=FlagPage, roles=("viewer",))
    api.add("POST", "/v1/anomalies/detect", detect,
            summary="Score the days [from, to) of every account and service; store and emit "
            "new flags", tag="reports", request=DetectIn, response=DetectOut,
            roles=("operator",), errors=(422,))
    api.add("POST", "/v1/anomalies/{flag_id}/review", review,
            summary="Confirm or dismiss a new flag (the same verdict again: no change)",
            tag="reports", params=FlagPath, request=ReviewIn, response=Flag,
            roles=("operator",), errors=(404, 409, 422))
