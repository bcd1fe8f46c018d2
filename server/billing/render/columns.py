"""Column widths of the invoice's tables, in em of the body text, from the advances of the
font's characters as typst measures them (once per process).

typst lays a table out as one paragraph of fixed-width boxes (a line a row) about twice as
fast as a grid of auto-sized columns, which lays each cell out again to size its column and
its row; a compile of the invoice was almost all such layout. So the widths an auto column
would take are worked out here: the widest cell of each column, its characters' advances
summed (kerning left out, hence ``SLACK_EM``), the heading in bold.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Final

import typst

FONT: Final = "Libertinus Serif"
SIZE_PT: Final = 9.5  # the body text's size: one em
MARGIN_X_MM: Final = 18.0
TEXT_WIDTH_EM: Final = (210.0 - 2 * MARGIN_X_MM) / 25.4 * 72 / SIZE_PT  # A4 less the margins
GAP_EM: Final = 0.8  # between two columns
SLACK_EM: Final = 0.15  # a cell's advances summed, less what kerning takes back
UNKNOWN_EM: Final = 1.0  # a character not measured: as wide as an em
MIN_FILL_EM: Final = 8.0  # the column that takes the rest of the width takes at least this
# The characters measured: printable Latin, as the invoice prints its figures and names.
MEASURED: Final = ("".join(chr(c) for c in range(0x20, 0x7F))
                   + "".join(chr(c) for c in range(0xA0, 0x180)) + "€–—‘’‚“”„•…‰′″")

_MEASURE = r"""
#set text(font: "FONT", size: 100pt)
#context [#metadata(sys.inputs.chars.clusters().map(c =>
  (measure(text(c)).width / 100pt, measure(text(weight: "bold", c)).width / 100pt)))<advances>]
""".replace("FONT", FONT)


@functools.cache
def advances() -> dict[str, tuple[float, float]]:
    """Each measured character's advance in em, (regular, bold)."""
    compiler = typst.Compiler(input=_MEASURE.encode(), sys_inputs={"chars": MEASURED})
    measured = json.loads(compiler.query("<advances>", field="value", one=True))
    return {c: (float(regular), float(bold)) for c, (regular, bold)
            in zip(MEASURED, measured, strict=True)}


@functools.lru_cache(maxsize=8192)  # headings, units, VAT rates, descriptions: the same text
def width(text: str, *, bold: bool = False) -> float:
    """``text``'s width in em, set in the body font (bold: its bold)."""
    table = advances()
    return sum(table[c][bold] if c in table else UNKNOWN_EM for c in text)


def widths(head: Sequence[str], rows: Sequence[Sequence[str]], *, fill: int | None = None,
           full: bool = False) -> list[float]:
    """Each column's width in em: its widest cell (the ``head`` set in bold). Column ``fill``
    takes what the text width leaves (``full``: all of it, so the table spans the page),
    at most its widest cell otherwise and at least ``MIN_FILL_EM``."""
    out = [max([width(h, bold=True), *(width(r[i]) for r in rows)]) + SLACK_EM
           for i, h in enumerate(head)]
    if fill is not None:
        rest = TEXT_WIDTH_EM - SLACK_EM - GAP_EM * (len(head) - 1) - sum(out) + out[fill]
        out[fill] = max(MIN_FILL_EM, rest if full else min(rest, out[fill]))
    return [round(w, 3) for w in out]
