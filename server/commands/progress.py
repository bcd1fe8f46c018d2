"""Progress of long work: a rich bar with rate and ETA on a terminal, plain periodic log
lines otherwise (pipes, files, CI), so scripts never see terminal control codes.

A total of ``None`` means not known (a file whose header declares no record count, until it
is decoded): the bar then shows the count and the rate, without an ETA."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger("billing_oss.progress")

Report = Callable[[int, int | None], None]


@contextmanager
def progress(label: str, unit: str, *, interactive: bool | None = None,
             every_s: float = 5.0) -> Iterator[Report]:
    """Yield ``report(done, total)``; ``interactive`` defaults to stderr being a terminal.
    The bar (on stderr) is left on screen once done; the lines say where the work stands
    every ``every_s`` seconds and once at the end. The rate counts from the first report."""
    if interactive if interactive is not None else sys.stderr.isatty():
        with _bar(label, unit) as report:
            yield report
    else:
        yield _lines(label, unit, every_s)


@contextmanager
def _bar(label: str, unit: str) -> Iterator[Report]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn(unit), TaskProgressColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    # On stderr: stdout carries the verb's result (`--json` piped to a script).
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(label, total=None, rate="")
        pace = _Pace()

        def report(done: int, total: int | None) -> None:
            if pace.baseline is None:  # work resumed part-done: not a burst of speed
                bar.reset(task, completed=done, total=total)
            rate = pace.rate(done)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} {unit}/s")

        yield report


def _lines(label: str, unit: str, every_s: float) -> Report:
    pace = _Pace()
    last, ended = pace.started, False

    def report(done: int, total: int | None) -> None:
        nonlocal last, ended
        now = time.monotonic()
        rate = pace.rate(done)
        at_end = total is not None and done >= total
        if ended or (now - last < every_s and not at_end):
            return
        last, ended = now, at_end
        if total is None:
            log.info(f"{label}: {done} {unit} ({rate:,.0f}/s)",
                     extra={"fields": {"done": done, "rate": round(rate, 1)}})
            return
        eta = max(total - done, 0) / rate if rate else 0.0
        log.info(f"{label}: {done}/{total} {unit} ({rate:,.0f}/s, ETA {eta:.0f} s)",
                 extra={"fields": {"done": done, "total": total, "rate": round(rate, 1),
                                   "eta_s": round(eta, 1)}})

    return report


class _Pace:
    """Units per second since the first report, counted from the first report's ``done``
    (a resumed file reports what earlier runs committed first)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.baseline: int | None = None

    def rate(self, done: int) -> float:
        if self.baseline is None:
            self.baseline, self.started = done, time.monotonic()
        return (done - self.baseline) / max(time.monotonic() - self.started, 1e-9)
