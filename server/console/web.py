"""The console's sub-application: templates, static files, the session guard, page modules.

Mounted by ``server.http.app`` under ``/console``. Every page and fragment needs a live
session (pages redirect to the sign-in, fragments and posts get 401); every POST carries the
session's CSRF token (a form field or the ``X-CSRF-Token`` header htmx sends); each handler
names the least role it serves, granted as in the API (``server.http.auth.GRANTS``).
"""

from __future__ import annotations

import datetime as dt
import hmac
import importlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web

from billing_oss.core.errors import BillingError
from billing_oss.core.money import format_labelled
from billing_oss.server.config import ConsoleConfig
from billing_oss.server.console import repo
from billing_oss.server.console.repo import Session
from billing_oss.server.http.auth import GRANTS
from billing_oss.server.http.keys import POOL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

PREFIX = "/console"
SIGN_IN = f"{PREFIX}/sign-in"
COOKIE = "console_session"
HERE = Path(__file__).resolve().parent
PAGE_MODULES: tuple[str, ...] = (
    "billing_oss.server.console.signin",
    "billing_oss.server.console.home",
    "billing_oss.server.console.suspense",
    "billing_oss.server.console.accounts",
    "billing_oss.server.console.documents",
    "billing_oss.server.console.jobs",
    "billing_oss.server.console.operations",
    "billing_oss.server.console.portal",
)
SESSION = web.RequestKey("console_session", Session)
SETTINGS = web.AppKey("console_settings", ConsoleConfig)
# No inline script or style anywhere: charts read their data from JSON blocks.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'self'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def needs(role: str) -> Callable[[H], H]:
    """Mark a handler with the least role it serves (``viewer`` when unmarked)."""
    def mark(handler: H) -> H:
        handler.console_role = role  # type: ignore[attr-defined]
        return handler
    return mark


def session(request: web.Request) -> Session:
    return request[SESSION]


def actor(request: web.Request) -> str:
    """The audit log's name for the signed-in key, as the API writes it."""
    return f"key:{request[SESSION].key.key_id}"


def pool(request: web.Request) -> Any:
    return request.config_dict[POOL]


def settings(request: web.Request) -> ConsoleConfig:
    return request.config_dict[SETTINGS]


def render(request: web.Request, template: str, context: dict[str, Any],
           status: int = 200) -> web.Response:
    current = request.get(SESSION)
    return aiohttp_jinja2.render_template(template, request, {
        **context, "session": current, "csrf": current.csrf_token if current else "",
        "can_operate": bool(current and "operator" in GRANTS.get(current.key.role, ())),
        "path": request.path}, status=status)


def field(form: Any, name: str) -> str:
    """A form's text field, or "" when absent (or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def fragment(request: web.Request) -> bool:
    return request.path.startswith(f"{PREFIX}/fragments/") or "HX-Request" in request.headers


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(f"{PREFIX}/static/") or request.path == SIGN_IN:
        return await _secured(request, handler)
    cookie = request.cookies.get(COOKIE)
    current = await repo.session(request.config_dict[POOL], cookie) if cookie else None
    if current is None:
        if fragment(request) or request.method != "GET":
            return web.Response(status=401, text="Your session has ended: sign in again.",
                                headers={"HX-Redirect": SIGN_IN, **SECURITY_HEADERS})
        raise web.HTTPFound(f"{SIGN_IN}?{urlencode({'next': request.path_qs})}")
    request[SESSION] = current
    if request.method not in ("GET", "HEAD"):
        sent = request.headers.get("X-CSRF-Token") or field(await request.post(), "csrf")
        if not sent or not hmac.compare_digest(sent, current.csrf_token):
            return _error(request, 403, "This form has expired or did not come from the"
                          " console (no valid CSRF token): reload the page and try again.")
    role = getattr(request.match_info.handler, "console_role", "viewer")
    if role not in GRANTS.get(current.key.role, frozenset()):
        return _error(request, 403, f"Your key's role ({current.key.role}) may not do this"
                      f" (needs {role}).")
    return await _secured(request, handler)


async def _secured(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except BillingError as exc:
        response = _error(request, exc.http_status, exc.message)
    for name, value in SECURITY_HEADERS.items():
        if name != "Content-Security-Policy" or response.content_type == "text/html":
            response.headers.setdefault(name, value)
    return response


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if fragment(request):
        return web.Response(status=status, text=message, headers=SECURITY_HEADERS)
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def create_console(config: ConsoleConfig) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[SETTINGS] = config
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    zone = ZoneInfo(config.timezone)
    env.filters["money"] = labelled
    # ``timezone``: another zone than the operator's (the portal shows the account's)
    env.filters["when"] = lambda t, fmt="%Y-%m-%d %H:%M", timezone=None: _when(
        t, ZoneInfo(timezone) if timezone else zone, fmt)
    env.globals["timezone"] = config.timezone
    for name in PAGE_MODULES:
        importlib.import_module(name).register(app)
    app.router.add_static("/static/", HERE / "static", name="static")
    return app


def labelled(micros: int | None, currency: str) -> str:
    """An amount as the console shows it (``core.money.format_labelled``); none: blank."""
    return "" if micros is None else format_labelled(int(micros), currency.strip())


def _when(moment: dt.datetime | dt.date | None, zone: ZoneInfo, fmt: str) -> str:
    if moment is None:
        return ""
    if isinstance(moment, dt.datetime):
        return moment.astimezone(zone).strftime(fmt)
    return moment.isoformat()


def local_now(request: web.Request) -> dt.datetime:
    return dt.datetime.now(ZoneInfo(settings(request).timezone))
