"""The file ledger, settlement, integrations and audit pages: what arrived and what is
missing, what was exchanged with partners, what was delivered to webhooks (and replaying
it), and whether the audit chain and its checkpoints hold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from aiohttp import web

from billing_oss.core.errors import BillingError
from billing_oss.core.money import format_scaled
from billing_oss.server.assurance import checkpoints
from billing_oss.server.assurance import repo as assurance_repo
from billing_oss.server.console import repo
from billing_oss.server.console.web import field, needs, pool, render
from billing_oss.server.http.keys import CONFIG
from billing_oss.server.http.pagination import decode_cursor, encode_cursor
from billing_oss.server.integrations import webhook_repo, webhooks
from billing_oss.server.settlement import repo as settlement_repo
from billing_oss.server.store import audit, files_repo

PAGE = 50
FILE_STATES = ("claimed", "done", "error")


async def file_ledger(request: web.Request) -> web.Response:
    source = request.query.get("source", "").strip()[:200] or None
    partner = request.query.get("partner", "").strip()[:200] or None
    state = request.query.get("state") or None
    after = decode_cursor(request.query.get("cursor"), tuple[int])
    db = pool(request)
    rows = await files_repo.find(db, source=source, state=state, partner=partner,
                                 after=after[0] if after else None, limit=PAGE)
    return render(request, "files.html", {
        "rows": rows[:PAGE], "states": FILE_STATES,
        "filters": {"source": source or "", "partner": partner or "", "state": state or ""},
        "next_cursor": encode_cursor((rows[PAGE - 1].source_file_id,))
        if len(rows) > PAGE else None,
        "gaps": await files_repo.gaps(db, source=source, limit=PAGE),
        "alarms": await repo.file_alarms(db, kind=None, limit=PAGE)})


async def settlement(request: web.Request) -> web.Response:
    db = pool(request)
    after = decode_cursor(request.query.get("cursor"), tuple[int])
    files = await settlement_repo.list_files(db, partner=None, state=None,
                                             after=after[0] if after else None,
                                             limit=PAGE + 1)
    return render(request, "settlement.html", {
        "partners": (await settlement_repo.list_partners(db, None, PAGE + 1))[:PAGE],
        "files": [{"f": f, "total": format_scaled(f.total_charge, f.decimal_places)}
                  for f in files[:PAGE]],
        "next_cursor": encode_cursor((files[PAGE - 1].file_id,)) if len(files) > PAGE else None})


async def integrations(request: web.Request) -> web.Response:
    endpoint_id = _int(request.query.get("endpoint"))
    state = request.query.get("state") or None
    before = decode_cursor(request.query.get("cursor"), tuple[int])
    async with pool(request).acquire() as conn:
        endpoints = (await webhook_repo.find(conn, None, PAGE + 1))[:PAGE]
        chosen = next((e for e in endpoints if e.endpoint_id == endpoint_id), None) \
            or (endpoints[0] if endpoints else None)
        deliveries: list[Any] = []
        if chosen is not None:
            deliveries = await webhook_repo.deliveries(
                conn, chosen.endpoint_id, state=state, after=before[0] if before else None,
                limit=PAGE + 1)
    return render(request, "integrations.html", {
        "endpoints": endpoints, "chosen": chosen, "deliveries": deliveries[:PAGE],
        "next_cursor": encode_cursor((deliveries[PAGE - 1].delivery_id,))
        if len(deliveries) > PAGE else None,
        "state": state or "", "message": request.query.get("queued")})


@needs("operator")
async def replay(request: web.Request) -> web.Response:
    form = await request.post()
    endpoint_id = _int(field(form, "endpoint_id"))
    event_id = field(form, "event_id")
    hours = _int(field(form, "hours"))
    if endpoint_id is None:
        raise web.HTTPSeeOther("/console/integrations")
    try:
        if event_id.strip():
            count = await webhooks.replay(pool(request), endpoint_id, event_id=event_id.strip())
        else:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=min(hours or 24, 24 * 90))
            count = await webhooks.replay(pool(request), endpoint_id, since=since)
    except BillingError as exc:
        raise web.HTTPSeeOther(f"/console/integrations?endpoint={endpoint_id}"
                               f"&queued=refused: {exc.message}") from None
    raise web.HTTPSeeOther(f"/console/integrations?endpoint={endpoint_id}"
                           f"&queued={count} deliveries queued again")


async def audit_page(request: web.Request) -> web.Response:
    after = decode_cursor(request.query.get("cursor"), tuple[int])
    runs = await assurance_repo.runs(pool(request), before=after[0] if after else None,
                                     limit=PAGE + 1)
    return render(request, "audit.html", {
        "runs": runs[:PAGE], "checkpoints": _checkpoints(request),
        "next_cursor": encode_cursor((runs[PAGE - 1].run_id,)) if len(runs) > PAGE else None})


async def audit_verify(request: web.Request) -> web.Response:
    """Recompute the chain (and hold it against the latest checkpoint, when there is one)."""
    result = await audit.verify(pool(request))
    latest = _latest_checkpoint(request)
    against: dict[str, Any] | None = None
    if latest is not None:
        try:
            signed = checkpoints.read(latest)
            async with pool(request).acquire() as conn:
                found = await checkpoints.verify(conn, signed)
            against = {"name": latest.name, "problems": found, "rejected": None}
        except ValueError as exc:
            against = {"name": latest.name, "problems": [], "rejected": str(exc)}
    return render(request, "audit_verify.html", {"result": result, "against": against})


def _checkpoint_dir(request: web.Request) -> Path | None:
    configured = request.config_dict[CONFIG].assurance.checkpoint_dir
    return Path(configured) if configured else None


def _latest_checkpoint(request: web.Request) -> Path | None:
    directory = _checkpoint_dir(request)
    return checkpoints.latest(directory) if directory and directory.is_dir() else None


def _checkpoints(request: web.Request) -> list[dict[str, Any]]:
    directory = _checkpoint_dir(request)
    if directory is None or not directory.is_dir():
        return []
    out = []
    found = [p for p in directory.glob("checkpoint-*.json")
             if not p.name.endswith(".leaves.json")]
    for path in sorted(found, reverse=True)[:20]:
        try:
            c = checkpoints.read(path)
            out.append({"name": path.name, "seq": c.seq, "at": c.at, "leaves": c.leaves,
                        "signed": True})
        except ValueError as exc:
            out.append({"name": path.name, "error": str(exc), "signed": False})
    return out


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and len(text) < 19 else None


def register(app: web.Application) -> None:
    app.router.add_get("/files", file_ledger)
    app.router.add_get("/settlement", settlement)
    app.router.add_get("/integrations", integrations)
    app.router.add_post("/integrations/replay", replay)
    app.router.add_get("/audit", audit_page)
    app.router.add_get("/fragments/audit/verify", audit_verify)
