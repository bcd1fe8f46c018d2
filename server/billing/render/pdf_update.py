"""An incremental update of a PDF (ISO 32000-1, 7.5.6): the objects an edit replaces or
adds are appended after the file's end, with a cross-reference section of their own and a
trailer pointing back to the previous one, which PDF/A allows (the trailer keeps the file's
ID). The bytes typst wrote stay as written: only the trailer, the cross-reference table
and the objects the edit reads are looked at, and nothing is parsed into objects and
written out again, which a rewrite with qpdf did at a tenth of an invoice's render time.

What is read is what typst writes: classic cross-reference tables, objects in the clear
(no object streams), direct stream lengths. Anything else is refused with ValueError.
"""

from __future__ import annotations

import re
from typing import Final

_STARTXREF: Final = re.compile(rb"startxref\s+(\d+)\s+%%EOF\s*$")
_TRAILER: Final = re.compile(rb"trailer\s*<<(.*?)>>\s*(?:startxref|$)", re.S)
_STRING: Final = rb"(?:<[0-9A-Fa-f\s]*>|\((?:\\.|[^\\)])*\))"
_ID: Final = re.compile(rb"/ID\s*(\[\s*" + _STRING + rb"\s*" + _STRING + rb"\s*\])", re.S)
_LENGTH: Final = re.compile(rb"/Length\s+(\d+)\b(?!\s+\d+\s+R)")


def ref(trailer_or_dict: bytes, key: bytes) -> int | None:
    """The object number ``key`` refers to in a dictionary's bytes (``/Key N 0 R``)."""
    found = re.search(rb"/" + key + rb"\s+(\d+)\s+0\s+R", trailer_or_dict)
    return int(found[1]) if found else None


def stream(entries: bytes, data: bytes) -> bytes:
    """A stream object's body: its dictionary's ``entries`` and ``data`` as given (already
    filtered by whatever /Filter the entries name)."""
    return b"<<%s/Length %d>>\nstream\n%s\nendstream" % (entries, len(data), data)


def number(value: float) -> bytes:
    """A PDF real or integer: no exponent, no trailing zeros."""
    if value == int(value):
        return b"%d" % value
    return (b"%.4f" % value).rstrip(b"0").rstrip(b".")


class Update:
    """The objects set on ``pdf``, written after it by ``write``."""

    def __init__(self, pdf: bytes) -> None:
        self.pdf = pdf
        end = _STARTXREF.search(pdf, max(0, len(pdf) - 1024))
        if end is None:
            raise ValueError("PDF without startxref and %%EOF at its end")
        self._previous = int(end[1])
        self._offsets: dict[int, int] = {}
        self._trailer = b""
        at: int | None = self._previous
        while at is not None:
            trailer = self._read_xref(at)
            self._trailer = self._trailer or trailer
            prev = re.search(rb"/Prev\s+(\d+)", trailer)
            at = int(prev[1]) if prev else None
        size = re.search(rb"/Size\s+(\d+)", self._trailer)
        root = ref(self._trailer, b"Root")
        if size is None or root is None:
            raise ValueError("PDF trailer without /Size or /Root")
        self.size = int(size[1])
        self.root = root
        self._set: dict[int, bytes] = {}

    def _read_xref(self, at: int) -> bytes:
        """Reads the cross-reference table at ``at`` (entries not already read from a
        later update); returns its trailer dictionary's bytes."""
        trailer = _TRAILER.search(self.pdf, at)
        if not self.pdf.startswith(b"xref", at) or trailer is None:
            raise ValueError("PDF without a classic cross-reference table (xref stream?)")
        tokens = self.pdf[at + 4:trailer.start()].split()
        i = 0
        while i < len(tokens):
            first, count = int(tokens[i]), int(tokens[i + 1])
            for k in range(count):
                offset, _, kind = tokens[i + 2 + 3 * k:i + 5 + 3 * k]
                if kind == b"n":
                    self._offsets.setdefault(first + k, int(offset))
            i += 2 + 3 * count
        return trailer[1]

    def body(self, num: int) -> bytes:
        """Object ``num`` as last set or written: its dictionary (and stream) bytes."""
        if num in self._set:
            return self._set[num]
        start = self._offsets.get(num)
        head = None if start is None else re.compile(rb"%d\s+0\s+obj\s*" % num).match(
            self.pdf, start)
        if head is None:
            raise ValueError(f"PDF object {num} not found")
        end = self.pdf.find(b"endobj", head.end())
        marker = self.pdf.find(b"stream", head.end(), end)
        if marker < 0:
            return self.pdf[head.end():end].rstrip()
        length = _LENGTH.search(self.pdf, head.end(), marker)
        if length is None:
            raise ValueError(f"PDF stream {num} without a direct /Length")
        data = marker + len(b"stream") + (2 if self.pdf[marker + 6:marker + 8] == b"\r\n" else 1)
        return self.pdf[head.end():data + int(length[1])] + b"\nendstream"

    def stream_data(self, num: int) -> tuple[bytes, bytes]:
        """(dictionary bytes, unfiltered data) of stream object ``num``."""
        body = self.body(num)
        marker = body.index(b"stream")
        dictionary = body[:marker].rstrip()
        if b"/Filter" in dictionary:
            raise ValueError(f"PDF stream {num} is filtered")
        start = marker + (8 if body[marker + 6:marker + 8] == b"\r\n" else 7)
        return dictionary, body[start:-len(b"\nendstream")]

    def set(self, num: int, body: bytes) -> None:
        self._set[num] = body

    def add(self, body: bytes) -> int:
        """A new object; returns its number."""
        num = self.reserve()
        self._set[num] = body
        return num

    def reserve(self) -> int:
        """A new object's number, its body set later (objects that refer to each other)."""
        num = self.size
        self.size += 1
        self._set[num] = b"null"
        return num

    def catalog_ref(self, key: bytes) -> int:
        """The object the document catalog's ``key`` (Metadata, Pages) refers to."""
        num = ref(self.body(self.root), key)
        if num is None:
            raise ValueError(f"PDF catalog without /{key.decode()}")
        return num

    def page_count(self) -> int:
        count = re.search(rb"/Count\s+(\d+)", self.body(self.catalog_ref(b"Pages")))
        if count is None:
            raise ValueError("PDF page tree without /Count")
        return int(count[1])

    def append_pages(self, pages: list[int]) -> None:
        """Puts ``pages`` (page objects whose /Parent is the page tree's root,
        ``catalog_ref(b"Pages")``) after the document's pages."""
        root, count = self.catalog_ref(b"Pages"), self.page_count()
        tree = self.body(root)
        kids = re.search(rb"/Kids\s*\[([^\]]*)\]", tree)
        if kids is None:
            raise ValueError("PDF page tree without /Kids")
        added = b" ".join(b"%d 0 R" % n for n in pages)
        tree = tree[:kids.start(1)] + kids[1].rstrip() + b" " + added + tree[kids.end(1):]
        self.set(root, re.sub(rb"/Count\s+\d+", b"/Count %d" % (count + len(pages)), tree,
                              count=1))

    def write(self) -> bytes:
        out = [self.pdf if self.pdf.endswith(b"\n") else self.pdf + b"\n"]
        at = len(out[0])
        offsets = {}
        for num in sorted(self._set):
            offsets[num] = at
            chunk = b"%d 0 obj\n%s\nendobj\n" % (num, self._set[num])
            out.append(chunk)
            at += len(chunk)
        xref = [b"xref\n"]
        nums = sorted(offsets)
        i = 0
        while i < len(nums):
            j = i
            while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
                j += 1
            xref.append(b"%d %d\n" % (nums[i], j - i + 1))
            xref.extend(b"%010d 00000 n\r\n" % offsets[n] for n in nums[i:j + 1])
            i = j + 1
        info = ref(self._trailer, b"Info")
        ids = _ID.search(self._trailer)
        xref.append(b"trailer\n<</Size %d/Root %d 0 R%s%s/Prev %d>>\nstartxref\n%d\n%%%%EOF\n"
                    % (self.size, self.root, b"" if info is None else b"/Info %d 0 R" % info,
                       b"" if ids is None else b"/ID" + ids[1], self._previous, at))
        return b"".join(out + xref)
