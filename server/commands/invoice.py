"""`billing-oss invoice show|pdf|xml ID`: one stored invoice as JSON, as its PDF/A-3
document (Factur-X XML attached) or as its EN 16931 CII XML.

`pdf` and `xml` write to `--output FILE`, or to stdout when it is not a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import msgspec

from server.billing import cii, documents, render_pdf, views
from server.commands.options import add_config_options, load_config
from server.errors import BillingError
from server.service import database_pool

FORMATS = ("show", "pdf", "xml")


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "invoice", help="print a stored invoice as JSON, PDF or EN 16931 XML")
    parser.add_argument("what", choices=FORMATS, help="show (JSON), pdf or xml")
    parser.add_argument("invoice_id", type=int, metavar="ID")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write the document here (pdf, xml)")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    if args.what != "show" and args.output is None and sys.stdout.isatty():
        print(f"billing-oss invoice: refusing to write {args.what} to a terminal; "
              "use --output FILE or a pipe", file=sys.stderr)
        return 2

    async def fetch() -> documents.Invoice:
        async with database_pool(config) as pool, pool.acquire() as conn:
            return await documents.load(conn, args.invoice_id)

    try:
        invoice = asyncio.run(fetch())
    except BillingError as exc:
        print(f"billing-oss invoice: {exc.message}", file=sys.stderr)
        return exc.exit_status
    if args.what == "show":
        data = msgspec.json.format(msgspec.json.encode(views.invoice_view(invoice)), indent=2)
    else:
        data = render_pdf.render(invoice) if args.what == "pdf" else cii.to_xml(invoice)
    if args.output is not None:
        args.output.write_bytes(data)
    else:
        sys.stdout.buffer.write(data + (b"\n" if args.what == "show" else b""))
        sys.stdout.buffer.flush()
    return 0
