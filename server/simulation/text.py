"""A simulation's result for people (a table) and for spreadsheets (CSV rows)."""

from __future__ import annotations

import csv
import io
from typing import Any


def table(result: dict[str, Any]) -> str:
    m = result["manifest"]
    out = [f"simulation of {m['periods'][0]}..{m['periods'][-1]}: {m['accounts']} accounts, "
           f"{m['records']['read']} usage records "
           f"(rated: baseline {m['records']['rated_baseline']}, "
           f"candidate {m['records']['rated_candidate']})",
           f"candidate sha256 {m['candidate_sha256'][:16]}…  "
           f"catalog in force sha256 {m['baseline_sha256'][:16]}…", ""]
    out += _grid(["currency", "baseline net", "candidate net", "change", "%",
                  "change incl. tax"],
                 [[t["currency"], t["baseline"]["net"], t["candidate"]["net"],
                   t["change"]["net"], t["change_percent"] or "-", t["change"]["total"]]
                  for t in result["totals"]])
    out += ["", "by segment (net):"]
    out += _grid(["dimension", "value", "currency", "baseline", "candidate", "change"],
                 [[s["dimension"], s["value"], s["currency"], s["baseline"], s["candidate"],
                   s["change"]] for s in result["segments"]])
    for d in result["distribution"]:
        p = d["percentiles"]
        out += ["", f"per account ({d['currency']}, {d['accounts']} accounts, "
                f"{d['unchanged']} unchanged): " + "  ".join(f"{k} {v}" for k, v in p.items()),
                f"bill shock (> {d['shock']['threshold_percent']}%): "
                f"{d['shock']['accounts']} accounts"]
        for title, rows in (("largest increases", d["top_increases"]),
                            ("largest decreases", d["top_decreases"])):
            if rows:
                out += [f"{title}:", *_grid(
                    ["account", "baseline", "candidate", "change", "%"],
                    [[r["account_id"], r["baseline"], r["candidate"], r["change"],
                      r["change_percent"] or "-"] for r in rows])]
    gaps = result["coverage"]["candidate_gaps"]
    out += ["", "coverage gaps (usage the candidate cannot rate): " + ("none" if not gaps else "")]
    if gaps:
        out += _grid(["reason", "currency", "records", "at stake"],
                     [[g["reason"], g["currency"], str(g["records"]), g["at_stake"]]
                      for g in gaps])
    check = result["baseline_check"]
    out += ["", f"baseline check: {check['equal']} of {check['cycles_invoiced']} invoiced "
            f"cycles recomputed equal to their invoices"]
    out += [f"  differs: {d['account_id']} {d['period']} {d['currency']} invoiced "
            f"{d['invoiced_total']}, recomputed {d['recomputed_total']}"
            for d in check["different"]]
    return "\n".join(out) + "\n"


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(header), *(line(r) for r in rows)]


def csv_rows(result: dict[str, Any]) -> str:
    """One row per account and currency, then the segments, each row tagged by its kind."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["kind", "key", "value", "currency", "baseline", "candidate", "change"])
    for t in result["totals"]:
        writer.writerow(["total", "net", "", t["currency"], t["baseline"]["net"],
                         t["candidate"]["net"], t["change"]["net"]])
    for s in result["segments"]:
        writer.writerow(["segment", s["dimension"], s["value"], s["currency"], s["baseline"],
                         s["candidate"], s["change"]])
    for a in result["accounts"]:
        writer.writerow(["account", "account_id", a["account_id"], a["currency"],
                         a["baseline"], a["candidate"], a["change"]])
    return buffer.getvalue()
