"""The invoice tables' data: the headings with the document's currency, widths shared by
the tables of one shape (the groups' line tables align), a cell's small print left out of
its column's width."""

from __future__ import annotations

import pytest

from billing_oss.server.billing.render import columns, tables


def row(no: str, description: tables.Cell, amount: str) -> list[tables.Cell]:
    return [no, description, "1", "month", amount, "S 20 %", amount]


def test_the_tables_of_one_shape_share_their_widths() -> None:
    usage = [row("1", "Voice", "12,345,678,901.23")]
    subscriptions = [row("22", "Plan M", "19.99")]
    first, second = tables.tables(tables.LINES, [usage, subscriptions], "EUR")
    assert first["head"][-1] == "Amount EUR"
    assert first["widths"] == second["widths"]
    assert (first["rows"], second["rows"]) == (usage, subscriptions)
    no, *_, amount = first["widths"]
    assert no == pytest.approx(columns.width("No.", bold=True) + columns.SLACK_EM, abs=1e-3)
    assert amount == pytest.approx(columns.width("12,345,678,901.23") + columns.SLACK_EM, abs=1e-3)
    alone = tables.table(tables.LINES, subscriptions, "EUR")
    assert alone["widths"][-1] < amount


def test_small_print_is_not_measured() -> None:
    note = "Tariff: 0.05 per call + 0.02/min, then 0.01/min from 60 min, min. 0.15 " * 3
    shape = tables.Table(("No.", "Description", "Amount {cur}"), "llr")
    [with_note] = tables.tables(shape, [[["1", ["Voice", note], "1.00"]]], "CHF")
    [without] = tables.tables(shape, [[["1", "Voice", "1.00"]]], "CHF")
    assert with_note["widths"] == without["widths"]
    assert with_note["head"] == ["No.", "Description", "Amount CHF"]
    assert tables.table(tables.TOTALS, [["Total", "1.00 EUR"]], "EUR")["head"] is None
