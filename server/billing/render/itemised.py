"""The itemised list an invoice PDF carries for an account that asks for one: each call,
message and session the invoice bills, in time order, in the account's timezone, with
what the invoice billed for it (exact: amounts finer than a cent keep their digits).

The list's pages follow typst's (server.billing.render.mono_pages), each headed by the
invoice's number and its page number; the invoice's usage appendix opens them (typst sets
it only for an invoice without a list); the list ends with the count and the sum of every
record the invoice bills. A list longer than ``MAX_ROWS`` prints its first ``MAX_ROWS`` and
says where the rest is: the usage route and its CSV export list every record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from billing_oss.core.money import format_printed, printed_in
from billing_oss.server.billing.render import tables
from billing_oss.server.billing.render.mono_pages import Sheet
from billing_oss.server.billing.render.page import USAGE_TEXT, USAGE_TITLE, grouped, human
from billing_oss.server.store import account_usage_repo
from billing_oss.server.store.account_usage_repo import Db, ItemRow

MAX_ROWS = 2000
TITLE = "Itemised calls and sessions"
SERVICES = {"voice": "Call", "sms": "SMS", "data": "Data", "event": "Event"}


class Itemised(msgspec.Struct, frozen=True):
    total: int  # records the invoice bills (more than ``rows`` when the list is cut)
    rows: list[tuple[int, ItemRow]]  # (invoice line, record)
    total_micros: int = 0  # what the invoice bills for all ``total`` records


async def load(db: Db, account_id: str, invoice_id: int) -> Itemised | None:
    """The invoice's records when its account's setting asks for them, else None."""
    if not await account_usage_repo.itemised(db, account_id):
        return None
    return await load_items(db, account_id, invoice_id)


async def load_items(db: Db, account_id: str, invoice_id: int) -> Itemised:
    total, micros, rows = await account_usage_repo.invoiced_items(db, account_id, invoice_id,
                                                                  MAX_ROWS)
    return Itemised(total, rows, micros)


def sheet(items: Itemised | None, currency: str, timezone: str, title: str,
          preface: list[str] | None = None) -> Sheet | None:
    """The list's pages (None: no list): ``preface`` (the usage appendix), a note, the
    heading line, the records' lines, one a record, their columns padded to a common width,
    and the total of every record the invoice bills; each page headed by the document's
    ``title``."""
    if items is None or not items.rows:
        return None
    tz = _zone(timezone)
    money = printed_in(currency)
    # isoformat, cut to the second, reads as strftime("%Y-%m-%d %H:%M:%S") at a third of its cost
    rows = [[r.event_time.astimezone(tz).isoformat(" ", "seconds")[:19],
             SERVICES.get(r.kind, r.kind), _number(r), _usage(r), r.zone or "",
             "" if r.amount_micros is None else money(r.amount_micros)]
            for _, r in items.rows]
    head = ["Date and time", "Service", "Number", "Usage", "Zone", f"Amount {currency}"]
    total = format_printed(items.total_micros, currency)
    widths = [max(map(len, column)) for column in zip(head, *rows, strict=True)]
    widths[5] = max(widths[5], len(total))
    note = f"{items.total:,} records; times in {getattr(tz, 'key', 'UTC')}."
    if items.total > len(items.rows):
        note = (f"The first {len(items.rows):,} of {items.total:,} records; every record, "
                f"with its charge, is in the usage export of the account for the period. "
                f"Times in {getattr(tz, 'key', 'UTC')}.")
    label = f"Total, {items.total:,} records"
    line = _line(widths)
    heading = line(*head).rstrip()
    return Sheet(running=f"{title} · {TITLE.lower()}", title=TITLE, note=note,
                 head=heading, lines=[line(*row).rstrip() for row in rows],
                 foot=[label + total.rjust(max(len(heading) - len(label), len(total) + 2))],
                 preface=preface or [])


def appendix(usage: list[dict[str, str]], currency: str) -> list[str]:
    """The usage appendix (``page.usage_rows``) as the list's first lines, in the words and
    columns of the typst appendix's (``tables.USAGE``); none without usage rows."""
    if not usage:
        return []
    shape = tables.USAGE
    head = [h.replace("{cur}", currency) for h in shape.head or ()]
    rows = [[u["no"], u["what"], u["records"], u["usage"], u["amount"]] for u in usage]
    widths = [max(map(len, column)) for column in zip(head, *rows, strict=True)]
    line = "  ".join(f"{{:{'<' if a == 'l' else '>'}{w}}}" for a, w
                     in zip(shape.aligns, widths, strict=True)).format
    return [USAGE_TITLE, USAGE_TEXT, "", line(*head).rstrip(),
            *(line(*row).rstrip() for row in rows)]


def _line(widths: list[int]) -> Callable[..., str]:
    """A row's line (its trailing spaces to strip): date, service, number left; usage right;
    zone left; amount right; two spaces apart. One format string a list, not a join a row."""
    aligns = "<<<><>"
    return "  ".join(f"{{:{a}{w}}}" for a, w in zip(aligns, widths, strict=True)).format


def _number(r: ItemRow) -> str:
    if r.kind == "data":
        return r.msisdn or r.calling or ""
    return r.called or r.msisdn or ""


def _usage(r: ItemRow) -> str:
    if r.kind == "voice" and r.duration_s is not None:
        h, rest = divmod(r.duration_s, 3600)
        m, s = divmod(rest, 60)
        return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
    if r.kind == "data":
        return _volume((r.volume_up or 0) + (r.volume_down or 0))
    if r.quantity is not None:
        return f"{grouped(Decimal(r.quantity))} {r.unit or ''}".strip()
    return "1" if r.kind == "sms" else ""


def _volume(total: int) -> str:
    """``page.human(total, "byte")`` in integers: 336.60 kB, 1.80 GB, 512 bytes."""
    if total < 0:
        return human(Decimal(total), "byte")
    steps = 0
    while steps < len(_STEPS) - 1 and total >= 1000 ** (steps + 1):
        steps += 1
    if not steps:
        return f"{total:,} bytes"
    scale = 1000 ** steps
    cents = (200 * total + scale) // (2 * scale)  # hundredths, half up
    return f"{cents // 100:,}.{cents % 100:02d} {_STEPS[steps]}"


_STEPS = ("bytes", "kB", "MB", "GB", "TB")


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC
