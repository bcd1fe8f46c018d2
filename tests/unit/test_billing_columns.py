"""The invoice tables' column widths: a cell's width as worked out from the font's advances
is never less than typst's own measure of it (kerning and all), so no cell wraps; a table
that spans the page fills the text width and no more."""

from __future__ import annotations

import json

import pytest
import typst

from billing_oss.server.billing.render import columns

CELLS = ["1,234,567.89", "-0.01", "366.83", "0.005/MiB", "S 20 %", "AE 0 %", "6 h 06 min 50 s",
         "Voice — national", "22/31", "messages", "Amount EUR", "Taxable EUR", "Zürich Ölstraße",
         "WWW MMM", "fi fl ffi", "Total net", "Amount due", "51.94 EUR", "漢字"]


@pytest.fixture(scope="module")
def measured() -> dict[tuple[str, bool], float]:
    """typst's width (em) of each cell, regular and bold, set as TEMPLATE sets the body."""
    source = (f'#set text(font: "{columns.FONT}", size: {columns.SIZE_PT}pt)\n'
              '#context [#metadata(json(bytes(sys.inputs.cells)).map(c => ('
              'measure(text(c)).width / 1em.to-absolute(), '
              'measure(text(weight: "bold", c)).width / 1em.to-absolute())))<w>]')
    compiler = typst.Compiler(input=source.encode(), sys_inputs={"cells": json.dumps(CELLS)})
    widths = json.loads(compiler.query("<w>", field="value", one=True))
    return {(c, bold): w[bold] for c, w in zip(CELLS, widths, strict=True) for bold in (0, 1)}


def test_a_cell_is_never_wider_than_its_worked_out_width(
        measured: dict[tuple[str, bool], float]) -> None:
    for (cell, bold), typst_em in measured.items():
        ours = columns.width(cell, bold=bool(bold)) + columns.SLACK_EM
        assert ours >= typst_em, (cell, bold, ours, typst_em)
        assert ours <= typst_em * 1.1 + 1.5, (cell, bold)  # not wildly wide either


def test_the_widest_cell_sets_the_column_and_the_fill_column_takes_the_rest() -> None:
    head = ["No.", "Description", "Amount EUR"]
    rows = [["1", "Data", "5.07"], ["12", "Voice — national roaming, zone 3", "12,345,678,901.23"]]
    no, description, amount = columns.widths(head, rows, fill=1, full=True)
    assert no == pytest.approx(columns.width("No.", bold=True) + columns.SLACK_EM, abs=1e-3)
    assert amount == pytest.approx(columns.width("12,345,678,901.23") + columns.SLACK_EM, abs=1e-3)
    assert columns.widths(head, rows[:1])[2] == pytest.approx(
        columns.width("Amount EUR", bold=True) + columns.SLACK_EM, abs=1e-3)  # the heading
    total = no + description + amount + 2 * columns.GAP_EM
    assert total <= columns.TEXT_WIDTH_EM and total == pytest.approx(
        columns.TEXT_WIDTH_EM - columns.SLACK_EM, abs=0.01)
    # not full: the fill column as wide as its widest cell, when that fits
    _, narrow, _ = columns.widths(head, rows, fill=1)
    assert narrow == pytest.approx(columns.width("Voice — national roaming, zone 3")
                                   + columns.SLACK_EM, abs=1e-3)
    # a cell too long for the page: the fill column keeps its minimum
    _, squeezed, _ = columns.widths(head, [["1", "x", "9" * 200]], fill=1, full=True)
    assert squeezed == columns.MIN_FILL_EM
