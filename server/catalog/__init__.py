"""Versioned tariff catalog (DESIGN.md §5): load, check, and hand to the raters.

Public API:

- ``load_catalog(path)`` -> ``Catalog``: a JSON or TOML file (``.toml`` suffix).
- ``catalog_from_dict(data)``: the same shape, already parsed (e.g. from jsonb).
- ``catalog_from_definitions(currency, tariffs, identifiers)``: what the database holds —
  tariffs ``[{"id", "currency"?, "versions": [<tariff_versions.definition>, ...]}]`` and
  ``{identifier: (account_id, tariff_id)}`` — without a catalog file.
- ``version_from_definition(tariff_id, definition)``: check one version definition.
- ``billing_from_dict(data)``: check only the billing sections (products, tax rates,
  discounts; see ``server.catalog.billing``), which a full check also returns as
  ``Catalog.billing``.

Every validation failure raises ``core.errors.CatalogError(path, message)`` where
``path`` is like ``tariffs[0].versions[1].rates[3].steps[1].increment``. The checks and the
choices they encode are listed in ``server.catalog.validate``; each per-call pricing rule's
(connect fee, minimum, maximum, rounding) in its module of ``server.catalog.rules``.

A tariff version's stable identity is ``<tariff id>@<effective_from as RFC 3339 UTC>``,
e.g. ``retail@2026-01-01T00:00:00Z`` (``TariffVersion.identity``); it is what
``billing-oss rate`` prints as ``tariff_version``.
"""

from billing_oss.server.catalog.billing import BillingCatalog
from billing_oss.server.catalog.loader import (
    billing_from_dict,
    catalog_from_definitions,
    catalog_from_dict,
    load_catalog,
    version_from_definition,
)
from billing_oss.server.catalog.model import (
    Account,
    Band,
    Catalog,
    Plan,
    Rate,
    Step,
    Tariff,
    TariffVersion,
)

__all__ = [
    "Account",
    "Band",
    "BillingCatalog",
    "Catalog",
    "Plan",
    "Rate",
    "Step",
    "Tariff",
    "TariffVersion",
    "billing_from_dict",
    "catalog_from_definitions",
    "catalog_from_dict",
    "load_catalog",
    "version_from_definition",
]
