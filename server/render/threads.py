"""Documents rendered on every core at once: typst-py releases the GIL while it compiles (a
Python loop in a second thread kept its full rate during compiles), so threads typeset in
parallel, each with its own compiler (server.render.typst_compiler), while the Python parts
of a document (its data, XML, marks, an invoice's list pages: about a sixth of its time)
take turns on the GIL. Threads rather than processes: nothing to pickle, the fonts loaded
once per thread of one process, and no fork of a process whose typst holds locks (a forked
pool in a process that had already typeset hung in its first compile).

The threads are the process's own, kept between calls, so their compilers (each thread's
fonts searched once) serve every later batch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def render_all(render: Callable[[T], bytes], documents: Iterable[T], *,
               threads: int | None = None) -> list[bytes]:
    """``render`` of each document, in order, on ``threads`` threads (default: one a core);
    the first error raised is raised here."""
    n = threads or workers()
    if n == 1:
        return [render(d) for d in documents]
    return list(_pool(n).map(render, documents))


def _pool(n: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _pools.get(n)
        if pool is None:
            pool = _pools[n] = ThreadPoolExecutor(n, thread_name_prefix=f"render{n}")
        return pool
