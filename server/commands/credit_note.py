"""`billing-oss credit-note show|pdf|xml ID`: one issued credit note as JSON, as its PDF/A-3
document (Factur-X XML and XMP metadata) or as its EN 16931 CII XML (type 381, naming the
invoice it credits).

`pdf` and `xml` write to `--output FILE`, or to stdout when it is not a terminal.
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from billing_oss.server.billing import issuing, views
from billing_oss.server.billing.issuing import CreditNote, Invoice
from billing_oss.server.billing.render import cii, typst_pdf
from billing_oss.server.commands.invoice import add_document_verb, print_document, resolve_id
from billing_oss.server.store.pool import Connection


def register(verbs: Any) -> None:
    parser = add_document_verb(verbs, "credit-note", "print an issued credit note as JSON, "
                               "PDF or EN 16931 XML")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    async def fetch(conn: Connection) -> tuple[CreditNote, Invoice]:
        note_id = await resolve_id(conn, "credit_notes", "credit_note_id", args.document_id)
        note = await issuing.load_credit_note(conn, note_id)
        return note, await issuing.load(conn, note.invoice_id)

    def render(found: tuple[CreditNote, Invoice]) -> bytes:
        note, invoice = found
        if args.what == "show":
            return msgspec.json.format(msgspec.json.encode(views.credit_note_view(note)),
                                       indent=2)
        if args.what == "pdf":
            return typst_pdf.render_credit_note(note, invoice)
        return cii.credit_note_xml(note, invoice)

    return print_document(args, "credit-note", fetch, render)
