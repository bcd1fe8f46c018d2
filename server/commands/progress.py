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
    The bar is left on screen once done; the lines say where the work stands every
    ``every_s`` seconds and once more at the end."""
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
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=None, rate="")
        started = time.monotonic()

        def report(done: int, total: int | None) -> None:
            rate = done / max(time.monotonic() - started, 1e-9)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} {unit}/s")

        yield report


def _lines(label: str, unit: str, every_s: float) -> Report:
    started = last = time.monotonic()

    def report(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < every_s and (total is None or done < total):
            return
        last = now
        rate = done / max(now - started, 1e-9)
        if total is None:
            log.info(f"{label}: {done} {unit} ({rate:,.0f}/s)",
                     extra={"fields": {"done": done, "rate": round(rate, 1)}})
            return
        eta = max(total - done, 0) / rate if rate else 0.0
        log.info(f"{label}: {done}/{total} {unit} ({rate:,.0f}/s, ETA {eta:.0f} s)",
                 extra={"fields": {"done": done, "total": total, "rate": round(rate, 1),
                                   "eta_s": round(eta, 1)}})

    return report
