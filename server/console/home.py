"""The home page: intake per source, open suspense, revenue month to date against its
run-rate, receivables aging, the latest controls run and the alarms waiting."""

from __future__ import annotations

import calendar
import datetime as dt
import itertools
from typing import Any

from aiohttp import web

from billing_oss.server.analytics import repo as analytics_repo
from billing_oss.server.assurance import repo as assurance_repo
from billing_oss.server.collections.aging import aging
from billing_oss.server.collections.model import DEFAULT_BUCKETS
from billing_oss.server.console import repo
from billing_oss.server.console.web import local_now, pool, render


async def home(request: web.Request) -> web.Response:
    db = pool(request)
    now = local_now(request)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = midnight.replace(day=1)
    days = calendar.monthrange(now.year, now.month)[1]
    elapsed = max((now - month_start) / dt.timedelta(days=1), 1 / 24)
    next_month = (month_start + dt.timedelta(days=32)).replace(day=1)
    revenue = []
    # The monthly rollups (the analytics reports' source, UTC days) answer in one row per
    # account where summing the month's charges would read every one of them.
    for t in await analytics_repo.totals(db, period="total", dims=(),
                                         start=month_start.date(), end=next_month.date()):
        net = int(t["amount_micros"])
        revenue.append({"currency": t["currency"], "net": net, "charges": t["records"],
                        "projected": round(net * days / elapsed)})
    runs = await assurance_repo.runs(db, before=None, limit=1)
    context: dict[str, Any] = {
        "intake": await repo.intake(db, midnight, now - dt.timedelta(hours=1)),
        "suspense": await repo.open_suspense_by_reason(db),
        "revenue": revenue, "month": month_start.strftime("%B %Y"),
        "aging": await aging(db, now.date()), "buckets": _bucket_names(DEFAULT_BUCKETS),
        "controls": await assurance_repo.get(db, runs[0].run_id) if runs else None,
        "flags": await analytics_repo.find_flags(db, state="new", account=None, after=None,
                                                 limit=10),
        "alarms": await repo.file_alarms(db, kind=None, limit=10),
    }
    return render(request, "home.html", context)


def _bucket_names(bounds: tuple[int, ...]) -> list[str]:
    names = ["current" if bounds[0] == 0 else f"≤ {bounds[0]} d"]
    names += [f"{a + 1}–{b} d" for a, b in itertools.pairwise(bounds)]
    return [*names, f"> {bounds[-1]} d"]


def register(app: web.Application) -> None:
    app.router.add_get("/", home)
