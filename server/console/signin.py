"""Sign-in (an API key exchanged for a session cookie) and sign-out.

Before a session exists the sign-in form's CSRF token is a double submit: a random value in
a SameSite=Strict cookie that the form must echo, so another site cannot sign a browser in
with a key of its own.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from billing_oss.server.console import repo
from billing_oss.server.console.web import (
    COOKIE,
    PREFIX,
    SIGN_IN,
    field,
    needs,
    pool,
    render,
    settings,
)
from billing_oss.server.http.auth import GRANTS
from billing_oss.server.store import api_keys

PRE_COOKIE = "console_sign_in"
PORTAL = f"{PREFIX}/portal"


async def sign_in_form(request: web.Request) -> web.Response:
    return _form(request, None, 200)


def _form(request: web.Request, message: str | None, status: int) -> web.Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "sign_in.html", {
        "sign_in_csrf": token, "message": message,
        "next": _next(request.query.get("next"))}, status=status)
    response.set_cookie(PRE_COOKIE, token, path=SIGN_IN, httponly=True, samesite="Strict",
                        secure=request.secure, max_age=3600)
    return response


async def sign_in(request: web.Request) -> web.Response:
    form = await request.post()
    sent, expected = field(form, "csrf"), request.cookies.get(PRE_COOKIE)
    if not (sent and expected and hmac.compare_digest(sent, expected)):
        return _form(request, "The sign-in form expired: try again.", 403)
    token = field(form, "api_key").strip()
    key = await api_keys.verify(pool(request), token) if token else None
    if key is None:
        return _form(request, "That API key is unknown or revoked.", 401)
    if not {"viewer", "customer"} & GRANTS.get(key.role, frozenset()):
        return _form(request, f"A key with the {key.role} role cannot use the console.", 403)
    minutes = settings(request).session_minutes
    session_id, _ = await repo.open_session(pool(request), key.key_id, minutes)
    # A customer key has its own page: the operator's are not for it.
    target = PORTAL if key.role == "customer" else _next(field(form, "next"))
    response = web.HTTPFound(target)
    response.set_cookie(COOKIE, session_id, path=PREFIX, httponly=True, samesite="Strict",
                        secure=request.secure, max_age=minutes * 60)
    response.del_cookie(PRE_COOKIE, path=SIGN_IN)
    raise response


@needs("viewer")
async def sign_out(request: web.Request) -> web.Response:
    cookie = request.cookies.get(COOKIE)
    if cookie:
        await repo.close_session(pool(request), cookie)
    response = web.HTTPFound(SIGN_IN)
    response.del_cookie(COOKIE, path=PREFIX)
    raise response


def _next(target: str | None) -> str:
    """Only a console path: never another site (``//host``) after signing in."""
    if target and target.startswith(f"{PREFIX}/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return f"{PREFIX}/"


def register(app: web.Application) -> None:
    app.router.add_get("/sign-in", sign_in_form)
    app.router.add_post("/sign-in", sign_in)
    app.router.add_post("/sign-out", sign_out)
