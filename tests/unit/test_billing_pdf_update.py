"""Incremental updates of typst's PDFs: typst's bytes stay as written and every reader
(qpdf, poppler) sees the objects set in the update, the pages added after the document's,
the file's ID kept; an update of an update chains to it; what typst does not write (a
cross-reference stream) is refused rather than misread."""

from __future__ import annotations

import io
import subprocess
from functools import partial

import pikepdf
import pytest
import typst

from billing_oss.server.billing.render import facturx, mono_pages, pdf_update
from billing_oss.server.billing.render.mono_pages import Sheet

SOURCE = b"""#set document(title: "Invoice 1", author: "Seller")
#pdf.attach("factur-x.xml", bytes("<x/>"), relationship: "alternative",
  mime-type: "text/xml", description: "Factur-X")
Invoice 1 #pagebreak() Appendix"""


@pytest.fixture(scope="module")
def typst_pdf() -> bytes:
    pdf: bytes = typst.Compiler().compile(SOURCE, pdf_standards="a-3b", pdf_tags=False)
    return pdf


def info(pdf: bytes) -> str:
    return subprocess.run(["pdfinfo", "-"], input=pdf, capture_output=True,
                          check=True).stdout.decode()


def test_marking_appends_to_typst_bytes_which_stay_as_written(typst_pdf: bytes) -> None:
    marked = facturx.mark_pdf(typst_pdf)
    assert marked.startswith(typst_pdf)
    assert marked.endswith(b"%%EOF\n") and marked.count(b"startxref") == 2
    with pikepdf.open(io.BytesIO(marked)) as doc, \
            pikepdf.open(io.BytesIO(typst_pdf)) as before:
        assert doc.check_pdf_syntax() == []
        assert b"fx:DocumentType" in doc.Root.Metadata.read_bytes()
        assert list(doc.trailer.ID) == list(before.trailer.ID)
        assert doc.docinfo.Title == before.docinfo.Title
        assert len(doc.pages) == 2
    assert "Pages:           2" in info(marked)


def test_added_pages_follow_the_documents_in_the_page_tree(typst_pdf: bytes) -> None:
    sheet = Sheet(running="Invoice 1 · list", title="The list", note="A note.", head="When",
                  lines=[f"{i:03d}" for i in range(200)], foot=["Total"])
    pdf = facturx.mark_pdf(typst_pdf, partial(mono_pages.append, sheet=sheet))
    assert pdf.startswith(typst_pdf)
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        assert doc.check_pdf_syntax() == []
        assert len(doc.pages) == int(doc.Root.Pages.Count) == 5
        assert all(page.obj.Parent.objgen == doc.Root.Pages.objgen for page in doc.pages)
    assert "Pages:           5" in info(pdf)


def test_an_update_of_an_update_chains_to_it(typst_pdf: bytes) -> None:
    once = pdf_update.Update(typst_pdf)
    note = once.add(b"(first)")
    first = once.write()
    twice = pdf_update.Update(first)
    assert twice.body(note) == b"(first)"  # read through the newer cross-reference table
    twice.set(note, b"(second)")
    second = twice.write()
    assert second.startswith(first)
    with pikepdf.open(io.BytesIO(second)) as doc:
        assert str(doc.get_object(note, 0)) == "second"
        assert len(doc.pages) == 2


def test_a_cross_reference_stream_is_refused(typst_pdf: bytes) -> None:
    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(typst_pdf)) as doc:
        doc.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    with pytest.raises(ValueError, match="cross-reference"):
        pdf_update.Update(out.getvalue())


@pytest.mark.parametrize(("value", "text"), [(595.2756, b"595.2756"), (0, b"0"),
                                             (-238.0, b"-238"), (0.5, b"0.5")])
def test_numbers_are_written_without_exponent_or_trailing_zeros(value: float,
                                                                text: bytes) -> None:
    assert pdf_update.number(value) == text
