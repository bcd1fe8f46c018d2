"""Plots of reports (matplotlib, no display needed): titled, axes labelled with their units and
currency, a legend naming each line. SVG or PNG by the file's suffix.

Money is drawn from its exact decimal string; the float made for the pixel position never
goes back into a figure anyone reads (the report's rows stay the record).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, safe in a server or CI

import matplotlib.pyplot as plt
import matplotlib.ticker

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.analytics.reports import UNITS, Report

SUFFIXES = (".svg", ".png")
MAX_SERIES = 8  # more lines than this are unreadable: the rest are summed as "other"


def save(report: Report, path: Path) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidRequest(f"--plot {path}: the file must end in .svg or .png")
    if report.report == "forecast":
        figure = _forecast(report)
    elif report.report == "segments":
        figure = _segments(report)
    elif report.report == "top":
        figure = _top(report)
    elif report.report == "mrr":
        figure = _mrr(report)
    elif report.report == "collections":
        figure = _collections(report)
    else:
        figure = _series(report)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _label(key: dict[str, str | None]) -> str:
    return " · ".join(f"{v if v is not None else '(none)'}" for v in key.values()) or "total"


def _range(report: Report) -> str:
    return f"{report.start} to {report.end} (UTC, end excluded)"


def _series(report: Report) -> matplotlib.figure.Figure:
    """One line per dimension value over the periods; one panel per currency (revenue) or
    per service (usage, whose units differ by service)."""
    usage = report.report == "usage"
    panels: dict[str, dict[str, dict[str, Decimal]]] = defaultdict(lambda: defaultdict(dict))
    for row in report.rows:
        panel = (row.key.get("service") or "?") if usage else row.currency
        key = {k: v for k, v in row.key.items() if not (usage and k == "service")}
        value = Decimal(row.units) if usage else Decimal(row.amount)
        points = panels[panel][_label(key)]
        period = row.period or str(report.start)
        points[period] = points.get(period, Decimal(0)) + value
    if not panels:
        panels["(no data)"] = defaultdict(dict)
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 3.6 * len(panels)), squeeze=False)
    for ax, (panel, series) in zip(axes[:, 0], sorted(panels.items()), strict=True):
        for name, points in _top_series(series):
            periods = sorted(points)
            ax.plot(periods, [float(points[p]) for p in periods], marker="o", label=name)
        what = "Usage" if usage else "Revenue"
        unit = UNITS.get(panel, "units") if usage else panel
        ax.set_title(f"{what} ({panel}) by {report.period}"
                     f"{' and ' + ', '.join(report.by) if report.by else ''}, {_range(report)}")
        ax.set_xlabel(f"period start ({report.period}, UTC)")
        ax.set_ylabel(f"{what.lower()} ({unit})")
        ax.tick_params(axis="x", labelrotation=45)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(title=", ".join(k for k in report.by if not (usage and k == "service"))
                      or None, fontsize="small")
    return figure


def _top_series(series: dict[str, dict[str, Decimal]]) -> list[tuple[str, dict[str, Decimal]]]:
    ranked = sorted(series.items(), key=lambda item: -abs(sum(item[1].values(), Decimal(0))))
    if len(ranked) <= MAX_SERIES:
        return ranked
    other: dict[str, Decimal] = defaultdict(Decimal)
    for _, points in ranked[MAX_SERIES - 1:]:
        for period, value in points.items():
            other[period] += value
    return [*ranked[:MAX_SERIES - 1], (f"other ({len(ranked) - MAX_SERIES + 1})", other)]


def _top(report: Report) -> matplotlib.figure.Figure:
    figure, ax = plt.subplots(figsize=(9, 0.45 * max(len(report.rows), 4) + 1.5))
    names = [f"{_label(r.key)} ({r.currency})" for r in report.rows][::-1]
    ax.barh(names, [float(Decimal(r.amount)) for r in report.rows][::-1], label="revenue")
    currencies = sorted({r.currency for r in report.rows}) or ["-"]
    ax.set_title(f"Top accounts by revenue, {_range(report)}")
    ax.set_xlabel(f"revenue ({', '.join(currencies)})")
    ax.set_ylabel("account (currency)")
    ax.legend()
    return figure


def _mrr(report: Report) -> matplotlib.figure.Figure:
    """MRR at each month's close, one line per product; one panel per currency."""
    panels: dict[str, dict[str, dict[str, Decimal]]] = defaultdict(lambda: defaultdict(dict))
    for row in report.mrr:
        panels[row.currency][row.product or "(no product)"][row.month.isoformat()] = \
            Decimal(row.mrr)
    if not panels:
        panels["(no data)"] = defaultdict(dict)
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 3.6 * len(panels)), squeeze=False)
    for ax, (currency, series) in zip(axes[:, 0], sorted(panels.items()), strict=True):
        for name, points in _top_series(series):
            months = sorted(points)
            ax.plot(months, [float(points[m]) for m in months], marker="o", label=name)
        ax.set_title(f"MRR ({currency}) at each month's close by product, {_range(report)}")
        ax.set_xlabel("month (UTC)")
        ax.set_ylabel(f"MRR ({currency} per month)")
        ax.tick_params(axis="x", labelrotation=45)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(title="product", fontsize="small")
    return figure


def _collections(report: Report) -> matplotlib.figure.Figure:
    """Billed, collected and the receivables at each month's close; one panel per currency."""
    currencies = sorted({c.currency for c in report.collections}) or ["(no data)"]
    figure, axes = plt.subplots(len(currencies), 1, figsize=(9, 3.6 * len(currencies)),
                                squeeze=False)
    for ax, currency in zip(axes[:, 0], currencies, strict=True):
        rows = [c for c in report.collections if c.currency == currency]
        months = [c.month.isoformat() for c in rows]
        for field, label in (("billed", "billed (invoices + fees − credit notes)"),
                             ("collected", "collected (payments − refunds, reversals)"),
                             ("receivables", "receivables at the month's close")):
            ax.plot(months, [float(Decimal(getattr(c, field))) for c in rows], marker="o",
                    label=label)
        ax.set_title(f"Collections ({currency}) by month, {_range(report)}")
        ax.set_xlabel("month (UTC)")
        ax.set_ylabel(f"amount ({currency})")
        ax.tick_params(axis="x", labelrotation=45)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return figure


def _segments(report: Report) -> matplotlib.figure.Figure:
    drivers = report.segments[:MAX_SERIES * 2]
    figure, ax = plt.subplots(figsize=(9, 0.5 * max(len(drivers), 4) + 1.8))
    names = [f"{_label(d.key)} ({d.currency})" for d in drivers][::-1]
    left = [0.0] * len(drivers)
    for effect, colour in (("accounts_effect", "tab:red"), ("usage_effect", "tab:orange"),
                           ("price_effect", "tab:purple")):
        values = [float(Decimal(getattr(d, effect))) for d in drivers][::-1]
        ax.barh(names, values, left=left, color=colour, label=effect.replace("_", " "))
        left = [a + b for a, b in zip(left, values, strict=True)]
    currencies = sorted({d.currency for d in drivers}) or ["-"]
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_title(f"Segments losing revenue vs the previous period, {_range(report)}")
    ax.set_xlabel(f"revenue change ({', '.join(currencies)})")
    ax.set_ylabel(", ".join(report.by))
    ax.legend(fontsize="small")
    return figure


def _forecast(report: Report) -> matplotlib.figure.Figure:
    """The history (solid), the forecast (dashed) and its 80 % and 95 % bands, per series;
    one panel per currency."""
    currencies = sorted({p.currency for p in report.forecast}) or ["-"]
    figure, axes = plt.subplots(len(currencies), 1, figsize=(9, 3.8 * len(currencies)),
                                squeeze=False)
    for ax, currency in zip(axes[:, 0], currencies, strict=True):
        names: list[str] = []
        for p in report.forecast:
            if p.currency == currency and _label(p.key) not in names:
                names.append(_label(p.key))
        for name in names[:4]:
            history = sorted((r.period or "", float(Decimal(r.amount))) for r in report.rows
                             if r.currency == currency and _label(r.key) == name)
            ahead = [p for p in report.forecast if p.currency == currency
                     and _label(p.key) == name]
            line = ax.plot([h[0] for h in history], [h[1] for h in history], label=name)[0]
            days = [p.day.isoformat() for p in ahead]
            ax.plot(days, [float(Decimal(p.mean)) for p in ahead], linestyle="--",
                    color=line.get_color(), label=f"{name}: forecast")
            ax.fill_between(days, [float(Decimal(p.low95)) for p in ahead],
                            [float(Decimal(p.high95)) for p in ahead], alpha=0.12,
                            color=line.get_color(), label=f"{name}: 95 % interval")
            ax.fill_between(days, [float(Decimal(p.low80)) for p in ahead],
                            [float(Decimal(p.high80)) for p in ahead], alpha=0.25,
                            color=line.get_color(), label=f"{name}: 80 % interval")
        ax.set_title(f"Daily revenue ({currency}) and its ETS forecast, history "
                     f"{_range(report)}")
        ax.set_xlabel("day (UTC)")
        ax.set_ylabel(f"revenue per day ({currency})")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(10))
        ax.tick_params(axis="x", labelrotation=45)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", ncol=2)
    return figure
