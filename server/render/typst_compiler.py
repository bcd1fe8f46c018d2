"""The typst compiler every PDF document is typeset with: invoices and credit notes
(server.billing.render.typst_pdf), account statements (server.collections.statement_pdf) and
settlement reports (server.settlement.report).

One compiler per thread: building one searches the fonts, and a compiler serves one compile
at a time, while typst-py releases the GIL as it compiles, so documents rendered on several
threads typeset in parallel. A document goes in as in-memory files beside its template
(``main.typ`` reads ``data.json``, an invoice's ``factur-x.xml`` too), not as ``sys.inputs``:
typst keeps those in its standard library, an input of the work it caches across compiles,
so new inputs each compile reused less of that cache (an invoice's compile took 1.14× as
long).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any, Literal

import typst

Standard = Literal["a-3b"]

_local = threading.local()


def pdf(files: Mapping[str, bytes], *, standard: Standard | None = None, tags: bool = True,
        timestamp: dt.datetime | None = None) -> bytes:
    """The PDF typst typesets from ``files`` (``main.typ`` the template), conforming to
    ``standard``; ``tags``: a tagged PDF; ``timestamp``: its creation date (None: typst
    writes none), so a document renders to the same bytes whenever it is asked."""
    out = _compiler().compile(dict(files), pdf_standards=[standard] if standard else [],
                              pdf_tags=tags, timestamp=timestamp)
    assert isinstance(out, bytes)  # a PDF is one file, never a list of pages
    return out


def _compiler() -> Any:
    """This thread's compiler, typed ``Any``: typst's stubs list no dict of in-memory files
    as an input, which is how every document goes in."""
    compiler = getattr(_local, "compiler", None)
    if compiler is None:
        compiler = _local.compiler = typst.Compiler()
    return compiler
