"""An account statement as a PDF/A-3b document, typeset by typst like the invoices
(server.billing.render.typst_pdf): opening balance, every ledger entry of the period with
the running balance, closing balance, per currency. Amounts go in already formatted as
decimal strings, so the PDF prints exactly the ledger's figures."""

from __future__ import annotations

import datetime as dt

import msgspec

from billing_oss.core.money import format_minor
from billing_oss.server.collections.model import Entry
from billing_oss.server.render import typst_compiler

TEMPLATE = r"""
#let d = json("data.json")
#set document(title: d.title, author: d.seller)
#set page(paper: "a4", margin: (x: 18mm, y: 16mm), footer: text(8pt, fill: gray, d.title))
#set text(font: "Libertinus Serif", size: 9.5pt)
#grid(columns: (1fr, 1fr), text(13pt, weight: "bold", d.seller),
  align(right)[#text(16pt, weight: "bold")[Account statement] \ Account #d.account \
    #d.start – #d.end])
#v(10pt)
#grid(columns: (auto, 1fr, auto, auto, auto), stroke: 0.3pt + gray, inset: 4pt,
  align: (left, left, right, right, left),
  [*Date*], [*Description*], [*Amount*], [*Balance*], [*Currency*],
  ..d.opening.map(o => ("", [_Opening balance_], "", o.balance, o.currency)).flatten(),
  ..d.entries.map(e => (e.date, e.description, e.amount, e.balance, e.currency)).flatten(),
  ..d.closing.map(o => ("", [*Closing balance*], "", [*#o.balance*], o.currency)).flatten())
#v(8pt)
#text(8pt, fill: luma(90))[Positive amounts are owed to #d.seller; payments, credit notes and
  write-offs are negative. A negative balance is a credit in your favour.]
"""


def render(seller: str, account_id: str, start: dt.date, end: dt.date,
           opening: dict[str, int], entries: list[Entry]) -> bytes:
    closing = dict(opening)
    for e in entries:
        closing[e.currency] = e.balance_micros
    data = {
        "title": f"Statement of account {account_id}, {start} to {end}",
        "seller": seller, "account": account_id, "start": str(start), "end": str(end),
        "opening": _balances(opening), "closing": _balances(closing),
        "entries": [{"date": str(e.entry_date), "description": e.description or e.kind,
                     "amount": format_minor(e.amount_micros, e.currency),
                     "balance": format_minor(e.balance_micros, e.currency),
                     "currency": e.currency} for e in entries],
    }
    files = {"main.typ": TEMPLATE.encode(), "data.json": msgspec.json.encode(data)}
    return typst_compiler.pdf(files, standard="a-3b", tags=False)


def _balances(by_currency: dict[str, int]) -> list[dict[str, str]]:
    return [{"currency": c, "balance": format_minor(m, c)}
            for c, m in sorted(by_currency.items())]
