"""`billing-oss invoice show|pdf|xml ID`, `invoice list` and `invoice pdfs`: one stored
invoice as JSON, as its PDF/A-3 document (Factur-X XML and XMP metadata) or as its EN 16931
CII XML; the stored invoices, one line each; or every finalised invoice of a cycle as PDF
files in a directory (server.commands.invoice_export).

ID is the invoice id (``4``) or the number printed on it (``INV-000004``). `pdf` and `xml`
write to `--output FILE`, or to stdout when it is not a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from billing_oss.core.errors import ConfigError, NotFound
from billing_oss.core.money import format_minor
from billing_oss.server.billing import documents_repo, issuing, views
from billing_oss.server.billing.render import cii, itemised, typst_pdf
from billing_oss.server.commands import invoice_export
from billing_oss.server.commands.options import add_config_options, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.config import Config
from billing_oss.server.store.pool import Connection

FORMATS = ("show", "pdf", "xml")
T = TypeVar("T")


def register(verbs: Any) -> None:
    parser = add_document_verb(verbs, "invoice", "print a stored invoice as JSON, PDF or "
                               "EN 16931 XML, list invoices, or export a cycle's PDFs",
                               listing=True)
    parser.set_defaults(handler=run)


def add_document_verb(verbs: Any, verb: str, help_text: str, *,
                      listing: bool = False) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = verbs.add_parser(verb, help=help_text)
    parser.add_argument("what", choices=FORMATS + (("list", "pdfs") if listing else ()),
                        help="show (JSON), pdf or xml" + (", list, or pdfs (a cycle's "
                                                          "finalised invoices)" if listing
                                                          else ""))
    parser.add_argument("document_id", metavar="ID", nargs="?",
                        help="the id (4) or the number printed on it (INV-000004)")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write the document here (pdf, xml)")
    if listing:
        parser.add_argument("--account", help="list, pdfs: only this account")
        parser.add_argument("--status", choices=["draft", "finalised"],
                            help="list: only drafts or finalised invoices")
        parser.add_argument("--period", metavar="YYYY-MM",
                            help="list: only this cycle; pdfs: this cycle")
        parser.add_argument("--limit", type=int, default=100, help="list: at most N (100)")
        parser.add_argument("--json", action="store_true", help="list: one JSON object a line")
        parser.add_argument("--output-dir", type=Path, metavar="DIR",
                            help="pdfs: write <number>.pdf files here (rewrites those there)")
        parser.add_argument("--threads", type=int, metavar="N",
                            help="pdfs: typeset on N threads (default: one a core)")
    add_config_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.what == "list":
        return list_invoices(args)
    if args.what == "pdfs":
        return invoice_export.run(args)

    async def fetch(conn: Connection) -> tuple[issuing.Invoice, itemised.Itemised | None]:
        invoice_id = await resolve_id(conn, "invoices", "invoice_id", args.document_id)
        invoice = await issuing.load(conn, invoice_id)
        items = await itemised.load(conn, invoice.account_id, invoice_id) \
            if args.what == "pdf" else None
        return invoice, items

    def render(found: tuple[issuing.Invoice, itemised.Itemised | None]) -> bytes:
        invoice, items = found
        if args.what == "show":
            return msgspec.json.format(msgspec.json.encode(views.invoice_view(invoice)),
                                       indent=2)
        return typst_pdf.render(invoice, items) if args.what == "pdf" else cii.to_xml(invoice)

    return print_document(args, "invoice", fetch, render)


async def resolve_id(conn: Connection, table: str, id_column: str, given: str) -> int:
    """A document's id from its id or its printed number (``<series>-<number>``)."""
    if given.isdigit():
        return int(given)
    series, _, number = given.rpartition("-")
    what = "invoice" if table == "invoices" else "credit note"
    if not series or not number.isdigit():
        raise NotFound(f"no {what} {given}: give its id (4) or its number (INV-000004)")
    found = await documents_repo.id_by_number(conn, table, id_column, series, int(number))
    if found is None:
        raise NotFound(f"no {what} numbered {given}")
    return found


def print_document(args: argparse.Namespace, verb: str,
                   fetch: Callable[[Connection], Awaitable[T]],
                   render: Callable[[T], bytes]) -> int:
    """Fetch a document, render it as ``args.what`` and write it to ``--output`` or stdout."""
    if args.document_id is None:
        raise ConfigError(f"{args.what} needs the document's ID")
    if args.what != "show" and args.output is None and sys.stdout.isatty():
        raise ConfigError(f"refusing to write {args.what} to a terminal; use --output FILE "
                          "or a pipe")
    if args.output is not None and not args.output.parent.is_dir():
        # Checked before the database starts: a typo costs nothing.
        raise ConfigError(f"--output {args.output}: no directory {args.output.parent}")
    config = load_config(args)
    document = asyncio.run(_fetch(config, fetch))
    data = render(document)
    if args.output is not None:
        try:
            args.output.write_bytes(data)
        except OSError as exc:
            raise ConfigError(f"--output {args.output}: {exc.strerror}") from None
    else:
        sys.stdout.buffer.write(data + (b"\n" if args.what == "show" else b""))
        sys.stdout.buffer.flush()
    return 0


async def _fetch(config: Config, fetch: Callable[[Connection], Awaitable[T]]) -> T:
    async with database_pool(config) as pool, pool.acquire() as conn:
        return await fetch(conn)


def list_invoices(args: argparse.Namespace) -> int:
    if args.document_id is not None:
        raise ConfigError("list takes no ID (filter with --account, --status, --period)")
    if args.output is not None:
        raise ConfigError("list prints to stdout: no -o (redirect it to a file)")
    if not 1 <= args.limit <= 10_000:
        raise ConfigError("--limit must be between 1 and 10000")
    config = load_config(args)

    async def fetch() -> list[Any]:
        async with database_pool(config) as pool:
            return await documents_repo.invoice_list(
                pool, account_id=args.account, status=args.status, period=args.period,
                limit=args.limit)

    rows = asyncio.run(fetch())
    for r in rows:
        currency = r["currency"].strip()
        if args.json:
            print(msgspec.json.encode({
                "invoice_id": r["invoice_id"], "number": r["number_text"],
                "account_id": r["account_id"], "status": r["status"], "period": r["period"],
                "payable": {"amount": format_minor(r["payable_micros"], currency),
                            "currency": currency},
                "issue_date": r["issue_date"], "due_date": r["due_date"]}).decode())
        else:
            print(f"{r['invoice_id']:>6}  {r['number_text'] or '(draft)':<12} "
                  f"{r['status']:<9} {r['period']}  {r['account_id']:<16} "
                  f"{format_minor(r['payable_micros'], currency):>14} {currency}")
    if not rows and not args.json:
        print("no invoices")
    return 0

