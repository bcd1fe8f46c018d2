"""When a remote file is whole enough to take: per source, ``completion`` says how to tell.

- ``header``: the file's own header declares its extent (3GPP 32.297 file length or CDR
  count, TAP3/RAP the length of the top-level element) and the downloaded bytes reach it
  (``adapters.formats.completeness``). When the header leaves it open (a format declaring
  nothing, a 32.297 header with neither length nor count) the file must be ``stable`` too.
- ``rename``: the partner uploads under a temporary name and renames the file when done, so
  any listed name that is not temporary is whole.
- ``marker``: the partner writes ``<name><marker_suffix>`` beside the file once it is whole.
- ``stable``: size and modification time unchanged between two polls.

Whatever the mode, names matching ``temporary_patterns`` and marker files are never taken,
and a file modified less than ``min_age_s`` ago waits. The default is ``header`` for the
formats whose registry entry checks their extent (3gpp, tap3) and ``stable`` for the others.

A file left incomplete stays where it is for a later poll. Once it has been incomplete for
longer than ``incomplete_alarm_s`` it is reported once (``overdue``): the poller raises an
``incomplete`` alarm (log line, metric, ledger row).
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from billing_oss.adapters.formats.completeness import is_complete
from billing_oss.adapters.formats.registry import find
from billing_oss.core.sources_config import SftpSource


def mode_of(config: SftpSource) -> str:
    if config.completion:
        return config.completion
    fmt = find(config.format)
    return "header" if fmt is not None and fmt.completeness is not None else "stable"


@dataclass(slots=True)
class _Seen:
    size: int | None
    mtime: int | None
    first_seen: float  # monotonic
    stable: bool = False  # the same size and mtime as at the previous poll
    why: str = "not seen complete yet"  # why it is not taken (the last reason found)
    short_at: tuple[int | None, int | None] | None = None  # (size, mtime) the header found short
    alarmed: bool = False


class CompletionGate:
    """One source's view of its remote folder across polls (names, sizes, times seen)."""

    def __init__(self, config: SftpSource,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.mode = mode_of(config)
        self._clock = clock
        self._seen: dict[str, _Seen] = {}

    def is_temporary(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.config.temporary_patterns)

    def is_marker(self, name: str) -> bool:
        return self.mode == "marker" and name.endswith(self.config.marker_suffix)

    def candidates(self, entries: list[asyncssh.SFTPName], wanted: list[str]) -> list[str]:
        """Of ``wanted`` (listed names matching the pattern, in order), those to download now.
        ``entries`` is the whole listing (marker files are looked up in it)."""
        now = self._now()
        attrs = {str(e.filename): e.attrs for e in entries}
        for gone in self._seen.keys() - attrs.keys():
            del self._seen[gone]  # taken by another worker, or removed by the partner
        taken: list[str] = []
        for name in wanted:
            seen = self._observe(name, attrs[name], now)
            why = self._not_ready(name, seen, attrs)
            if why is None:
                taken.append(name)
            else:
                seen.why = why
        return taken

    async def check_downloaded(self, name: str, local: Path) -> str | None:
        """In ``header`` mode, why the downloaded copy is not whole yet (None: it is)."""
        if self.mode != "header":
            return None
        result = await asyncio.to_thread(is_complete, self.config.format, local)
        seen = self._seen.get(name)
        if result.state == "complete":
            return None
        if result.state == "unknown" and seen is not None and seen.stable:
            return None  # the header cannot tell; the size stood still across two polls
        why = (result.detail if result.state == "short"
               else f"{result.detail}; waiting for its size to stay the same for a poll")
        if seen is not None:
            seen.why = why
            if result.state == "short":
                seen.short_at = (seen.size, seen.mtime)
        return why

    def taken(self, name: str) -> None:
        self._seen.pop(name, None)

    def overdue(self) -> list[tuple[str, str, float]]:
        """Files incomplete longer than the limit, not reported before: (name, why, age)."""
        now = self._now()
        late: list[tuple[str, str, float]] = []
        for name, seen in self._seen.items():
            age = now - seen.first_seen
            if not seen.alarmed and age > self.config.incomplete_alarm_s:
                seen.alarmed = True
                late.append((name, seen.why, age))
        return late

    def _observe(self, name: str, attrs: asyncssh.SFTPAttrs, now: float) -> _Seen:
        size, mtime = attrs.size, attrs.mtime
        seen = self._seen.get(name)
        if seen is None:
            seen = self._seen[name] = _Seen(size, mtime, now)
        else:
            seen.stable = (seen.size, seen.mtime) == (size, mtime) and size is not None
            seen.size, seen.mtime = size, mtime
        return seen

    def _not_ready(self, name: str, seen: _Seen, attrs: dict[str, asyncssh.SFTPAttrs]
                   ) -> str | None:
        if self.is_temporary(name):
            return "a temporary name: still being uploaded"
        if self.mode == "marker" and name + self.config.marker_suffix not in attrs:
            return f"no marker file {name + self.config.marker_suffix} yet"
        if self.mode == "stable" and not seen.stable:
            return "its size or modification time changed since the last poll"
        if self.mode == "header" and seen.short_at == (seen.size, seen.mtime):
            return seen.why  # found short at this very size: no need to download it again
        return None

    def _now(self) -> float:
        return self._clock()
