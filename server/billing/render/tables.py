"""The invoice's tables as the typst template receives them: each table's headings, its
columns' alignment and widths, and its rows of printed cells, so what a table prints and
the widths worked out for it (server.billing.render.columns) come from one place.

A cell is its text, or (the line tables' description) ``[text, note]``: the note is small
print under the text, left out of the column's width (it wraps in the description column,
which takes the rest of the page).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from billing_oss.server.billing.render import columns

Cell = str | list[str]


class Table(msgspec.Struct, frozen=True):
    """A table's shape: its headings (``{cur}`` is the document's currency; None: a table
    without a heading row), one alignment a column (``l`` left, ``r`` right), and the
    column that takes what the text width leaves (``full``: all of it)."""

    head: tuple[str, ...] | None
    aligns: str
    fill: int | None = None
    full: bool = False


LINES: Final = Table(("No.", "Description", "Quantity", "Unit", "Unit price", "VAT",
                      "Amount {cur}"), "llrlrrr", fill=1, full=True)
ALLOWANCES: Final = Table(None, "lrr", fill=0, full=True)
TAXES: Final = Table(("Category", "Rate", "Taxable {cur}", "VAT {cur}"), "rrrr")
TOTALS: Final = Table(None, "rr")
USAGE: Final = Table(("Line", "Service / zone", "Records", "Usage", "Rated {cur}"), "llrrr",
                     fill=1)


def table(shape: Table, rows: list[list[Cell]], currency: str) -> dict[str, Any]:
    """The table's data for the template: ``{widths, aligns, head, rows}``."""
    return tables(shape, [rows], currency)[0]


def tables(shape: Table, parts: Sequence[list[list[Cell]]], currency: str) -> list[dict[str, Any]]:
    """Tables of one shape whose columns share their widths, so they align from one to the
    next (the line tables of the invoice's groups): one a part."""
    head = None if shape.head is None else [h.replace("{cur}", currency) for h in shape.head]
    measured = [[c if isinstance(c, str) else c[0] for c in row] for rows in parts
                for row in rows]
    widths = columns.widths(head or [""] * len(shape.aligns), measured, fill=shape.fill,
                            full=shape.full)
    return [{"widths": widths, "aligns": shape.aligns, "head": head, "rows": rows}
            for rows in parts]
