"""Accounts: look one up, then its 360 — usage chart with its anomaly band, recent usage and
charges, invoices, credit notes, payments, balance, dunning state, subscriptions."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from typing import Any
from urllib.parse import quote

from aiohttp import web

from billing_oss.core.errors import NotFound
from billing_oss.server.analytics.detect import MAD_SCALE
from billing_oss.server.collections import balances
from billing_oss.server.collections import repo as collections_repo
from billing_oss.server.console import repo
from billing_oss.server.console.web import local_now, pool, render
from billing_oss.server.http.pagination import decode_cursor, encode_cursor
from billing_oss.server.store import account_usage_repo, accounts_repo, subscriptions_repo
from billing_oss.server.store.account_usage_repo import ItemFilter
from billing_oss.server.store.accounts_repo import AccountFilter
from billing_oss.server.store.subscriptions_repo import SubscriptionFilter

PAGE = 50
CHART_DAYS = 90
BAND_WINDOW = 28  # days of history behind each point's band
# A day is outside the band when its robust score passes 3; the scale is the detector's
# (server.analytics.detect): max(1.4826 × MAD, sqrt(median + 1)), so a quiet account's band
# is not zero wide.
BAND_WIDTH = 3.0


async def find_accounts(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()[:200]
    after = decode_cursor(request.query.get("cursor"), tuple[str])
    db = pool(request)
    if q and not after:
        found = await accounts_repo.find(db, AccountFilter(identifier=q, limit=1))
        exact = found[0].account_id if found else await _account_id(db, q)
        if exact is not None:
            raise web.HTTPFound(f"/console/accounts/{quote(exact, safe='')}")
    rows = await accounts_repo.find(db, AccountFilter(
        name_prefix=q or None, after=after[0] if after else None, limit=PAGE))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return render(request, "accounts.html", {
        "rows": rows, "q": q,
        "next_cursor": encode_cursor((rows[-1].account_id,)) if more else None})


async def account_360(request: web.Request) -> web.Response:
    db = pool(request)
    account = await accounts_repo.get(db, request.match_info["account_id"])
    today = local_now(request).date()
    daily = await repo.daily_usage(db, account.account_id, today - dt.timedelta(days=CHART_DAYS))
    before = decode_cursor(request.query.get("usage_cursor"), tuple[dt.datetime, int])
    usage = await account_usage_repo.items(
        db, ItemFilter(account_id=account.account_id), after=before, limit=PAGE + 1,
        newest_first=True)
    position = await balances.position(db, account.account_id)
    steps, suspended = await repo.dunning(db, account.account_id)
    return render(request, "account.html", {
        "account": account, "chart": _chart(daily, today), "usage": usage[:PAGE],
        "usage_next": encode_cursor((usage[PAGE - 1].event_time, usage[PAGE - 1].usage_id))
        if len(usage) > PAGE else None,
        "invoices": (await repo.invoices(db, account.account_id, None, 20))[:20],
        "credit_notes": (await repo.credit_notes(db, account.account_id, None, 20))[:20],
        "payments": (await collections_repo.payments(db, account.account_id, None, 20))[:20],
        "position": position, "dunning": steps, "suspended": suspended,
        "subscriptions": await subscriptions_repo.find(db, SubscriptionFilter(
            account_id=account.account_id, limit=50)),
    })


async def _account_id(db: Any, text: str) -> str | None:
    try:
        return (await accounts_repo.get(db, text)).account_id
    except NotFound:
        return None


def _chart(daily: list[Any], today: dt.date) -> dict[str, Any]:
    """Per day: records charged and the band inside which a day is not an anomaly."""
    by_day: dict[dt.date, int] = {}
    for r in daily:
        by_day[r["day"]] = by_day.get(r["day"], 0) + int(r["records"])
    days = [today - dt.timedelta(days=CHART_DAYS - i) for i in range(CHART_DAYS + 1)]
    counts = [by_day.get(d, 0) for d in days]
    low: list[float | None] = []
    high: list[float | None] = []
    for i in range(len(counts)):
        history = counts[max(0, i - BAND_WINDOW):i]
        if len(history) < 7:
            low.append(None)
            high.append(None)
            continue
        median = statistics.median(history)
        scale = max(statistics.median(abs(c - median) for c in history) * MAD_SCALE,
                    math.sqrt(median + 1))
        low.append(max(0.0, median - BAND_WIDTH * scale))
        high.append(median + BAND_WIDTH * scale)
    epoch = [int(dt.datetime.combine(d, dt.time(), dt.UTC).timestamp()) for d in days]
    return {"x": epoch, "records": counts, "low": low, "high": high}


def register(app: web.Application) -> None:
    app.router.add_get("/accounts", find_accounts)
    app.router.add_get("/accounts/{account_id}", account_360)
