"""`/v1/reports/{report}`: revenue, usage, top accounts and losing segments from the daily
charge rollups (``server.analytics.reports``). Viewers read. Dates are UTC days, ``to``
excluded; ``by`` is a comma-separated list of dimensions."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from billing_oss.server.analytics import reports
from billing_oss.server.analytics.reports import Report
from billing_oss.server.http.keys import POOL
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Id
from billing_oss.server.http.validation import decode_path, decode_query

Dimensions = Annotated[str, msgspec.Meta(max_length=200, pattern="^[A-Za-z0-9_.,-]*$",
                                         examples=["zone,country"])]


class ReportPath(msgspec.Struct, frozen=True):
    report: Literal["revenue", "usage", "top", "segments"]


class ReportQuery(msgspec.Struct, frozen=True, kw_only=True):
    by: Dimensions = ""
    period: Literal["day", "week", "month", "total"] = "month"
    from_: dt.date | None = msgspec.field(name="from", default=None)
    to: dt.date | None = None
    account_id: Id | None = None
    service: Literal["voice", "sms", "data", "event"] | None = None
    top: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10


async def get_report(request: web.Request) -> web.Response:
    path = decode_path(request, ReportPath)
    q = decode_query(request, ReportQuery)
    end = q.to or dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    start = q.from_ or end - dt.timedelta(days=90)
    by = [d for d in q.by.split(",") if d]
    report = await reports.build(request.app[POOL], path.report, by=by, period=q.period,
                                 start=start, end=end, account=q.account_id,
                                 service=q.service, top=q.top)
    return reply(report)


def register(api: Api) -> None:
    api.add("GET", "/v1/reports/{report}", get_report,
            summary="A report from the daily rollups: revenue, usage, top accounts or "
            "segments losing revenue (with their drivers)", tag="reports",
            params=ReportPath, query=ReportQuery, response=Report, roles=("viewer",),
            errors=(422,))
