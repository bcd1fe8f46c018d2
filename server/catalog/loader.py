"""Reading a catalog from a file (JSON or TOML) or from already-parsed data."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from billing_oss.core.errors import CatalogError
from billing_oss.server.catalog.billing import BillingCatalog, check_sections
from billing_oss.server.catalog.model import Catalog, Plan, TariffVersion
from billing_oss.server.catalog.schema import BillingSections, CatalogFile, TariffDef, VersionDef
from billing_oss.server.catalog.validate import build_catalog, validate_catalog, validate_version

_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_T = TypeVar("_T")
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(?P<field>[^`]*)`")


def load_catalog(path: str | Path) -> Catalog:
    """Load and check a catalog file; ``.toml`` is read as TOML, anything else as JSON."""
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise CatalogError("$", f"cannot read {source}: {exc.strerror}") from None
    if source.suffix.lower() == ".toml":
        try:
            parsed = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CatalogError("$", f"{source} is not valid TOML: {exc}") from None
        return catalog_from_dict(parsed)
    try:
        document = msgspec.json.decode(data, type=CatalogFile)
    except msgspec.ValidationError as exc:
        raise _catalog_error(exc) from None
    except msgspec.DecodeError as exc:
        raise CatalogError("$", f"{source} is not valid JSON: {exc}") from None
    return validate_catalog(document)


def catalog_from_dict(data: Mapping[str, Any]) -> Catalog:
    """Check an already-parsed catalog (same shape as the file)."""
    return validate_catalog(_convert(data, CatalogFile))


def billing_from_dict(data: Mapping[str, Any]) -> BillingCatalog:
    """Check only a parsed catalog's billing sections (``products``, ``tax_rates``,
    ``discounts``), e.g. of a catalog whose tariffs were checked elsewhere."""
    sections = {key: data[key] for key in BillingSections.__struct_fields__ if key in data}
    parsed = _convert(sections, BillingSections)
    return check_sections(parsed.products, parsed.tax_rates, parsed.discounts,
                          data.get("currency", "EUR"))


def catalog_from_definitions(
    currency: str,
    tariffs: Sequence[Mapping[str, Any]],
    identifiers: Mapping[str, tuple[str, str]],
    plans: Mapping[str, Sequence[Plan]] | None = None,
) -> Catalog:
    """A catalog from stored pieces: tariffs as ``{"id", "versions": [definition, ...]}``
    (each definition the jsonb of ``tariff_versions``, optional ``"currency"``),
    identifier -> (account id, tariff id), and optionally each account's subscription
    history (``Plan``s), which then decides the tariff by event time."""
    defs = [_convert(tariff, TariffDef, f"tariffs[{i}]") for i, tariff in enumerate(tariffs)]
    return build_catalog(currency, defs, identifiers, plans)


def version_from_definition(
    tariff_id: str, definition: Mapping[str, Any], path: str = "$"
) -> TariffVersion:
    """Check one stored tariff version definition on its own (admin API, publishing)."""
    return validate_version(tariff_id, _convert(definition, VersionDef, path), path)


def _convert(data: Any, kind: type[_T], prefix: str = "") -> _T:
    try:
        return msgspec.convert(data, type=kind, strict=True)
    except msgspec.ValidationError as exc:
        raise _catalog_error(exc, prefix) from None


def _catalog_error(exc: msgspec.ValidationError, prefix: str = "") -> CatalogError:
    """msgspec says ``<message> - at `$.tariffs[0].id```; keep the path, drop the ``$``."""
    match = _AT_PATH.match(str(exc))
    message = match.group("message") if match else str(exc)
    path = (match.group("path") or "") if match else ""
    unknown = _UNKNOWN_FIELD.match(message)
    if unknown:
        path = f"{path}.{unknown.group('field')}"
        message = "unknown key"
    joined = f"{prefix}{path}" if prefix else path.lstrip(".")
    return CatalogError(joined or "$", message)
