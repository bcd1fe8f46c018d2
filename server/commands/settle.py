"""`billing-oss settle partners|rates|generate|send|receive|correct|files|report`: settlement
with roaming partners (``server.settlement``).

- ``partners load FILE`` declares partners and exchange rates from a JSON file
  (``{"partners": [...], "exchange_rates": [...]}``); ``partners list`` shows them.
- ``generate --partner T --from D --to D`` writes the partner's next TAP file of the visiting
  usage in ``[from, to)`` (a Notification when there was none).
- ``send --partner T`` uploads the files not sent yet over SFTP (temporary name, renamed).
- ``receive --partner T`` collects the partner's RAP files over SFTP; ``receive FILE...``
  applies local ones.
- ``correct --partner T`` rerates the events a severe return rejected, for the next file.
- ``files [--partner T]`` lists the file ledger; ``report`` prints the settlement report
  (``--format json|csv|pdf``, ``--output FILE``).

Exit statuses: 0 ok, 1 bad input (a file refused, an unknown partner), 2 usage or
configuration, 3 when some received files were refused and others applied.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import msgspec

from billing_oss.core.errors import BillingError, ConfigError
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.settlement import (
    exchange,
    inbound,
    outbound,
    partners,
    repo,
    report,
    tapin,
)
from billing_oss.server.settlement.model import file_view, partner_view


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "settle", help="settlement with roaming partners (TAP3 out, RAP in, reports)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser("partners", help="declare or list roaming partners")
    p.add_argument("what", choices=("load", "list"))
    p.add_argument("file", nargs="?", type=Path, help="partners JSON file (load)")
    g = actions.add_parser("generate", help="write a partner's next TAP file")
    g.add_argument("--partner", required=True, metavar="TADIG")
    g.add_argument("--from", dest="start", required=True, metavar="DATE",
                   help="start of the usage period (UTC date or RFC 3339 time)")
    g.add_argument("--to", dest="end", required=True, metavar="DATE", help="end (exclusive)")
    g.add_argument("--kind", choices=("chargeable", "test"),
                   help="file kind (default: the partner's)")
    s = actions.add_parser("send", help="upload the files not sent yet over SFTP")
    s.add_argument("--partner", required=True, metavar="TADIG")
    r = actions.add_parser("receive", help="apply RAP files (SFTP, or local FILEs)")
    r.add_argument("--partner", metavar="TADIG", help="collect over SFTP from this partner")
    r.add_argument("files", nargs="*", type=Path)
    c = actions.add_parser("correct", help="rerate returned events for the next file")
    c.add_argument("--partner", required=True, metavar="TADIG")
    f = actions.add_parser("files", help="the settlement file ledger")
    f.add_argument("--partner", metavar="TADIG")
    f.add_argument("--state")
    rep = actions.add_parser("report", help="settlement report of a partner and period")
    rep.add_argument("--partner", required=True, metavar="TADIG")
    rep.add_argument("--from", dest="start", required=True, metavar="DATE")
    rep.add_argument("--to", dest="end", required=True, metavar="DATE")
    rep.add_argument("--format", choices=("json", "csv", "pdf"), default="json")
    rep.add_argument("--output", type=Path, help="write to FILE (a PDF needs one)")
    for sub in (p, g, s, r, c, f, rep):
        sub.add_argument("--json", action="store_true", help="JSON output for scripts")
        add_config_options(sub)
    parser.set_defaults(handler=run)


def moment(text: str, option: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{option}: {text!r} is not a date or RFC 3339 time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def run(args: argparse.Namespace) -> int:
    if args.action == "partners" and args.what == "load" and args.file is None:
        raise ConfigError("partners load needs a FILE")
    if args.action == "report" and args.format == "pdf" and args.output is None:
        raise ConfigError("--format pdf needs --output FILE")
    if args.action == "receive" and not args.partner and not args.files:
        raise ConfigError("receive needs --partner (SFTP) or FILEs")
    config = load_config(args)
    return asyncio.run(_act(args, config))


async def _act(args: argparse.Namespace, config: Any) -> int:
    actor = cli_actor()
    async with database_pool(config) as pool:
        action = args.action
        if action == "partners":
            return await _partners(pool, actor, args)
        if action == "generate":
            start, end = moment(args.start, "--from"), moment(args.end, "--to")
            if end <= start:
                raise ConfigError("--to is not after --from")
            async with pool.acquire() as conn, conn.transaction():
                made = await outbound.generate(conn, actor, args.partner, start, end,
                                               kind=args.kind)
            out = outbound.summary(made.file) | {"not_settled": made.not_settled}
            _emit(out, args.json, f"{made.file.name}: {made.file.file_type}, "
                  f"{made.file.event_count} events, total {made.file.total()} "
                  f"{made.file.tap_currency}"
                  + (f" ({made.not_settled} records left in suspense)"
                     if made.not_settled else ""))
            return 0
        if action == "send":
            sent = await exchange.send(pool, actor, args.partner)
            for s in sent:
                _emit({"sent": s.name, "file_id": s.file_id}, args.json, f"sent {s.name}")
            if not sent and not args.json:
                print("nothing to send")
            return 0
        if action == "receive":
            return await _receive(pool, actor, args)
        if action == "correct":
            async with pool.acquire() as conn, conn.transaction():
                n = await inbound.correct(conn, actor, args.partner)
            _emit({"corrected": n}, args.json, f"{n} returned events corrected")
            return 0
        if action == "files":
            rows = await repo.list_files(pool, partner=args.partner, state=args.state,
                                         after=None, limit=100000)
            for row in rows:
                _emit(file_view(row), args.json,
                      f"{row.file_id:>6} {row.direction:<3} {row.file_type:<12} {row.name:<20} "
                      f"{row.state:<12} {row.event_count:>8} {row.total():>14} "
                      f"{row.tap_currency}")
            return 0
        return await _report(pool, args)


async def _partners(pool: Any, actor: str, args: argparse.Namespace) -> int:
    if args.what == "load":
        try:
            data = args.file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None
        declared, rates = partners.parse_partners(data)
        async with pool.acquire() as conn, conn.transaction():
            for p in declared:
                await partners.put(conn, actor, p)
            for r in rates:
                await partners.put_rate(conn, actor, r)
        _emit({"partners": len(declared), "exchange_rates": len(rates)}, args.json,
              f"{len(declared)} partners, {len(rates)} exchange rates loaded")
        return 0
    for q in await repo.list_partners(pool, None, 100000):
        _emit(partner_view(q), args.json,
              f"{q.tadig}  ours {q.our_tadig}  {q.name}  TAP {q.tap_currency}/"
              f"{q.tap_decimal_places}dp  local {q.local_currency}  tariff {q.wholesale_tariff}"
              f"  IMSI {','.join(q.imsi_prefixes)}")
    return 0


async def _receive(pool: Any, actor: str, args: argparse.Namespace) -> int:
    ok = failed = 0
    if args.partner:
        for got in await exchange.collect(pool, actor, args.partner):
            _emit(msgspec.to_builtins(got), args.json,
                  f"{got.name}: {'applied' if got.ok else 'refused'} ({got.detail})")
            ok, failed = ok + got.ok, failed + (not got.ok)
    for path in args.files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        try:
            received = await inbound.receive(pool, actor, path.name, data)
        except BillingError as exc:
            print(f"billing-oss settle: {path}: {exc.message}", file=sys.stderr)
            failed += 1
            continue
        ok += 1
        _emit(msgspec.to_builtins(received) | {"file": file_view(received.file)}, args.json,
              f"{path.name}: {_describe(received)}")
    if failed:
        return 3 if ok else 1
    return 0


async def _report(pool: Any, args: argparse.Namespace) -> int:
    start, end = moment(args.start, "--from"), moment(args.end, "--to")
    async with pool.acquire() as conn:
        built = await report.build(conn, args.partner, start, end)
    if args.format == "pdf":
        args.output.write_bytes(await asyncio.to_thread(report.to_pdf, built))
        print(f"wrote {args.output}")
        return 0
    text = (report.to_csv(built) if args.format == "csv"
            else msgspec.json.format(msgspec.json.encode(built)).decode() + "\n")
    if args.output is not None:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _describe(got: inbound.Received | tapin.TapReceived) -> str:
    text = f"{got.file.file_type} {got.file.state}"
    if got.duplicate:
        return text + " (already received)"
    if isinstance(got, tapin.TapReceived):
        if got.fatal:
            return text + f" ({'; '.join(got.fatal)}), answered by RAP {got.rap}"
        return (text + f", {got.accepted} events"
                + (f", {got.billed} billed as roaming usage" if got.billed else "")
                + (f", {got.unbilled} in suspense (subscriber unknown)" if got.unbilled else "")
                + (f", {got.severe} returned by RAP {got.rap}" if got.severe else ""))
    return (text + (f", regenerated {', '.join(got.fatal)}" if got.fatal else "")
            + (f", {got.severe} events returned" if got.severe else "")
            + (f", acknowledged {', '.join(got.acknowledged)}" if got.acknowledged else ""))


def _emit(obj: Any, as_json: bool, line: str) -> None:
    print(msgspec.json.encode(obj).decode() if as_json else line)

