"""Pages of monospaced lines written straight into a PDF, after the pages typst set: a
table of thousands of rows whose columns are padded beforehand needs no layout, and typst's
layout of a list of 100 records cost more than the invoice's own pages.

Each page is one content stream of text lines in DejaVu Sans Mono (the font typst set the
list in), embedded as PDF/A requires: a TrueType subset (fontTools, from the copy
matplotlib ships) as a Type0 font with Identity-H encoding, its widths, and a ToUnicode map
so the text stays extractable. A CID is the character's code point (a CIDToGIDMap
maps it to the subset's glyph), so a line is its UTF-16 bytes in a literal string, the
string's delimiters and the backslash escaped. The subset of printable Latin (``BASE``) is
built once; a list holding other characters gets a subset of its own (cached), and a
character the font lacks (or a control character) prints as ``?``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Final, NamedTuple

import msgspec
from fontTools import subset
from fontTools.ttLib import TTFont

from billing_oss.server.billing.render.pdf_update import Update, number, stream

PAGE: Final = (595.2756, 841.8898)  # A4, as typst's pages
MARGIN_X: Final = 51.0236  # 18 mm, as the invoice pages
MARGIN_Y: Final = 45.3543  # 16 mm
SIZE: Final = 7.0  # the lines' size in points
LEADING: Final = 9.0  # baseline to baseline
HEAD_SIZE: Final = 8.0  # the running head and the note
TITLE_SIZE: Final = 11.0
MIN_SIZE: Final = 4.0  # lines too long for the page at SIZE shrink down to this, then wrap
BASE: Final = frozenset(
    [chr(c) for c in range(0x20, 0x7F)] + [chr(c) for c in range(0xA0, 0x180)]
    + list("€–—‘’‚“”„•…‰′″"))
FALLBACK: Final = "?"


class Sheet(msgspec.Struct, frozen=True):
    """What the pages show: ``running`` heads every page (with its number, "page x/y" of
    the whole document); the first page opens with ``preface`` (lines set as the lines,
    wrapped at word ends; on pages of their own when they outgrow the first), then
    ``title`` and ``note``; ``head`` (the column heading) tops every page's lines; ``foot``
    closes the last page."""

    running: str
    title: str
    note: str
    head: str
    lines: list[str]
    foot: list[str]
    preface: list[str] = []


class _Page(NamedTuple):
    preface: list[str]
    lines: list[str]
    opening: bool  # the title, the note and the first lines


class _Font(msgspec.Struct, frozen=True):
    name: str  # the subset's PostScript name, tagged
    program: bytes  # the TrueType subset, deflated
    length: int  # its length before deflating (FontFile2's Length1)
    chars: frozenset[str]  # the characters it has
    cid_to_gid: bytes  # the CIDToGIDMap stream (a CID is a code point), deflated
    widths: bytes  # the /W array's entries, by CID
    to_unicode: bytes  # deflated
    bbox: list[float]
    ascent: float
    descent: float
    cap_height: float
    advance: float  # of every glyph, in thousandths of the size (a monospaced font)


def append(pdf: Update, sheet: Sheet) -> int:
    """Appends ``sheet``'s pages to ``pdf``; returns how many."""
    chars = _characters(sheet)
    font = _subset(frozenset(chars - BASE) & _covered())
    if missing := chars - font.chars:
        sheet = _replaced(sheet, {ord(c): FALLBACK for c in missing})
    size = _size(sheet, font)
    pages = _paginate(sheet, size, font)
    first = pdf.page_count() + 1
    total = first - 1 + len(pages)
    parent = pdf.catalog_ref(b"Pages")
    page = b"<</Type/Page/Parent %d 0 R/MediaBox[0 0 %s %s]/Resources<</Font<</FM %d 0 R>>>>" \
        % (parent, number(PAGE[0]), number(PAGE[1]), _font_object(pdf, font))
    added = []
    for n, lines in enumerate(pages):
        content = _content(sheet, font, size, lines, first + n, total)
        contents = pdf.add(stream(b"/Filter/FlateDecode", zlib.compress(content, 3)))
        added.append(pdf.add(page + b"/Contents %d 0 R>>" % contents))
    pdf.append_pages(added)
    return len(pages)


def _characters(sheet: Sheet) -> frozenset[str]:
    """The sheet's characters; the lines' only when they are not all printable ASCII (the
    usual list, which BASE holds)."""
    lines = "".join(sheet.lines)
    chars = frozenset("".join((sheet.running, sheet.title, sheet.note, sheet.head,
                               *sheet.foot, *sheet.preface)))
    return chars if lines.isascii() and lines.isprintable() else chars | frozenset(lines)


def _replaced(sheet: Sheet, table: dict[int, str]) -> Sheet:
    def fix(text: str) -> str:
        return text.translate(table)

    return Sheet(running=fix(sheet.running), title=fix(sheet.title), note=fix(sheet.note),
                 head=fix(sheet.head), lines=[fix(s) for s in sheet.lines],
                 foot=[fix(s) for s in sheet.foot], preface=[fix(s) for s in sheet.preface])


def _width() -> float:
    return PAGE[0] - 2 * MARGIN_X


def _size(sheet: Sheet, font: _Font) -> float:
    """SIZE, or smaller (down to MIN_SIZE) when the longest line would not fit the width."""
    longest = max((len(s) for s in (sheet.head, *sheet.lines, *sheet.foot)), default=1)
    return max(MIN_SIZE, min(SIZE, _width() / (max(longest, 1) * font.advance / 1000)))


def _paginate(sheet: Sheet, size: float, font: _Font) -> list[_Page]:
    """The lines of each page (the foot after a blank line); a line too long even at
    MIN_SIZE wraps at the width. The preface goes on the first page, or as much of it as
    leaves the opening and two lines room there, the rest on the pages after."""
    fits = max(1, int(_width() / (size * font.advance / 1000)))
    lines = [*sheet.lines, *([""] if sheet.foot else []), *sheet.foot]
    if max(map(len, lines), default=0) > fits:
        lines = [part for line in lines
                 for part in ([line[i:i + fits] for i in range(0, len(line), fits)] or [""])]
    preface = [part for line in sheet.preface
               for part in (textwrap.wrap(line, fits) if len(line) > fits else [line])]
    notes = len(_note_lines(sheet, font))
    alone = _capacity(PAGE[1] - MARGIN_Y - HEAD_SIZE - 10 - SIZE)
    pages = []
    while preface and _top(notes) - _below(len(preface)) < MARGIN_Y + LEADING:
        pages.append(_Page(preface[:alone], [], opening=False))
        preface = preface[alone:]
    first = _capacity(_top(notes) - _below(len(preface)))
    pages.append(_Page(preface, lines[:first], opening=True))
    then = _capacity(_top(None))
    pages += [_Page([], lines[i:i + then], opening=False)
              for i in range(first, len(lines), then)]
    return pages


def _below(preface: int) -> float:
    """How far ``preface`` lines, and a blank line after them, move down what follows."""
    return 10 + SIZE + preface * LEADING if preface else 0


def _top(notes: int | None) -> float:
    """The baseline of a page's first line: below the running head, the title and the
    note's ``notes`` lines (the first page), and the column head."""
    y = PAGE[1] - MARGIN_Y - HEAD_SIZE
    if notes is not None:
        y -= 10 + TITLE_SIZE + 6 + HEAD_SIZE + (notes - 1) * (HEAD_SIZE + 2)
    return y - 10 - SIZE - LEADING - 2


def _note_lines(sheet: Sheet, font: _Font) -> list[str]:
    return textwrap.wrap(sheet.note, int(_width() / (HEAD_SIZE * font.advance / 1000))) or [""]


def _capacity(top: float) -> int:
    return max(1, int((top - MARGIN_Y) / LEADING) + 1)


def _content(sheet: Sheet, font: _Font, size: float, page: _Page, number: int,
             total: int) -> bytes:
    left, right = MARGIN_X, PAGE[0] - MARGIN_X
    y = PAGE[1] - MARGIN_Y - HEAD_SIZE
    numbering = f"page {number}/{total}"
    out = [b"0.35 g", _text(HEAD_SIZE, left, y, sheet.running),
           _text(HEAD_SIZE, right - len(numbering) * font.advance * HEAD_SIZE / 1000, y,
                 numbering),
           b"0.6 G 0.3 w %.2f %.2f m %.2f %.2f l S" % (left, y - 4, right, y - 4), b"0 g"]
    if page.preface:
        out.append(_lines(size, left, y - 10 - SIZE, page.preface))
        y -= _below(len(page.preface))
    if not (page.opening or page.lines):
        return b"\n".join(out)
    if page.opening:
        y -= 10 + TITLE_SIZE
        out.append(_text(TITLE_SIZE, left, y, sheet.title))
        for i, note in enumerate(_note_lines(sheet, font)):
            y -= (6 if i == 0 else 2) + HEAD_SIZE
            out.append(_text(HEAD_SIZE, left, y, note))
    y -= 10 + SIZE
    out.append(_text(size, left, y, sheet.head))
    out.append(b"%.2f %.2f m %.2f %.2f l S" % (left, y - 3, right, y - 3))
    y -= LEADING + 2
    if page.lines:
        out.append(_lines(size, left, y, page.lines))
    return b"\n".join(out)


def _lines(size: float, x: float, y: float, lines: list[str]) -> bytes:
    """``lines`` (at least one) from the baseline ``y`` down, LEADING apart."""
    out = [b"BT /FM %.3f Tf %.1f TL %.2f %.2f Td (%s) Tj"
           % (size, LEADING, x, y, _string(lines[0]))]
    if len(lines) > 1:
        out.append(b"(%s) '" % _strings(lines[1:]))
    out.append(b"ET")
    return b"\n".join(out)


_NEXT: Final = b") '\n("  # a line's string shown, the next line's opened


def _strings(lines: list[str]) -> bytes:
    """``lines`` as the strings of one ``'`` operator each, the first's ``(`` and the last's
    ``) '`` left to the caller. Printable ASCII (the usual list) is encoded and escaped in one
    piece, joined by line ends, whose escape no other ASCII character's bytes can form."""
    text = "\n".join(lines)
    if text.isascii() and text.count("\n") == len(lines) - 1:
        return _string(text).replace(b"\x00\\n", _NEXT)
    return _NEXT.join(_string(line) for line in lines)


def _text(size: float, x: float, y: float, text: str) -> bytes:
    return b"BT /FM %.3f Tf %.2f %.2f Td (%s) Tj ET" % (size, x, y, _string(text))


def _string(text: str) -> bytes:
    """``text`` inside a PDF literal string: two bytes a character, its code point (the
    font's CIDs are code points), with the string's delimiters, the backslash and line
    ends escaped wherever those bytes fall."""
    return (text.encode("utf-16-be").replace(b"\\", b"\\\\").replace(b"(", b"\\(")
            .replace(b")", b"\\)").replace(b"\r", b"\\r").replace(b"\n", b"\\n"))


def _font_object(pdf: Update, font: _Font) -> int:
    """The Type0 font's object number, its descendant, descriptor and streams added."""
    program = pdf.add(stream(b"/Filter/FlateDecode/Length1 %d" % font.length, font.program))
    descriptor = pdf.add(
        # Flags 5: fixed pitch, symbolic (glyphs by id, no standard encoding).
        b"<</Type/FontDescriptor/FontName/%s/Flags 5/FontBBox[%s]/ItalicAngle 0/Ascent %s"
        b"/Descent %s/CapHeight %s/StemV 95.4/FontFile2 %d 0 R>>"
        % (font.name.encode(), b" ".join(map(number, font.bbox)), number(font.ascent),
           number(font.descent), number(font.cap_height), program))
    cid_to_gid = pdf.add(stream(b"/Filter/FlateDecode", font.cid_to_gid))
    cid_font = pdf.add(
        b"<</Type/Font/Subtype/CIDFontType2/BaseFont/%s/CIDSystemInfo<</Registry(Adobe)"
        b"/Ordering(Identity)/Supplement 0>>/CIDToGIDMap %d 0 R/DW 0/W[%s]"
        b"/FontDescriptor %d 0 R>>"
        % (font.name.encode(), cid_to_gid, font.widths, descriptor))
    to_unicode = pdf.add(stream(b"/Filter/FlateDecode", font.to_unicode))
    return pdf.add(b"<</Type/Font/Subtype/Type0/BaseFont/%s/Encoding/Identity-H"
                   b"/DescendantFonts[%d 0 R]/ToUnicode %d 0 R>>"
                   % (font.name.encode(), cid_font, to_unicode))


def _font_path() -> Path:
    spec = importlib.util.find_spec("matplotlib")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("matplotlib (which ships DejaVu Sans Mono) is not installed")
    return Path(spec.submodule_search_locations[0]) / "mpl-data/fonts/ttf/DejaVuSansMono.ttf"


@functools.cache
def _covered() -> frozenset[str]:
    """The characters the font has a glyph for that a CID (two bytes) can name."""
    return frozenset(chr(c) for c in TTFont(_font_path(), lazy=True).getBestCmap()
                     if c <= 0xFFFF)


@functools.lru_cache(maxsize=32)
def _subset(extra: frozenset[str]) -> _Font:
    """The font subset to BASE and ``extra`` (characters the font has), its CIDs the
    characters' code points."""
    # The subset keeps the font's own head.modified: saved with the time of the save, the
    # same invoice's PDF differed from one process to the next.
    font = TTFont(_font_path(), recalcTimestamp=False)
    options = subset.Options()
    options.hinting = False
    options.layout_features = []
    options.name_IDs = [1, 2, 4, 6]
    options.notdef_outline = True
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "kern", "FFTM", "BASE", "MATH"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[ord(c) for c in (BASE & _covered()) | extra | {FALLBACK}])
    subsetter.subset(font)
    buffer = io.BytesIO()
    font.save(buffer)
    program = buffer.getvalue()
    scale = 1000 / font["head"].unitsPerEm
    glyphs = {code: glyph for code, glyph in font.getBestCmap().items() if code <= 0xFFFF}
    cid_to_gid = bytearray(2 * (max(glyphs) + 1))
    for code, glyph in glyphs.items():
        cid_to_gid[2 * code:2 * code + 2] = font.getGlyphID(glyph).to_bytes(2, "big")
    widths = {code: round(font["hmtx"][glyph][0] * scale, 4) for code, glyph in glyphs.items()}
    head, hhea, os2 = font["head"], font["hhea"], font["OS/2"]
    tag = "".join(chr(65 + b % 26) for b in hashlib.sha256(program).digest()[:6])
    return _Font(
        name=f"{tag}+DejaVuSansMono", program=zlib.compress(program), length=len(program),
        chars=frozenset(map(chr, glyphs)), cid_to_gid=zlib.compress(bytes(cid_to_gid)),
        widths=_widths(widths), to_unicode=zlib.compress(_to_unicode(sorted(glyphs))),
        bbox=[round(v * scale, 4) for v in (head.xMin, head.yMin, head.xMax, head.yMax)],
        ascent=round(hhea.ascent * scale, 4), descent=round(hhea.descent * scale, 4),
        cap_height=round(getattr(os2, "sCapHeight", hhea.ascent) * scale, 4),
        advance=font["hmtx"]["zero"][0] * scale)


def _runs(codes: list[int], same: Callable[[int, int], bool]) -> list[tuple[int, int]]:
    """``codes`` (ascending) as (first, last) runs of consecutive codes that ``same`` joins."""
    runs: list[tuple[int, int]] = []
    for code in codes:
        if runs and code == runs[-1][1] + 1 and same(runs[-1][1], code):
            runs[-1] = (runs[-1][0], code)
        else:
            runs.append((code, code))
    return runs


def _widths(widths: dict[int, float]) -> bytes:
    """The /W array's entries: ``first last width`` for each run of CIDs of one width (a
    monospaced font's are a few runs)."""
    return b" ".join(b"%d %d %s" % (first, last, number(widths[first]))
                     for first, last in _runs(sorted(widths),
                                              lambda a, b: widths[a] == widths[b]))


def _to_unicode(codes: list[int]) -> bytes:
    """The CMap from CID to character, the identity over the font's code points, in ranges
    within one high byte (blocks of at most 100, as the format wants)."""
    ranges = [f"<{a:04X}> <{b:04X}> <{a:04X}>"
              for a, b in _runs(codes, lambda a, b: a >> 8 == b >> 8)]
    blocks = [f"{len(ranges[i:i + 100])} beginbfrange\n" + "\n".join(ranges[i:i + 100])
              + "\nendbfrange" for i in range(0, len(ranges), 100)]
    return ("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
            "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
            "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
            "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
            + "\n".join(blocks)
            + "\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
            ).encode("ascii")
