"""The file formats, one entry each: what a usage file format is to everything that reads one.

A format is a ``Format``: its ``name`` (``--format``, ``[sources.x] format``), the name
endings that carry it, how its first bytes are recognised, how to open a file or a payload
in memory, what its header declares (sequence number, record count) and how to tell that
a file is whole, how its partial records are grouped, and its typed options. ``decode``,
``ingest``, the file pipeline's decoders, the SFTP poller's completeness check and the
start-up check of configured sources all read this registry, so adding a format is one
module that defines ``FORMAT = Format(...)`` and one line in ``BUILTIN`` (or one
``register(FORMAT)`` call, as the tests do).

Telling a file's format (``guess``): the formats claiming its name ending; when several do
(BER files: ``.ber``, ``.dat`` may be 3GPP or TAP3), or none, the first whose ``sniff``
recognises the first ``SNIFF_BYTES`` bytes; a shared ending nobody recognises goes to its
first claimant; an unknown ending nobody recognises is refused.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from billing_oss.core.errors import BillingError, ConfigError, DecodeError
from billing_oss.core.records import UsageRecord

if TYPE_CHECKING:
    from billing_oss.adapters.formats.api import DecodedFile
    from billing_oss.adapters.formats.completeness import Completeness
    from billing_oss.adapters.formats.options import Option

SNIFF_BYTES = 4096
# The built-in formats' modules (each defines FORMAT), in the order they are listed and sniffed.
BUILTIN = ("threegpp", "tap3", "csvcdr", "jsonl")

Opener = Callable[..., "DecodedFile"]  # (path, *, source, options, batch_size)
Reader = Callable[..., "DecodedFile"]  # (data: bytes, *, source, options)


@dataclass(frozen=True, slots=True, kw_only=True)
class Format:
    name: str
    title: str  # one line: what files these are
    suffixes: tuple[str, ...]  # lower-case name endings, with the dot
    sniff: Callable[[bytes], bool]  # do these first bytes look like this format?
    open: Opener
    read: Reader
    options: tuple[Option, ...] = ()
    # The progress display's item count: what the header declares (FileInfo.declared_count),
    # or the file's line count (text formats).
    item_count: Literal["declared", "lines"] = "declared"
    # Where a bad record is: its byte offset, or its line (text formats).
    located_by: Literal["offset", "line"] = "offset"
    # The group key of a partial record the decoder left without attrs["merge_key"].
    partial_key: Callable[[UsageRecord], str | None] | None = None
    # Whether the bytes on disk reach what the header declares; None: the format declares
    # nothing (completeness "unknown", an SFTP source waits for a stable size instead).
    completeness: Callable[[IO[bytes], int], Completeness] | None = None
    # A file of the format's family that is not usage (a RAP file among TAP files): why,
    # so ``ingest`` keeps it aside; None when it is usage.
    not_usage: Callable[[Path], str | None] | None = None


_FORMATS: dict[str, Format] = {}
_loaded = False


def register(fmt: Format) -> Format:
    """Add a format; a name already taken is refused (two formats cannot answer to one)."""
    _load()
    _add(fmt)
    return fmt


def unregister(name: str) -> None:
    """Remove a format (tests that registered one of their own)."""
    _FORMATS.pop(name, None)


def formats() -> list[Format]:
    """Every format, built-in first, in registration order."""
    _load()
    return list(_FORMATS.values())


def names() -> list[str]:
    return [fmt.name for fmt in formats()]


def find(name: str) -> Format | None:
    _load()
    return _FORMATS.get(name)


def get(name: str) -> Format:
    """The format named ``name``; an unknown name is a ``DecodeError`` naming the known ones."""
    fmt = find(name)
    if fmt is None:
        raise DecodeError(f"unknown format {name!r} (one of {', '.join(names())})")
    return fmt


def require(name: str, *, where: str) -> Format:
    """The format a configuration names; an unknown one is a ``ConfigError`` at ``where``."""
    fmt = find(name)
    if fmt is None:
        raise ConfigError(f"{where}: unknown format {name!r} (known: {', '.join(names())})")
    return fmt


def guess(path: Path) -> str:
    """The format of ``path`` by its name ending, and by its first bytes where that is not
    enough (see the module's docstring)."""
    suffix = path.suffix.lower()
    claimants = [fmt for fmt in formats() if suffix and suffix in fmt.suffixes]
    if len(claimants) == 1:
        return claimants[0].name
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        head = b""
    for fmt in claimants or formats():
        if head and fmt.sniff(head):
            return fmt.name
    if claimants:
        return claimants[0].name
    raise BillingError(f"{path}: cannot tell the format from the name; give --format")


def open_file(format: str, path: Path | str, *, source: str,
              options: Mapping[str, Any] | None = None, batch_size: int = 4096) -> DecodedFile:
    return get(format).open(Path(path), source=source, options=options, batch_size=batch_size)


def read_bytes(format: str, data: bytes, *, source: str,
               options: Mapping[str, Any] | None = None) -> DecodedFile:
    return get(format).read(data, source=source, options=options)


def _add(fmt: Format) -> None:
    if fmt.name in _FORMATS:
        raise ValueError(f"format {fmt.name!r} is registered already")
    if not fmt.name or not fmt.suffixes or not all(s.startswith(".") and s == s.lower()
                                                   for s in fmt.suffixes):
        raise ValueError(f"format {fmt.name!r}: a name and lower-case '.suffix' endings needed")
    _FORMATS[fmt.name] = fmt


def _load() -> None:
    """Import the built-in formats once, on first use: the format modules import this
    package's api, so loading them when this module is imported would be circular."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN:
        _add(importlib.import_module(f"billing_oss.adapters.formats.{module}").FORMAT)
