"""Pages of monospaced lines appended to a typst PDF/A-3b: the text reads back as written
(pdftotext), escaped or not, in Latin or beyond; a character the font lacks prints as "?";
the embedded font is what PDF/A asks of a composite font (its program, widths that agree
with it, a CID-to-glyph map that names no missing glyph, a ToUnicode map)."""

from __future__ import annotations

import io
import re
import subprocess
import zlib
from functools import partial

import msgspec
import pikepdf
import pytest
import typst
from fontTools.ttLib import TTFont
from lxml import etree

from billing_oss.server.billing.render import facturx, mono_pages
from billing_oss.server.billing.render.mono_pages import Sheet

SOURCE = b"""#set document(title: "Invoice 1", author: "Seller")
#pdf.attach("factur-x.xml", bytes("<x/>"), relationship: "alternative",
  mime-type: "text/xml", description: "Factur-X")
Invoice 1"""


@pytest.fixture(scope="module")
def typst_pdf() -> bytes:
    pdf: bytes = typst.Compiler().compile(SOURCE, pdf_standards="a-3b", pdf_tags=False)
    return pdf


def sheet(lines: list[str]) -> Sheet:
    return Sheet(running="Invoice 1 · list", title="The list", note="A note.",
                 head="When  What", lines=lines, foot=["Total  3"])


NPAGES = ".//{http://ns.adobe.com/xap/1.0/t/pg/}NPages"  # the XMP's page count


def appended(pdf: bytes, lines: list[str]) -> bytes:
    return facturx.mark_pdf(pdf, partial(mono_pages.append, sheet=sheet(lines)))


def text(pdf: bytes, page: int) -> list[str]:
    out = subprocess.run(["pdftotext", "-layout", "-f", str(page), "-l", str(page), "-", "-"],
                         input=pdf, check=True, capture_output=True).stdout.decode()
    return [" ".join(line.split()) for line in out.splitlines() if line.strip()]


def test_lines_read_back_as_written_whatever_their_characters(typst_pdf: bytes) -> None:
    lines = ["(0)\\1 <script>alert('x')</script> ))((", "Zürich Ölstraße €1,50 – “ok”",
             "Dial ☎ 33 1", "tab\there", "漢字 ok"]
    pdf = appended(typst_pdf, lines)
    page = text(pdf, 2)
    assert page[:4] == ["Invoice 1 · list page 2/2", "The list", "A note.", "When What"]
    assert page[4:8] == [*lines[:3], "tab?here"]
    assert page[8] == "?? ok"  # no glyph in DejaVu Sans Mono
    assert page[9] == "Total 3"


def test_the_pages_follow_the_documents_and_number_from_it(typst_pdf: bytes) -> None:
    pdf = appended(typst_pdf, [f"{i:05d} line" for i in range(250)])
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        pages = len(doc.pages)
    assert pages == 5  # the invoice page, then 250 lines and the total at 70-80 a page
    listed = [line for p in range(2, pages + 1) for line in text(pdf, p)]
    assert [line for line in listed if line.endswith(" line")] == \
        [f"{i:05d} line" for i in range(250)]
    for p in range(2, pages + 1):
        assert text(pdf, p)[0] == f"Invoice 1 · list page {p}/{pages}"
    assert text(pdf, 1)[0] == "Invoice 1"


def test_the_xmp_page_count_is_the_documents_with_the_list_pages(typst_pdf: bytes) -> None:
    """typst's XMP counts its own pages; the marked document's counts the list's too."""
    pdf = appended(typst_pdf, [f"{i:05d} line" for i in range(250)])
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        pages = len(doc.pages)
        packet = doc.Root.Metadata.read_bytes()
    counts = etree.fromstring(packet).findall(NPAGES)
    assert pages == 5 and [c.text for c in counts] == ["5"]
    plain = facturx.mark_pdf(typst_pdf)
    with pikepdf.open(io.BytesIO(plain)) as doc:
        packet = doc.Root.Metadata.read_bytes()
    assert [c.text for c in etree.fromstring(packet).findall(NPAGES)] == ["1"]


def test_the_embedded_font_is_a_complete_pdf_a_composite_font(typst_pdf: bytes) -> None:
    pdf = appended(typst_pdf, ["Zürich ☎ (x)", "plain ascii 0123"])
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        font = doc.pages[1].Resources.Font.FM
        assert (font.Subtype, font.Encoding) == ("/Type0", "/Identity-H")
        [cid_font] = font.DescendantFonts
        assert cid_font.Subtype == "/CIDFontType2"
        descriptor = cid_font.FontDescriptor
        program = TTFont(io.BytesIO(descriptor.FontFile2.read_bytes()))
        assert int(descriptor.FontFile2.Length1) == len(descriptor.FontFile2.read_bytes())
        assert re.fullmatch(r"/[A-Z]{6}\+DejaVuSansMono", str(descriptor.FontName))
        cid_to_gid = cid_font.CIDToGIDMap.read_bytes()
        scale = 1000 / program["head"].unitsPerEm
        order = program.getGlyphOrder()
        widths = list(cid_font.W)
        used = {ord(c) for c in "Invoice 1 · list The list A note. When What Zürich ☎ (x) "
                                 "plain ascii 0123 Total page 2/2"}
        for cid in used:
            gid = int.from_bytes(cid_to_gid[2 * cid:2 * cid + 2], "big")
            assert 0 < gid < len(order), chr(cid)  # never .notdef
            width = next(float(widths[i + 2]) for i in range(0, len(widths), 3)
                         if int(widths[i]) <= cid <= int(widths[i + 1]))
            assert abs(width - program["hmtx"][order[gid]][0] * scale) < 0.01, chr(cid)
        assert b"beginbfrange" in font.ToUnicode.read_bytes()
    fonts = subprocess.run(["pdffonts", "-"], input=pdf, capture_output=True,
                           check=True).stdout.decode().splitlines()[2:]
    assert all(row.split()[-5:-2] == ["yes", "yes", "yes"] for row in fonts), fonts


def test_the_font_subset_is_the_same_bytes_whenever_it_is_built() -> None:
    """The subset keeps the font's own modification date, so an invoice's PDF is the same
    bytes from one process (and one second) to the next."""
    program = mono_pages._subset(frozenset()).program
    subset = TTFont(io.BytesIO(zlib.decompress(program)))
    source = TTFont(mono_pages._font_path(), lazy=True)
    assert subset["head"].modified == source["head"].modified


def test_ascii_lines_read_back_as_written_escapes_and_all(typst_pdf: bytes) -> None:
    """A list all in ASCII is escaped in one piece: its parentheses, backslashes and a
    backslash before an n still read back as written, one line a line."""
    lines = ["(0)\\1 ))((", "C:\\new\\n\\\\", "\\", "x" * 20, "a\rb", ")"]
    page = text(appended(typst_pdf, lines), 2)
    assert page[4:10] == [*lines[:4], "a?b", ")"]
    assert page[10] == "Total 3"


def test_the_preface_opens_the_first_page_before_the_title(typst_pdf: bytes) -> None:
    """The preface's lines come first, a line too long for the width wrapped at a word's
    end; the title, the note, the heading and the lines follow on the same page."""
    words = " ".join(f"word{i:03d}" for i in range(40))  # 319 characters: three lines
    preface = ["Appendix", words, "", "Line  What", "1     Calls"]
    pdf = facturx.mark_pdf(typst_pdf, partial(mono_pages.append, sheet=msgspec.structs.replace(
        sheet(["00001 line"]), preface=preface)))
    page = text(pdf, 2)
    assert page[0] == "Invoice 1 · list page 2/2"
    wrapped = page[2:page.index("Line What")]
    assert page[1] == "Appendix" and len(wrapped) == 3 and " ".join(wrapped) == words
    assert page[page.index("Line What"):] == ["Line What", "1 Calls", "The list", "A note.",
                                              "When What", "00001 line", "Total 3"]


def test_a_preface_longer_than_a_page_takes_pages_of_its_own(typst_pdf: bytes) -> None:
    preface = [f"pre {i:03d}" for i in range(150)]
    lines = [f"{i:05d} line" for i in range(100)]
    pdf = facturx.mark_pdf(typst_pdf, partial(mono_pages.append, sheet=msgspec.structs.replace(
        sheet(lines), preface=preface)))
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        pages = len(doc.pages)
        packet = doc.Root.Metadata.read_bytes()
    assert [c.text for c in etree.fromstring(packet).findall(NPAGES)] == [str(pages)]
    read = [line for p in range(2, pages + 1) for line in text(pdf, p)[1:]]
    assert read[:150] == preface
    assert read[150:153] == ["The list", "A note.", "When What"]
    assert [line for line in read if line.endswith(" line")] == lines
    assert text(pdf, 2)[-1] == "pre 080" and "When What" not in text(pdf, 2)  # 81 a page
    assert text(pdf, 3)[1] == "pre 081" and "The list" in text(pdf, 3)
    assert all(text(pdf, p)[1] == "When What" for p in range(4, pages + 1))
