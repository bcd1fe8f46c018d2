"""Suspense triage: filter open records by reason, source and age; inspect one with its raw
bytes and reason; retry or discard a selection. Retry and discard are the API's own
functions, so they audit the same way."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, get_args

from aiohttp import web

from billing_oss.core.errors import BillingError
from billing_oss.core.money import parse_micros
from billing_oss.server.console import repo
from billing_oss.server.console.web import actor, field, needs, pool, render
from billing_oss.server.http import suspense as suspense_api
from billing_oss.server.http.keys import PIPELINE
from billing_oss.server.http.pagination import decode_cursor, encode_cursor
from billing_oss.server.store import suspense_repo

PAGE = 50
MAX_SELECTED = 500
CORRECTABLE: tuple[str, ...] = get_args(suspense_api.CorrectableField)
NUMBERS = ("duration_s", "volume_up", "volume_down")  # the record's integer fields


async def triage(request: web.Request) -> web.Response:
    q = request.query
    reason, source = q.get("reason") or None, q.get("source") or None
    age = _int(q.get("older_than_days"))
    older_than = (dt.datetime.now(dt.UTC) - dt.timedelta(days=age)) if age else None
    after = decode_cursor(q.get("cursor"), tuple[int])
    rows = await repo.suspense_page(pool(request), reason=reason, source=source,
                                    older_than=older_than, after=after[0] if after else None,
                                    limit=PAGE)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    filters = {"reason": reason or "", "source": source or "",
               "older_than_days": str(age) if age else ""}
    return render(request, "suspense.html", {
        "rows": rows, "filters": filters,
        "reasons": await repo.open_suspense_by_reason(pool(request)),
        "next_cursor": encode_cursor((rows[-1]["suspense_id"],)) if more else None,
        "outcomes": [], "message": None})


async def inspect(request: web.Request) -> web.Response:
    suspense_id = _int(request.match_info["suspense_id"])
    item = await suspense_repo.get(pool(request), suspense_id or 0)
    return _detail(request, item, None)


def _detail(request: web.Request, item: suspense_repo.SuspenseDetail,
            message: dict[str, str] | None) -> web.Response:
    record = item.record if isinstance(item.record, dict) else {}
    return render(request, "suspense_detail.html", {
        "item": item, "record": json.dumps(item.record, indent=2, ensure_ascii=False),
        "hexdump": _hexdump(item.raw) if item.raw else None, "message": message,
        "fields": [(name, "" if record.get(name) is None else str(record[name]))
                   for name in CORRECTABLE]})


@needs("operator")
async def correct(request: web.Request) -> web.Response:
    """Correct fields of a record's decoded form (the API's ``correct``, audited alike); the
    fragment comes back with the corrected record, ready to retry."""
    suspense_id = _int(request.match_info["suspense_id"]) or 0
    form = await request.post()
    item = await suspense_repo.get(pool(request), suspense_id)
    record = item.record if isinstance(item.record, dict) else {}
    changes: dict[str, str | int | None] = {}
    for name in CORRECTABLE:
        if name not in form:
            continue
        text = field(form, name).strip()
        value: str | int | None = None if not text else (
            int(text) if name in NUMBERS and text.isdigit() and len(text) < 19 else text)
        if value != record.get(name):
            changes[name] = value
    reason = field(form, "reason").strip()[:500]
    if not changes:
        return _detail(request, item, {"bad": "Change at least one field."})
    if not reason:
        return _detail(request, item, {"bad": "A correction needs a reason."})
    try:
        item = await suspense_api.correct(pool(request), actor(request), suspense_id, changes,
                                          reason)
    except BillingError as exc:
        return _detail(request, item, {"bad": exc.message})
    return _detail(request, item, {"ok": f"Corrected {', '.join(sorted(changes))}: retry the"
                                         " record to rate it as corrected."})


@needs("operator")
async def act(request: web.Request) -> web.Response:
    form = await request.post()
    ids = [i for i in (_int(v) for v in form.getall("id", []) if isinstance(v, str)) if i]
    action = field(form, "action")
    outcomes: list[dict[str, Any]] = []
    message = None
    if not ids:
        message = "Select at least one record."
    elif len(ids) > MAX_SELECTED:
        message = f"Select at most {MAX_SELECTED} records at once."
    elif action == "retry":
        for sid in ids:
            outcomes.append(await _one(sid, suspense_api.retry(
                pool(request), request.config_dict.get(PIPELINE), actor(request), sid)))
    elif action == "discard":
        reason = field(form, "reason")
        if not reason.strip():
            message = "A discard needs a reason."
        else:
            for sid in ids:
                outcomes.append(await _one(sid, suspense_repo.discard(
                    pool(request), actor(request), sid, reason.strip()[:500])))
    else:
        message = "Choose retry or discard."
    return render(request, "suspense_outcomes.html", {"outcomes": outcomes, "message": message,
                                                      "htmx": "HX-Request" in request.headers},
                  status=200 if message is None else 422)


async def _one(suspense_id: int, work: Any) -> dict[str, Any]:
    try:
        done = await work
    except BillingError as exc:
        return {"suspense_id": suspense_id, "status": "refused", "detail": exc.message,
                "amount": None, "currency": ""}
    if isinstance(done, suspense_api.RetryOutcome):
        return {"suspense_id": suspense_id, "status": done.status,
                "detail": done.reason or done.detail or "",
                "amount": parse_micros(done.amount.amount) if done.amount else None,
                "currency": done.amount.currency if done.amount else ""}
    return {"suspense_id": suspense_id, "status": "discarded", "detail": done.resolution,
            "amount": None, "currency": ""}


def _hexdump(raw: bytes, width: int = 16, limit: int = 4096) -> str:
    lines = []
    for offset in range(0, min(len(raw), limit), width):
        chunk = raw[offset:offset + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {chunk.hex(' '):<{width * 3}} {text}")
    if len(raw) > limit:
        lines.append(f"… {len(raw) - limit} more bytes")
    return "\n".join(lines)


def _int(text: str | None) -> int | None:
    if text is None or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def register(app: web.Application) -> None:
    app.router.add_get("/suspense", triage)
    app.router.add_get("/fragments/suspense/{suspense_id}", inspect)
    app.router.add_post("/suspense/actions", act)
    app.router.add_post(r"/suspense/{suspense_id:\d{1,18}}/correct", correct)
