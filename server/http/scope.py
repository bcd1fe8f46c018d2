"""What a customer key may see: its own account, nothing else.

A ``customer`` key names one account. ``server.http.auth`` refuses it on every route that
does not declare the ``customer`` role and, on those that do, on any ``account_id`` in the
path or the query other than its own. What a route reads by another id (an invoice, a
payment, a credit note) it loads inside ``unseen`` and checks with ``own``: an id of another
account and an id that does not exist answer alike (403, the same message), so a customer key
cannot tell which ids exist. A list narrows itself with ``narrowed``. Operator, viewer and
admin keys see every account: the helpers pass them by.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from aiohttp import web

from billing_oss.core.errors import Forbidden, NotFound
from billing_oss.server.http.keys import PRINCIPAL


def customer_account(request: web.Request) -> str | None:
    """The account a customer key is bound to; None for any other key (or no key)."""
    key = request.get(PRINCIPAL)
    return key.account_id if key is not None and key.role == "customer" else None


def own(request: web.Request, account_id: str, what: str = "this") -> None:
    """Refuse (403) a customer key reading ``what`` of an account not its own."""
    mine = customer_account(request)
    if mine is not None and account_id != mine:
        raise Forbidden(refusal(what))


def refusal(what: str) -> str:
    return f"a customer key sees its own account only: {what} is not its account's"


@contextlib.contextmanager
def unseen(request: web.Request, what: str) -> Iterator[None]:
    """Load ``what`` in the body: for a customer key, an id that does not exist is refused
    as another account's is (403), not answered with 404."""
    try:
        yield
    except NotFound:
        if customer_account(request) is not None:
            raise Forbidden(refusal(what)) from None
        raise


def narrowed(request: web.Request, account_id: str | None) -> str | None:
    """The account a list filters on: the one asked for, or, for a customer key, its own
    (asking for another is refused with 403)."""
    mine = customer_account(request)
    if mine is None:
        return account_id
    own(request, account_id or mine, f"account {account_id}")
    return mine
