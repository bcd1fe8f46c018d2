"""Is a usage file whole? What its own header declares, checked against the bytes on disk.

``is_complete(format, path) -> Completeness`` answers without decoding the records, so a
file poller can call it on every poll:

- ``"complete"``: the file declares its extent and the bytes on disk reach it (3GPP: the
  32.297 header's file length, or its CDR count when the length was left unset; TAP3/RAP:
  the length of the top-level DataInterChange element).
- ``"short"``: the file declares more than is on disk, or its last record runs past the
  end; ``offset`` is where the bytes stop (the file size) and ``detail`` says what was
  declared. Such a file must not be processed yet: it is still being written or was cut.
- ``"unknown"``: the format declares nothing (CSV, JSON lines, raw BER, indefinite
  length); only the partner's convention (temporary name, marker file, stable size) can
  tell.

A file longer than declared is ``"complete"``: waiting will not shorten it, and the decoder
names the surplus bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Literal

import msgspec

State = Literal["complete", "short", "unknown"]
HEADER_3GPP = 50  # fixed part of the 32.297 file header
TAP3_TOP_TAGS = (1, 2, 534, 535)  # TransferBatch, Notification, RAP ReturnBatch, Acknowledgement
_CHUNK = 1 << 20


class Completeness(msgspec.Struct, frozen=True, kw_only=True):
    state: State
    size: int  # bytes on disk
    declared_size: int | None = None
    declared_count: int | None = None
    offset: int | None = None  # where the bytes stop short ("short" only)
    detail: str = ""

    @property
    def complete(self) -> bool:
        return self.state == "complete"


def is_complete(format: str, path: Path | str) -> Completeness:
    """The completeness of ``path`` read as ``format``: by the format's own check, else
    "unknown" (a format that declares nothing, or one not registered)."""
    from billing_oss.adapters.formats.registry import find

    path = Path(path)
    fmt = find(format)
    with open(path, "rb") as fh:
        size = path.stat().st_size
        if fmt is not None and fmt.completeness is not None:
            return fmt.completeness(fh, size)
    return Completeness(state="unknown", size=size,
                        detail=f"{format} files declare neither length nor count")


def _short(size: int, detail: str, *, declared_size: int | None = None,
           declared_count: int | None = None) -> Completeness:
    return Completeness(state="short", size=size, offset=size, declared_size=declared_size,
                        declared_count=declared_count,
                        detail=f"file ends at offset {size}: {detail}")


def threegpp_completeness(fh: IO[bytes], size: int) -> Completeness:
    """A 32.297 file against its header; a raw BER stream by the framing of its last record."""
    head = fh.read(HEADER_3GPP)
    if not head:
        return _short(size, "empty file")
    if 0xA0 <= head[0] <= 0xBF:  # a BER record first: raw concatenated records, no header
        return _walk_raw(fh, size)
    if len(head) < HEADER_3GPP:
        return _short(size, f"shorter than the {HEADER_3GPP}-byte 32.297 file header")
    file_length = int.from_bytes(head[0:4], "big")
    header_length = int.from_bytes(head[4:8], "big")
    count = int.from_bytes(head[18:22], "big")
    if header_length > size:
        return _short(size, f"the file header declares {header_length} header bytes",
                      declared_size=file_length or None)
    if file_length not in (0, header_length) or (file_length == header_length and count == 0
                                                  and size == header_length):
        if size < file_length:
            return _short(size, f"its header declares {file_length} bytes",
                          declared_size=file_length, declared_count=count)
        return Completeness(state="complete", size=size, declared_size=file_length,
                            declared_count=count)
    # the file length was left unset (0, or the header's own length): count the CDRs
    seen, end = _walk_framed(fh, header_length, size)
    if end > size:
        return _short(size, f"its CDR {seen + 1} declares bytes up to offset {end}",
                      declared_count=count or None)
    if count and seen < count:
        return _short(size, f"its header declares {count} CDRs and {seen} are here",
                      declared_count=count)
    if count:
        return Completeness(state="complete", size=size, declared_count=count)
    return Completeness(state="unknown", size=size,
                        detail="the 32.297 header declares neither file length nor CDR count")


def _walk_framed(fh: IO[bytes], pos: int, size: int) -> tuple[int, int]:
    """(CDRs whose header fits, offset the last CDR ends at) walking the 32.297 CDR headers."""
    seen = 0
    buf, base = b"", pos
    fh.seek(pos)
    while pos < size:
        if pos + 5 > base + len(buf):  # keep a whole CDR header in the window
            if pos >= base + len(buf):
                fh.seek(pos)
                buf = fh.read(_CHUNK)
            else:
                buf = buf[pos - base:] + fh.read(_CHUNK)
            base = pos
        at = pos - base
        if buf[at] == 0xFF:  # fill between CDRs
            pos += 1
            continue
        if at + 4 > len(buf):
            return seen, pos + 4  # a CDR header cut short
        length = int.from_bytes(buf[at:at + 2], "big")
        hdr = 5 if buf[at + 2] >> 5 == 7 else 4
        if length == 0:
            return seen, size  # damage, not incompleteness: the decoder names it
        pos += hdr + length
        seen += 1
        if pos > size:
            return seen - 1, pos
    return seen, pos


def ber_head(buf: bytes) -> tuple[int, int, int] | None:
    """(tag number, header length, content length or -1 for indefinite), None if cut short."""
    if len(buf) < 2:
        return None
    tag, p = buf[0] & 0x1F, 1
    if tag == 0x1F:
        tag = 0
        while True:
            if p >= len(buf) or p > 5:
                return None
            tag = (tag << 7) | (buf[p] & 0x7F)
            p += 1
            if not buf[p - 1] & 0x80:
                break
    if p >= len(buf):
        return None
    first = buf[p]
    p += 1
    if first == 0x80:
        return tag, p, -1
    if first < 0x80:
        return tag, p, first
    n = first & 0x7F
    if n > 8 or p + n > len(buf):
        return None
    return tag, p + n, int.from_bytes(buf[p:p + n], "big")


def _walk_raw(fh: IO[bytes], size: int) -> Completeness:
    pos = 0
    while pos < size:
        fh.seek(pos)
        head = fh.read(16)
        if head[:1] in (b"\x00", b"\xff"):  # fill
            pos += 1
            continue
        parsed = ber_head(head)
        if parsed is None:
            return _short(size, "the last BER record's header is cut short")
        _, hlen, clen = parsed
        if clen < 0:
            return Completeness(state="unknown", size=size,
                                detail="a raw BER record of indefinite length")
        if pos + hlen + clen > size:
            return _short(size, f"the BER record at offset {pos} declares bytes up to offset "
                          f"{pos + hlen + clen}", declared_size=pos + hlen + clen)
        pos += hlen + clen
    return Completeness(state="unknown", size=size,
                        detail="raw BER records declare no count; the last one is whole")


def tap3_completeness(fh: IO[bytes], size: int) -> Completeness:
    """A TAP3/RAP file against the length of its top-level element."""
    head = fh.read(16)
    if not head:
        return _short(size, "empty file")
    if head[0] & 0xE0 != 0x60:
        return Completeness(state="unknown", size=size,
                            detail="not a TAP3/RAP file (no APPLICATION element first)")
    parsed = ber_head(head)
    if parsed is None:
        return _short(size, "the top-level element's header is cut short")
    tag, hlen, clen = parsed
    if tag not in TAP3_TOP_TAGS:
        return Completeness(state="unknown", size=size,
                            detail=f"not a TAP3/RAP file (top-level [APPLICATION {tag}])")
    if clen < 0:
        return _indefinite_tap3(fh, size)
    declared = hlen + clen
    if size < declared:
        return _short(size, f"its top-level element declares {declared} bytes",
                      declared_size=declared)
    return Completeness(state="complete", size=size, declared_size=declared)


def _indefinite_tap3(fh: IO[bytes], size: int) -> Completeness:
    """Indefinite length: whole only if it ends with the two end-of-contents octets."""
    fh.seek(max(0, size - 2))
    if fh.read(2) == b"\x00\x00":
        return Completeness(state="unknown", size=size,
                            detail="indefinite length; ends with end-of-contents octets")
    return _short(size, "indefinite length and no closing end-of-contents octets")
