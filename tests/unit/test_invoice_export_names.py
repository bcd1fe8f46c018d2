"""`billing-oss invoice pdfs` names each file by the invoice's printed number: a separator in
the series never reaches another directory, a name of dots alone is not hidden, and a second
number that maps to a file name already written by the export (``A/1`` and ``A_1``) keeps
both files, the later one named with its invoice id."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from billing_oss.server.commands import invoice_export


def test_two_numbers_of_one_file_name_keep_both_files(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(invoice_export.render_threads, "render_all",
                        lambda render, chunk, threads: [f"pdf {i.invoice_id}".encode()
                                                        for i, _ in chunk])

    def loaded(invoice_id: int, number: str | None) -> tuple[object, None]:
        return SimpleNamespace(invoice_id=invoice_id, number_text=number), None

    names: set[str] = set()
    assert invoice_export.write_chunk([loaded(1, "A/1"), loaded(2, "..")], tmp_path, 1,
                                      names) == 2
    assert invoice_export.write_chunk([loaded(3, "A_1"), loaded(4, None)], tmp_path, 1,
                                      names) == 2  # a later chunk of the same export
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        "A_1.pdf": b"pdf 1", "invoice-2.pdf": b"pdf 2", "A_1-3.pdf": b"pdf 3",
        "invoice-4.pdf": b"pdf 4"}
