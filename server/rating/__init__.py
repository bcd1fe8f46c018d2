"""Rating: usage records -> charges in int64 micro-units (DESIGN.md §5).

Build a rater once per catalog and rate batches with it::

    rater = make_rater(catalog)                # NativeRater; "reference" for the oracle
    outcomes = rater.rate(records)             # list[Charge | Rejection], in order

- ``Charge``: record_key, account_id, amount_micros, currency, zone, band, tariff_id,
  effective_from, tariff_version (``<tariff id>@<effective_from>``).
- ``Rejection``: record_key, reason (``core.errors.Reason``), account_id, detail.
- Columnar path (native): ``cols = rater.columns(records)`` or build ``UsageColumns``
  yourself, ``rated = rater.rate_columns(cols)`` (arrays: status, amount, version, zone,
  band), ``rater.outcomes(cols, rated)`` when objects are wanted.

Both raters follow the semantics documented in ``server.rating.reference`` and
``server.rating.fields``; tests hold them equal on generated catalogs and records.
"""

from __future__ import annotations

from typing import Literal

from billing_oss.server.catalog.model import Catalog
from billing_oss.server.rating.native import NativeRater, RatedColumns, UsageColumns
from billing_oss.server.rating.outcome import Charge, Outcome, Rater, Rejection
from billing_oss.server.rating.reference import ReferenceRater


def make_rater(
    catalog: Catalog, implementation: Literal["native", "reference"] = "native"
) -> Rater:
    if implementation == "reference":
        return ReferenceRater(catalog)
    return NativeRater(catalog)


__all__ = [
    "Charge",
    "NativeRater",
    "Outcome",
    "RatedColumns",
    "Rater",
    "ReferenceRater",
    "Rejection",
    "UsageColumns",
    "make_rater",
]
