"""Documents typeset on several threads (server.render.threads) with the one typst compiler
of each thread (server.render.typst_compiler): the same bytes, in the same order, as one
thread gives."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from billing_oss.server.render import threads, typst_compiler

WHEN = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


def _document(n: int) -> bytes:
    template = f'#set document(title: "Document {n}")\n= Document {n}\n' + "Line.\n\n" * n
    return typst_compiler.pdf({"main.typ": template.encode()}, standard="a-3b", tags=False,
                              timestamp=WHEN)


def test_several_threads_give_the_bytes_one_gives_in_order() -> None:
    numbers = list(range(1, 13))
    alone = [_document(n) for n in numbers]
    assert len(set(alone)) == len(alone)  # each document its own bytes: order shows
    assert threads.render_all(_document, numbers, threads=2) == alone
    assert threads.render_all(_document, numbers, threads=1) == alone


def test_each_thread_typesets_with_a_compiler_of_its_own() -> None:
    seen: dict[int, set[int]] = {}
    lock = threading.Lock()
    both = threading.Barrier(2, timeout=30)  # the first two documents meet: two threads

    def typeset(n: int) -> bytes:
        if n < 2:
            both.wait()
        pdf = _document(n)
        with lock:
            seen.setdefault(threading.get_ident(), set()).add(id(typst_compiler._compiler()))
        return pdf

    threads.render_all(typeset, range(40), threads=2)
    compilers = [c for per_thread in seen.values() for c in per_thread]
    assert len(seen) == 2  # both threads typeset
    assert all(len(per_thread) == 1 for per_thread in seen.values())  # kept per thread
    assert len(compilers) == len(set(compilers))  # never shared between threads


def test_a_document_that_fails_fails_the_batch() -> None:
    def typeset(n: int) -> bytes:
        if n == 3:
            return typst_compiler.pdf({"main.typ": b"#let x = (1 +"})
        return _document(n)

    with pytest.raises(RuntimeError):
        threads.render_all(typeset, range(6), threads=2)
