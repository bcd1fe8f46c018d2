"""The per-account change of a simulation as a histogram (.svg or .png), one panel per
currency. Bars count accounts; the money itself never passes through a float."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def save(result: dict[str, Any], path: Path) -> None:
    figure = _histogram(result)
    metadata = {"Date": None} if path.suffix.lower() == ".svg" else {}
    figure.savefig(path, metadata=metadata)
    plt.close(figure)


def save_pdf(result: dict[str, Any], report_text: str, path: Path) -> None:
    """The report as a PDF: the table's text, 70 lines a page, then the histogram."""
    from matplotlib.backends.backend_pdf import PdfPages

    lines = report_text.splitlines()
    with PdfPages(path, metadata={"Title": "Pricing simulation", "CreationDate": None,
                                  "ModDate": None}) as pdf:
        for first in range(0, max(len(lines), 1), 70):
            page = plt.figure(figsize=(8.27, 11.69))
            page.text(0.04, 0.97, "\n".join(lines[first:first + 70]), family="monospace",
                      fontsize=6.5, va="top")
            pdf.savefig(page)
            plt.close(page)
        figure = _histogram(result)
        pdf.savefig(figure)
        plt.close(figure)


def _histogram(result: dict[str, Any]) -> Any:
    distributions = result["distribution"] or [{"currency": "-", "histogram": []}]
    figure, axes = plt.subplots(len(distributions), 1, squeeze=False,
                                figsize=(8, 3 * len(distributions)))
    for ax, d in zip(axes[:, 0], distributions, strict=True):
        labels = [b["bin"] for b in d["histogram"]]
        ax.bar(range(len(labels)), [b["accounts"] for b in d["histogram"]], color="#4472c4")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("accounts")
        ax.set_title(f"change of net per account ({d['currency']}), "
                     f"{result['manifest']['periods'][0]}..{result['manifest']['periods'][-1]}")
    figure.tight_layout()
    return figure
