"""Rating: usage records -> charges in int64 micro-units (DESIGN.md §5).

Build a rater once per set of tariffs and rate batches with it::

    rater = make_rater(catalog)                # NativeRater; "reference" for the oracle
    outcomes = rater.rate(records)             # list[Charge | Failure], in order

Both raters fit ``core.ports.Rater`` and return its ``Charge`` / ``Failure`` (the one set of
outcome types the pipeline, the CLI and settlement share). A rater is two parts:

- the tariffs, compiled into the kernel's tables (``compile.compile_tariffs``: prefix
  tables, bands, rates) — seconds at a million prefixes, done when a tariff changes;
- the ``Accounts`` directory (identifier -> account and its tariff history), which changes
  in place when accounts do, so a new account is rated at once without a recompile.

``NativeRater(catalog, accounts=..., version_ids=...)`` takes a directory to share and the
stored versions' database ids (charges cite them); both default to the catalog's own.
Columnar path (native): ``cols = rater.columns(records)``, ``rated =
rater.rate_columns(cols)`` (arrays: status, amount, version, zone, band),
``rater.outcomes(records, cols, rated)`` when objects are wanted.

Both raters follow the semantics documented in ``server.rating.reference`` and
``server.rating.fields``; tests hold them equal on generated catalogs and records.
"""

from __future__ import annotations

from typing import Literal

from billing_oss.core.ports import Rater
from billing_oss.server.catalog.model import Catalog
from billing_oss.server.rating.accounts import Accounts
from billing_oss.server.rating.native import NativeRater, RatedColumns, UsageColumns
from billing_oss.server.rating.reference import ReferenceRater


def make_rater(
    catalog: Catalog, implementation: Literal["native", "reference"] = "native"
) -> Rater:
    if implementation == "reference":
        return ReferenceRater(catalog)
    return NativeRater(catalog)


__all__ = [
    "Accounts",
    "NativeRater",
    "RatedColumns",
    "ReferenceRater",
    "UsageColumns",
    "make_rater",
]
