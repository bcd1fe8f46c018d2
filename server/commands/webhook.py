"""`billing-oss webhook add|list|deliveries|replay|rotate|enable|disable|ping|delete`:
webhook endpoints from the shell (the running server delivers; this only records)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

import asyncpg
import msgspec

from billing_oss.core.errors import BillingError
from billing_oss.server.commands.options import add_config_options, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.config import Config
from billing_oss.server.integrations import webhook_repo, webhooks


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "webhook", help="webhook endpoints: register, list, delivery log, replay")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="register an endpoint; its secret is printed once")
    add.add_argument("url")
    add.add_argument("--event", dest="events", action="append", required=True,
                     metavar="TYPE", help="an event type to send (repeat; * for all)")
    add.add_argument("--description", default="")
    add.add_argument("--max-concurrency", type=int, help="attempts in flight at once")
    actions.add_parser("list", help="list endpoints")
    deliveries = actions.add_parser("deliveries", help="an endpoint's delivery log")
    deliveries.add_argument("endpoint_id", type=int)
    deliveries.add_argument("--state", choices=["pending", "delivered", "dead"])
    deliveries.add_argument("--limit", type=int, default=20)
    replay = actions.add_parser("replay", help="deliver one event, or a time range, again")
    replay.add_argument("endpoint_id", type=int)
    replay.add_argument("--event-id")
    replay.add_argument("--since", type=_timestamp, help="RFC 3339; with --until (default now)")
    replay.add_argument("--until", type=_timestamp)
    rotate = actions.add_parser("rotate", help="a new secret; the old one signs for --grace-s")
    rotate.add_argument("endpoint_id", type=int)
    rotate.add_argument("--grace-s", type=float)
    ping = actions.add_parser("ping", help="send the endpoint a webhook.ping event")
    ping.add_argument("endpoint_id", type=int)
    subs = [add, actions.choices["list"], deliveries, replay, rotate, ping]
    for name in ("enable", "disable", "delete"):
        sub = actions.add_parser(name, help=f"{name} an endpoint")
        sub.add_argument("endpoint_id", type=int)
        subs.append(sub)
    for sub in subs:
        add_config_options(sub)
        sub.add_argument("--json", action="store_true", help="JSON output for scripts")
    parser.set_defaults(handler=run)


def _timestamp(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text}: give the offset (Z or +hh:mm)")
    return value


def run(args: argparse.Namespace) -> int:
    config = load_config(args)

    async def act() -> int:
        async with database_pool(config) as pool:
            try:
                data, text = await _act(args, config, pool)
            except BillingError as exc:
                print(f"billing-oss webhook: {exc.message}", file=sys.stderr)
                return exc.exit_status
        print(msgspec.json.encode(data).decode() if args.json else text)
        return 0

    return asyncio.run(act())


async def _act(args: argparse.Namespace, config: Config, pool: asyncpg.Pool
               ) -> tuple[Any, str]:
    settings = config.webhooks
    if args.action == "add":
        new = await webhooks.create(pool, settings, args.url, args.events, args.description,
                                    args.max_concurrency)
        return new, (f"endpoint {new.endpoint.endpoint_id} → {new.endpoint.url}\n"
                     f"secret {new.secret}  (store it now, it is not shown again)")
    if args.action == "list":
        async with pool.acquire() as conn:
            found = await webhook_repo.find(conn, None, 10_000)
        return found, "\n".join(
            f"{e.endpoint_id:>4}  {'enabled ' if e.enabled else 'DISABLED'}  {e.url}  "
            f"{','.join(e.event_types)}" + (f"  ({e.disabled_reason})" if e.disabled_reason
                                             else "") for e in found) or "no endpoints"
    if args.action == "deliveries":
        async with pool.acquire() as conn:
            await webhook_repo.get(conn, args.endpoint_id)
            rows = await webhook_repo.deliveries(conn, args.endpoint_id, state=args.state,
                                                 after=None, limit=args.limit)
        return rows, "\n".join(
            f"{d.delivery_id:>6}  {d.state:<9} {d.event_type:<28} {d.event_id}  "
            f"attempts {d.attempts}  last {d.last_status or '-'}"
            f"{'' if d.last_latency_ms is None else f' in {d.last_latency_ms:.0f} ms'}"
            f"{'  ' + d.last_error if d.last_error else ''}" for d in rows) or "no deliveries"
    if args.action == "replay":
        count = await webhooks.replay(pool, args.endpoint_id, event_id=args.event_id,
                                      since=args.since, until=args.until)
        return {"queued": count}, f"{count} deliveries queued again"
    if args.action == "rotate":
        rotated = await webhooks.rotate(pool, settings, args.endpoint_id, args.grace_s)
        return rotated, (f"secret {rotated.secret}\nthe previous secret signs too until "
                         f"{rotated.previous_expires_at.isoformat()}")
    if args.action == "ping":
        event_id = await webhooks.ping(pool, args.endpoint_id, "ping")
        return {"event_id": event_id}, f"ping {event_id} queued"
    if args.action == "delete":
        async with pool.acquire() as conn, conn.transaction():
            gone = await webhook_repo.delete(conn, args.endpoint_id)
        return gone, f"deleted endpoint {gone.endpoint_id}"
    endpoint = await webhooks.update(pool, settings, args.endpoint_id,
                                     enabled=args.action == "enable")
    return endpoint, f"endpoint {endpoint.endpoint_id} {args.action}d"
