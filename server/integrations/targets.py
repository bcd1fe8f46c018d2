"""Where a webhook may be sent, and the signature each attempt carries.

Targets are https on public addresses unless the configuration allows http
(``webhooks.allow_http``) or private, loopback and link-local addresses
(``webhooks.allow_private``). A host name is checked when it is registered and again on
every connection, against the addresses it resolves to then, so a name that later points
inside the network is refused too. Redirects are never followed (the caller's business).

Signatures follow Standard Webhooks: ``webhook-id`` (the event's id, the same on every
attempt so a receiver can drop a repeat), ``webhook-timestamp`` (the attempt's time, so each
attempt is signed afresh) and ``webhook-signature``, one ``v1,<base64>`` per live secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


class TargetRefused(ValueError):
    """A URL or an address the configuration does not allow."""


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> str:
    """``url`` if it is a target the configuration allows; else ``TargetRefused`` saying
    why. Host names are checked again against what they resolve to at each connection."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise TargetRefused("the URL must be https://host/... (or http:// where allowed)")
    if parts.scheme == "http" and not allow_http:
        raise TargetRefused("http:// targets are not allowed (webhooks.allow_http); use https")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed; the signature "
                            "authenticates the sender")
    if port == 0:
        raise TargetRefused("port 0 is not a port")
    host = parts.hostname
    if not allow_private:
        if host == "localhost" or host.endswith(".localhost"):
            raise TargetRefused(f"{host} is a loopback name (webhooks.allow_private)")
        try:
            public = is_public(host)
        except ValueError:
            public = True  # a name: its addresses are checked at each connection
        if not public:
            raise TargetRefused(f"{host} is not a public address (webhooks.allow_private)")
    return url


class PolicyResolver(AbstractResolver):
    """Resolves as usual and keeps only the addresses the configuration allows, so a name
    that points at a private address fails to connect instead of reaching it."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        allowed = [r for r in found if self.allow_private or is_public(r["host"])]
        if not allowed:
            raise OSError(f"{host} resolves to no public address (webhooks.allow_private)")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


class Signer:
    """Signs with every live secret of an endpoint (two during a rotation's grace)."""

    def __init__(self, secrets_: list[str]) -> None:
        self.webhooks = [Webhook(s) for s in secrets_]

    def headers(self, event_id: str, body: str, now: dt.datetime) -> dict[str, Any]:
        signatures = " ".join(w.sign(event_id, now, body) for w in self.webhooks)
        return {"webhook-id": event_id, "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signatures, "content-type": "application/json"}
