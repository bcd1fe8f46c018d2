"""`billing-oss invoice pdfs --period YYYY-MM [--account ID] --output-dir DIR [--threads N]`:
every finalised invoice of a cycle as the PDF/A-3 (Factur-X) file `invoice pdf ID` writes,
one file an invoice named by its printed number (``INV-000004.pdf``), typeset on every core
(server.render.threads).

The invoices go in chunks of ``CHUNK``: a chunk is typeset and written while the next one is
read from the database, so memory holds two chunks whatever the cycle's size. Each file is
written beside its name and renamed over it once whole, so an interrupted export leaves
whole PDFs only (and at worst a hidden ``.*.part`` file); a second export rewrites every
file. Drafts are not exported: the summary says how many the cycle still has.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from billing_oss.core.errors import BillingError, ConfigError
from billing_oss.server.billing import documents_repo, issuing, periods
from billing_oss.server.billing.render import itemised, typst_pdf
from billing_oss.server.commands import output
from billing_oss.server.commands.options import load_config
from billing_oss.server.commands.progress import progress
from billing_oss.server.composition import database_pool
from billing_oss.server.config import Config
from billing_oss.server.render import threads as render_threads
from billing_oss.server.store.pool import Connection

CHUNK = 100
READERS = 3  # connections reading a chunk at once (the pool's size bounds them)
MAX_THREADS = 64

Loaded = tuple[issuing.Invoice, itemised.Itemised | None]


def run(args: argparse.Namespace) -> int:
    out, n_threads = _checked(args)
    config = load_config(args)
    started = time.perf_counter()
    written, drafts = asyncio.run(_export(config, args.period, args.account, out, n_threads))
    seconds = time.perf_counter() - started
    whose = f" of account {args.account}" if args.account else ""
    if drafts:
        print(f"{drafts} draft invoice{'s' * (drafts != 1)} of {args.period}{whose} not "
              "exported: finalise them first (bill-run --finalize)")
    if not written:
        print(f"no finalised invoices in {args.period}{whose}")
        return 0
    print(f"exported {written} invoice PDF{'s' * (written != 1)} to {out} in {seconds:.2f} s "
          f"({written / seconds:.1f} PDFs/s, {n_threads} thread{'s' * (n_threads != 1)})")
    return 0


def _checked(args: argparse.Namespace) -> tuple[Path, int]:
    """The output directory and the thread count; usage errors before the database starts."""
    if args.document_id is not None:
        raise ConfigError("pdfs takes no ID (choose with --period and --account)")
    if args.period is None:
        raise ConfigError("pdfs needs --period YYYY-MM")
    try:
        periods.parse_period(args.period)
    except BillingError:
        raise ConfigError(f"--period must be YYYY-MM, not {args.period!r}") from None
    if args.output is not None:
        raise ConfigError("pdfs writes a file an invoice: give --output-dir DIR, not -o")
    if args.output_dir is None:
        raise ConfigError("pdfs needs --output-dir DIR")
    if not args.output_dir.is_dir():
        raise ConfigError(f"--output-dir {args.output_dir}: no such directory")
    n_threads = render_threads.workers() if args.threads is None else args.threads
    if not 1 <= n_threads <= MAX_THREADS:
        raise ConfigError(f"--threads must be between 1 and {MAX_THREADS}")
    return args.output_dir, n_threads


async def _export(config: Config, period: str, account_id: str | None, out: Path,
                  n_threads: int) -> tuple[int, int]:
    """(PDFs written, drafts left out). Chunk k is typeset on the threads while chunk k+1
    is read."""
    async with database_pool(config) as pool:
        async with pool.acquire() as conn:
            counts = await documents_repo.count_by_status(conn, period=period,
                                                          account_id=account_id)
        total = counts.get("finalised", 0)
        written = 0
        names: set[str] = set()  # the files written by this export (write_chunk's)
        with progress(f"invoice pdfs {period}", "invoices") as report:
            writing: asyncio.Future[int] | None = None
            after: int | None = None
            try:
                while True:
                    async with pool.acquire() as conn:
                        ids = await documents_repo.finalised_page(
                            conn, period=period, account_id=account_id, after=after,
                            limit=CHUNK)
                    chunk = await _load_chunk(pool, ids)
                    if writing is not None:
                        written += await writing
                        report(written, total)
                    if not chunk:
                        break
                    after = ids[-1]
                    writing = asyncio.ensure_future(
                        asyncio.to_thread(write_chunk, chunk, out, n_threads, names))
            finally:
                # a read that failed while the last chunk was being written: that chunk's
                # files are finished (each whole) before the error is raised
                if writing is not None and not writing.done():
                    await asyncio.wait([writing])
        return written, counts.get("draft", 0)


async def _load_chunk(pool: asyncpg.Pool, ids: list[int]) -> list[Loaded]:
    """The invoices of ``ids``, in order, read on ``READERS`` connections at once: an
    itemised list's query is most of a read, and PostgreSQL's to do, so other cores (or the
    GIL's pauses in ours while typst compiles) carry it."""
    async def read(part: list[int]) -> list[Loaded]:
        async with pool.acquire() as conn:
            return [await _load(conn, i) for i in part]

    parts = await asyncio.gather(*(read(ids[k::READERS]) for k in range(READERS)
                                   if ids[k::READERS]))
    found = {invoice.invoice_id: (invoice, items) for part in parts for invoice, items in part}
    return [found[i] for i in ids]


async def _load(conn: Connection, invoice_id: int) -> Loaded:
    """What `invoice pdf ID` renders: the invoice and, per its account's setting, its list."""
    invoice = await issuing.load(conn, invoice_id)
    return invoice, await itemised.load(conn, invoice.account_id, invoice_id)


def write_chunk(chunk: Sequence[Loaded], out: Path, n_threads: int,
                names: set[str] | None = None) -> int:
    """Typeset ``chunk`` on ``n_threads`` threads and write each PDF whole; the count.
    ``names``: the files this export wrote so far (two numbers may map to one file name)."""
    pdfs = render_threads.render_all(_render, chunk, threads=n_threads)
    taken = set() if names is None else names
    for (invoice, _), pdf in zip(chunk, pdfs, strict=True):
        name = file_name(invoice)
        if name in taken:  # e.g. "A/1" and "A_1": the later invoice's id tells them apart
            name = f"{name.removesuffix('.pdf')}-{invoice.invoice_id}.pdf"
        taken.add(name)
        write_whole(out / name, pdf)
    return len(pdfs)


def _render(loaded: Loaded) -> bytes:
    invoice, items = loaded
    return typst_pdf.render(invoice, items)


def file_name(invoice: issuing.Invoice) -> str:
    """``<printed number>.pdf``; a separator in the series must not reach another directory."""
    number = (invoice.number_text or "").replace(os.sep, "_").lstrip(".")
    return (number or f"invoice-{invoice.invoice_id}") + ".pdf"


def write_whole(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (``output.whole_file``)."""
    try:
        with output.whole_file(path) as f:
            f.write(data)
    except OSError as exc:
        raise ConfigError(f"--output-dir {path.parent}: {exc.strerror}") from None
