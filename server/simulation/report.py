"""The comparison a simulation reports, as plain JSON-able data (money as decimal strings).

Revenue is the invoices' net (before tax), per currency; ``total`` includes tax. Every
breakdown is exact and sums to the total it breaks down:

- ``segments``: by ``service`` and ``zone`` over the invoice lines, plus one ``allowances``
  row (invoice-scope discounts); by ``product`` (the account's, in the catalog in force)
  and by each asked account attribute, over accounts.
- ``distribution``: per account change; percentiles by nearest rank; a histogram of the
  relative change; ``shock``: accounts whose net rises above the threshold (or from zero).
- ``coverage``: usage the candidate cannot rate, by reason, with what the baseline
  charged for it (money at stake); ``baseline_gaps`` the same for the catalog in force.
- ``baseline_check``: the baseline against the stored invoices of the same cycles.

The result holds nothing that changes between runs on the same data (no clock, no ids),
so a rerun is byte-identical; ``run_info`` holds the snapshot time and timings.
"""

from __future__ import annotations

import importlib.metadata
import itertools
from collections import defaultdict
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from billing_oss.core.money import format_micros
from billing_oss.server.billing.model import InvoiceDraft
from billing_oss.server.simulation.engine import Outcome
from billing_oss.server.simulation.usage import REASONS

PERCENTILES = (0, 5, 25, 50, 75, 95, 100)
# Relative change edges, percent: a bin is [edge, next edge); "new" bills had no baseline.
HISTOGRAM_EDGES = (-100, -50, -20, -10, -5, -1, 0, 1, 5, 10, 20, 50, 100)
ALLOWANCES = "(invoice allowances)"
NONE = "(none)"


def build(outcome: Outcome) -> dict[str, Any]:
    base, cand = outcome.baseline.drafts, outcome.candidate.drafts
    accounts = _per_account(base, cand)
    currencies = sorted({c for _, c in accounts})
    result: dict[str, Any] = {
        "manifest": _manifest(outcome),
        "totals": [_totals(base, cand, cur) for cur in currencies],
        "segments": _segments(outcome, accounts),
        "distribution": [_distribution(outcome, accounts, cur) for cur in currencies],
        "coverage": _coverage(outcome),
        "baseline_check": _check(outcome),
        "accounts": [
            {"account_id": a, "currency": cur, "baseline": _m(b), "candidate": _m(c),
             "change": _m(c - b), "change_percent": _percent(b, c)}
            for (a, cur), (b, c) in sorted(accounts.items())],
    }
    return result


def run_info(outcome: Outcome) -> dict[str, Any]:
    return {"snapshot_at": outcome.snap.taken_at.isoformat(), "snapshot": outcome.snap.snapshot,
            "read_seconds": f"{outcome.read_s:.3f}", "seconds": f"{outcome.elapsed_s:.3f}"}


def _m(micros: int) -> str:
    return format_micros(micros)


def _percent(before: int, after: int) -> str | None:
    if before == 0:
        return None
    change = Decimal(after - before) * 100 / Decimal(abs(before))
    return str(change.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def _manifest(o: Outcome) -> dict[str, Any]:
    r = o.request
    return {
        "periods": o.periods,
        "accounts": len(o.accounts),
        "account_filter": r.accounts, "segment": r.segment,
        "candidate_sha256": o.candidate_digest,
        "baseline_sha256": o.snap.fingerprint,
        "records": {"read": o.records, "outside_cycles": o.outside,
                    "rated_baseline": o.baseline.totals.rated,
                    "rated_candidate": o.candidate.totals.rated},
        "shock_percent": str(r.shock_percent),
        "code_version": importlib.metadata.version("billing-oss"),
    }


def _per_account(base: dict[tuple[str, str, str], InvoiceDraft],
                 cand: dict[tuple[str, str, str], InvoiceDraft],
                 ) -> dict[tuple[str, str], tuple[int, int]]:
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for side, drafts in enumerate((base, cand)):
        for (account, _, currency), d in drafts.items():
            out[account, currency][side] += d.totals.net_micros
    return {k: (v[0], v[1]) for k, v in out.items()}


def _totals(base: dict[tuple[str, str, str], InvoiceDraft],
            cand: dict[tuple[str, str, str], InvoiceDraft], currency: str) -> dict[str, Any]:
    def sums(drafts: dict[tuple[str, str, str], InvoiceDraft]) -> tuple[int, int, int]:
        chosen = [d.totals for k, d in drafts.items() if k[2] == currency]
        return (sum(t.net_micros for t in chosen), sum(t.tax_micros for t in chosen),
                sum(t.total_micros for t in chosen))

    (bn, bt, bg), (cn, ct, cg) = sums(base), sums(cand)
    return {"currency": currency,
            "baseline": {"net": _m(bn), "tax": _m(bt), "total": _m(bg)},
            "candidate": {"net": _m(cn), "tax": _m(ct), "total": _m(cg)},
            "change": {"net": _m(cn - bn), "tax": _m(ct - bt), "total": _m(cg - bg)},
            "change_percent": _percent(bn, cn)}


def _segments(o: Outcome, accounts: dict[tuple[str, str], tuple[int, int]],
              ) -> list[dict[str, Any]]:
    sums: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    attrs = {a.account_id: a.attrs for a in o.accounts}
    for side, drafts in enumerate((o.baseline.drafts, o.candidate.drafts)):
        for (_, _, currency), d in drafts.items():
            for line in d.lines:
                zone = line.zone or NONE if line.kind == "usage" else NONE
                sums["service", line.service, currency][side] += line.net_micros
                sums["zone", zone, currency][side] += line.net_micros
            allowance = d.totals.allowance_micros
            if allowance:
                for dim in ("service", "zone"):
                    sums[dim, ALLOWANCES, currency][side] -= allowance
    for (account, currency), (b, c) in accounts.items():
        keys = [("product", o.products.get(account, NONE))]
        keys += [(f"attrs.{k}", str(attrs[account].get(k, NONE))) for k in o.request.by]
        for dim, value in keys:
            sums[dim, value, currency][0] += b
            sums[dim, value, currency][1] += c
    return [{"dimension": dim, "value": value, "currency": cur, "baseline": _m(b),
             "candidate": _m(c), "change": _m(c - b)}
            for (dim, value, cur), (b, c) in sorted(sums.items())]


def _distribution(o: Outcome, accounts: dict[tuple[str, str], tuple[int, int]],
                  currency: str) -> dict[str, Any]:
    pairs = sorted(((c - b, a, b, c) for (a, cur), (b, c) in accounts.items()
                    if cur == currency))
    changes = [p[0] for p in pairs]
    percentiles = {f"p{p}": _m(changes[_rank(p, len(changes))]) for p in PERCENTILES
                   } if changes else {}
    bins = [0] * (len(HISTOGRAM_EDGES) + 1)
    new = unchanged = 0
    shock: list[str] = []
    threshold = o.request.shock_percent
    for change, account, b, c in pairs:
        if change == 0:
            unchanged += 1
        if b == 0:
            new += c != 0
            if c > 0:
                shock.append(account)
            continue
        relative = Decimal(change) * 100 / Decimal(abs(b))
        bins[sum(1 for e in HISTOGRAM_EDGES if relative >= e)] += 1
        if relative > threshold:
            shock.append(account)
    labels = ([f"< {HISTOGRAM_EDGES[0]}%"]
              + [f"[{a}%, {b}%)" for a, b in itertools.pairwise(HISTOGRAM_EDGES)]
              + [f">= {HISTOGRAM_EDGES[-1]}%"])
    top = o.request.top
    return {
        "currency": currency, "accounts": len(pairs), "unchanged": unchanged,
        "percentiles": percentiles,
        "histogram": [{"bin": label, "accounts": n} for label, n in zip(labels, bins,
                                                                         strict=True)],
        "from_zero": new,
        "top_increases": _rows(sorted(pairs, key=lambda p: (-p[0], p[1]))[:top],
                               lambda p: p[0] > 0),
        "top_decreases": _rows(pairs[:top], lambda p: p[0] < 0),
        "shock": {"threshold_percent": str(threshold), "accounts": len(shock),
                  "sample": sorted(shock)[:top]},
    }


def _rank(percentile: int, n: int) -> int:
    """Nearest rank (an index into n sorted values)."""
    return max(0, -(-percentile * n // 100) - 1)


def _rows(pairs: Iterable[tuple[int, str, int, int]], keep: Any) -> list[dict[str, Any]]:
    return [{"account_id": a, "baseline": _m(b), "candidate": _m(c), "change": _m(ch),
             "change_percent": _percent(b, c)} for ch, a, b, c in pairs if keep((ch, a, b, c))]


def _coverage(o: Outcome) -> dict[str, Any]:
    base_gaps = o.baseline.totals.rejected
    return {
        "candidate_gaps": [{"reason": reason, "currency": cur, "records": n,
                            "at_stake": _m(stake)}
                           for (reason, cur), (n, stake) in sorted(o.gaps.items())],
        "baseline_gaps": [{"reason": reason, "records": int(base_gaps[code])}
                          for code, reason in sorted(REASONS.items()) if base_gaps[code]],
    }


def _check(o: Outcome) -> dict[str, Any]:
    """The baseline of every cycle that has invoices against their stored totals."""
    compared = equal = 0
    different = []
    selected = {a.account_id for a in o.accounts}
    for (account, period, currency), stored in sorted(o.snap.invoiced.items()):
        if account not in selected:
            continue
        compared += 1
        draft = o.baseline.drafts.get((account, period, currency))
        net = draft.totals.net_micros if draft else 0
        total = draft.totals.total_micros if draft else 0
        if (net, total) == (stored.net_micros, stored.total_micros):
            equal += 1
        else:
            different.append({"account_id": account, "period": period, "currency": currency,
                              "invoiced_total": _m(stored.total_micros),
                              "recomputed_total": _m(total)})
    return {"cycles_invoiced": compared, "equal": equal, "different": different}
