"""Settlement report per partner and period: what we sent (TAP files: files, call events,
charges), what the partner returned (severe returns in its RAP files; fatal returns as the
files they rejected), what it sent us (accepted inbound TAP files) and what we returned of it
(severe returns in our RAP files), and the net position in the TAP (settlement) currency:
sent − returned − (received − returned_by_us), positive when the partner owes us.

Every sum is a sum of files' audit totals (a TAP file's TotalCharge and
CallEventDetailsCount, a RAP file's TotalSevereReturnValue), never recomputed from events;
``checks`` sets each file's total beside the sum of the events stored for it, so a report
whose files disagree with their events says so. Superseded files (rejected by a fatal
return) count in ``fatal_returns`` only; their regenerated file counts as sent.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import msgspec

from billing_oss.core.money import format_scaled
from billing_oss.server.render import typst_compiler
from billing_oss.server.settlement import outbound, repo
from billing_oss.server.settlement.model import SettlementFile
from billing_oss.server.store.pool import Connection


class Side(msgspec.Struct, kw_only=True):
    files: int = 0
    events: int = 0
    charges: str = "0"


class Report(msgspec.Struct, frozen=True, kw_only=True):
    partner: str
    period_from: str
    period_to: str
    currency: str
    decimal_places: int
    sent: Side
    returned: Side
    received: Side
    returned_by_us: Side
    fatal_returns: int
    net: str
    files: list[dict[str, Any]]
    checks: list[dict[str, Any]]


async def build(conn: Connection, tadig: str, start: dt.datetime, end: dt.datetime) -> Report:
    partner = await outbound.require_partner(conn, tadig)
    places = partner.tap_decimal_places
    files = await repo.files_in_period(conn, tadig, start, end)
    sent = [f for f in files if f.direction == "out" and f.file_type in ("tap", "notification")
            and f.state != "superseded"]
    rap_in = [f for f in files if f.direction == "in" and f.file_type == "rap"
              and f.state != "rejected"]
    tap_in = [f for f in files if f.direction == "in" and f.file_type == "tap"
              and f.state == "accepted"]
    rap_out = [f for f in files if f.direction == "out" and f.file_type == "rap"]
    fatal = [f for f in files if f.state == "superseded"]
    totals = {name: _sum(group, places) for name, group in
              (("sent", sent), ("returned", rap_in), ("received", tap_in),
               ("returned_by_us", rap_out))}
    net = (totals["sent"][2] - totals["returned"][2]
           - (totals["received"][2] - totals["returned_by_us"][2]))
    checks = []
    for f in sent:
        stored = await repo.events_of_file(conn, f.file_id)
        in_file = sum(e.tap_charge for e in stored if e.file_id == f.file_id)
        checks.append({"file": f.name, "audit_total": f.total(),
                       "events_total": format_scaled(in_file, f.decimal_places),
                       "audit_count": f.event_count, "events_count": len(stored),
                       "ok": in_file == f.total_charge and len(stored) == f.event_count})
    return Report(
        partner=tadig, period_from=_iso(start), period_to=_iso(end),
        currency=partner.tap_currency, decimal_places=places,
        sent=_side(totals["sent"], places), returned=_side(totals["returned"], places),
        received=_side(totals["received"], places),
        returned_by_us=_side(totals["returned_by_us"], places), fatal_returns=len(fatal),
        net=format_scaled(net, places),
        files=[{"name": f.name, "direction": f.direction, "type": f.file_type,
                "state": f.state, "events": f.event_count, "total": f.total()} for f in files],
        checks=checks)


def _sum(files: list[SettlementFile], places: int) -> tuple[int, int, int]:
    """(files, events, total at ``places`` decimals) of files' audit totals."""
    total = 0
    for f in files:
        shift = places - f.decimal_places
        total += f.total_charge * 10**shift if shift >= 0 else f.total_charge // 10**-shift
    return len(files), sum(f.event_count for f in files), total


def _side(t: tuple[int, int, int], places: int) -> Side:
    return Side(files=t[0], events=t[1], charges=format_scaled(t[2], places))


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_csv(r: Report) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["partner", "period_from", "period_to", "line", "files", "events", "amount",
                "currency"])
    for line, side in (("sent", r.sent), ("returned", r.returned), ("received", r.received),
                       ("returned_by_us", r.returned_by_us)):
        w.writerow([r.partner, r.period_from, r.period_to, line, side.files, side.events,
                    side.charges, r.currency])
    w.writerow([r.partner, r.period_from, r.period_to, "net", "", "", r.net, r.currency])
    return out.getvalue()


TEMPLATE = r"""
#let d = json("data.json")
#set document(title: "Settlement " + d.partner)
#set page(paper: "a4", margin: (x: 18mm, y: 16mm))
#set text(size: 10pt)
#text(14pt, weight: "bold")[Settlement report: #d.partner]
\ Period #d.period_from to #d.period_to, amounts in #d.currency
#v(8pt)
#table(columns: (1fr, auto, auto, auto), align: (left, right, right, right),
  [*Line*], [*Files*], [*Events*], [*Amount*],
  [Sent], [#d.sent.files], [#d.sent.events], [#d.sent.charges],
  [Returned], [#d.returned.files], [#d.returned.events], [#d.returned.charges],
  [Received], [#d.received.files], [#d.received.events], [#d.received.charges],
  [Returned by us], [#d.returned_by_us.files], [#d.returned_by_us.events],
  [#d.returned_by_us.charges],
  [*Net*], [], [], [*#d.net*])
#v(8pt)
#table(columns: (1fr, auto, auto, auto, auto, auto),
  align: (left, left, left, left, right, right),
  [*File*], [*Direction*], [*Type*], [*State*], [*Events*], [*Total*],
  ..d.files.map(f => (f.name, f.direction, f.type, f.state, str(f.events), f.total)).flatten())
"""


def to_pdf(r: Report) -> bytes:
    return typst_compiler.pdf({"main.typ": TEMPLATE.encode(),
                               "data.json": msgspec.json.encode(r)})
