"""``POST /v1/tariffs`` and ``POST /v1/tariffs/{id}/versions`` hold an upload to exactly the
rules ``billing-oss catalog load`` applies: the body decodes into the catalog's own types
(``server.catalog.schema``) and is checked by ``server.catalog.validate``; here a rule's
failure only becomes a 422 naming the body's field (``$.tariffs[0].versions[1].rates[3]``).
"""

from __future__ import annotations

from billing_oss.core.errors import CatalogError, InvalidRequest
from billing_oss.server.catalog import BillingCatalog
from billing_oss.server.catalog.schema import CatalogFile, VersionDef
from billing_oss.server.catalog.validate import validate_catalog, validate_version


def check_catalog(catalog: CatalogFile) -> BillingCatalog:
    """Every rule a catalog file is held to; the checked billing sections."""
    try:
        return validate_catalog(catalog).billing
    except CatalogError as exc:
        raise invalid(exc) from None


def check_version(version: VersionDef, tariff_id: str) -> None:
    """The rules one version of a catalog file is held to."""
    try:
        validate_version(tariff_id, version, "$")
    except CatalogError as exc:
        raise invalid(exc) from None


def invalid(exc: CatalogError) -> InvalidRequest:
    """A catalog rule's failure as a 422 naming the body's field."""
    path = exc.path if exc.path.startswith("$") else f"$.{exc.path}"
    message = exc.message.removeprefix(f"{exc.path}: ")
    return InvalidRequest(f"invalid body: {path}: {message}", errors=[
        {"location": "body", "path": path, "message": message}])
