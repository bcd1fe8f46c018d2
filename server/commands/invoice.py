"""`billing-oss invoice show|pdf|xml ID`: one stored invoice as JSON, as its PDF/A-3
document (Factur-X XML and XMP metadata) or as its EN 16931 CII XML.

`pdf` and `xml` write to `--output FILE`, or to stdout when it is not a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from billing_oss.core.errors import BillingError
from billing_oss.server.billing import issuing, views
from billing_oss.server.billing.render import cii, typst_pdf
from billing_oss.server.commands.options import add_config_options, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.config import Config
from billing_oss.server.store.pool import Connection

FORMATS = ("show", "pdf", "xml")
T = TypeVar("T")


def register(verbs: Any) -> None:
    parser = add_document_verb(verbs, "invoice", "print a stored invoice as JSON, PDF or "
                               "EN 16931 XML")
    parser.set_defaults(handler=run)


def add_document_verb(verbs: Any, verb: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = verbs.add_parser(verb, help=help_text)
    parser.add_argument("what", choices=FORMATS, help="show (JSON), pdf or xml")
    parser.add_argument("document_id", type=int, metavar="ID")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write the document here (pdf, xml)")
    add_config_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    def render(invoice: issuing.Invoice) -> bytes:
        if args.what == "show":
            return msgspec.json.format(msgspec.json.encode(views.invoice_view(invoice)),
                                       indent=2)
        return typst_pdf.render(invoice) if args.what == "pdf" else cii.to_xml(invoice)

    return print_document(args, "invoice",
                          lambda conn: issuing.load(conn, args.document_id), render)


def print_document(args: argparse.Namespace, verb: str,
                   fetch: Callable[[Connection], Awaitable[T]],
                   render: Callable[[T], bytes]) -> int:
    """Fetch a document, render it as ``args.what`` and write it to ``--output`` or stdout."""
    config = load_config(args)
    if args.what != "show" and args.output is None and sys.stdout.isatty():
        print(f"billing-oss {verb}: refusing to write {args.what} to a terminal; "
              "use --output FILE or a pipe", file=sys.stderr)
        return 2
    try:
        document = asyncio.run(_fetch(config, fetch))
    except BillingError as exc:
        print(f"billing-oss {verb}: {exc.message}", file=sys.stderr)
        return exc.exit_status
    data = render(document)
    if args.output is not None:
        args.output.write_bytes(data)
    else:
        sys.stdout.buffer.write(data + (b"\n" if args.what == "show" else b""))
        sys.stdout.buffer.flush()
    return 0


async def _fetch(config: Config, fetch: Callable[[Connection], Awaitable[T]]) -> T:
    async with database_pool(config) as pool, pool.acquire() as conn:
        return await fetch(conn)
