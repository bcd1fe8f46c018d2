"""What a customer key may see: its own account, nothing else.

A ``customer`` key names one account. ``server.http.auth`` refuses it on every route that
does not declare the ``customer`` role and, on those that do, on any ``account_id`` in the
path or the query other than its own. What a route reads by another id (an invoice, a
payment, a credit note) it checks with ``own`` once loaded; a list narrows itself with
``narrowed``. Operator, viewer and admin keys see every account: both helpers pass them by.
"""

from __future__ import annotations

from aiohttp import web

from billing_oss.core.errors import Forbidden
from billing_oss.server.http.keys import PRINCIPAL


def customer_account(request: web.Request) -> str | None:
    """The account a customer key is bound to; None for any other key (or no key)."""
    key = request.get(PRINCIPAL)
    return key.account_id if key is not None and key.role == "customer" else None


def own(request: web.Request, account_id: str, what: str = "this") -> None:
    """Refuse (403) a customer key reading ``what`` of an account not its own."""
    mine = customer_account(request)
    if mine is not None and account_id != mine:
        raise Forbidden(f"a customer key sees its own account only: {what} is another's")


def narrowed(request: web.Request, account_id: str | None) -> str | None:
    """The account a list filters on: the one asked for, or, for a customer key, its own
    (asking for another is refused with 403)."""
    mine = customer_account(request)
    if mine is None:
        return account_id
    own(request, account_id or mine, f"account {account_id}")
    return mine
