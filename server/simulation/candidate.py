"""A candidate catalog laid over the catalog in force: what a simulation prices with.

The candidate is a catalog file (``DESIGN.md`` §5 plus ``products``, ``tax_rates``,
``discounts``), read as changes to the stored catalog:

- ``tariffs``: a tariff named in the file replaces the stored one of that id (all its
  versions); new ids are added; others stay.
- ``products``: replace or add by id. ``discounts``: replace or add by ``code``.
- ``tax_rates``: the file's periods replace every stored period of the same jurisdiction
  and tax class.
- ``accounts``: ``{"id", "tariff", "product"?}`` moves the account when that differs from
  its latest subscription: each of its subscriptions is then priced on that tariff (and
  product) instead, over the same dates. An account stated as it already is changes
  nothing, so the current catalog file as the candidate is the baseline itself.

Every part is checked by the catalog's own rules; a failure names its path.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from billing_oss.core.errors import CatalogError
from billing_oss.server.billing.model import Discount
from billing_oss.server.catalog import billing_from_dict, catalog_from_definitions
from billing_oss.server.catalog.model import Catalog
from billing_oss.server.catalog.pricing import Product
from billing_oss.server.catalog.tax import TaxRate
from billing_oss.server.simulation.snapshot_repo import Snapshot, SubscriptionRow, TariffRow


class Scenario(msgspec.Struct):
    """Everything pricing reads that a candidate may change."""

    catalog: Catalog  # tariffs only (accounts' plans are ``subscriptions``)
    tariffs: list[TariffRow]
    subscriptions: list[SubscriptionRow]
    products: dict[str, Product]
    tax_rates: tuple[TaxRate, ...]
    discounts: list[tuple[str, Discount, str | None]]  # (code, discount, account or None)


def digest(document: Mapping[str, Any]) -> str:
    """sha256 of a catalog document in canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def check(document: Any) -> None:
    """What can be checked without the catalog in force: the shape, no NUL anywhere (no
    PostgreSQL text holds one), the file's own tariffs and billing sections."""
    if not isinstance(document, Mapping):
        raise CatalogError("$", "a candidate catalog is a JSON object")
    _no_nul(document, "$")
    currency = document.get("currency", "EUR")
    if not isinstance(currency, str) or not re.fullmatch("[A-Z]{3}", currency):
        raise CatalogError("currency", "an ISO 4217 code such as EUR")
    tariffs = document.get("tariffs", [])
    if not isinstance(tariffs, list):
        raise CatalogError("tariffs", "a list of tariffs")
    catalog_from_definitions(str(document.get("currency", "EUR")), tariffs, {})
    billing_from_dict(document)
    if not isinstance(document.get("accounts", []), list):
        raise CatalogError("accounts", "a list of accounts")


def _no_nul(value: Any, path: str) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise CatalogError(path, "NUL characters are not allowed")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _no_nul(key, path)
            _no_nul(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _no_nul(item, f"{path}[{i}]")


def baseline(snap: Snapshot) -> Scenario:
    return Scenario(
        catalog=_catalog(snap.tariffs), tariffs=snap.tariffs,
        subscriptions=snap.subscriptions, products=snap.products, tax_rates=snap.tax_rates,
        discounts=[(code, d, snap.discount_accounts[d.discount_id])
                   for code, d in snap.discounts])


def overlay(snap: Snapshot, document: Mapping[str, Any]) -> Scenario:
    check(document)
    currency = str(document.get("currency", "EUR"))
    stated = {t["id"]: t for t in document.get("tariffs", []) if isinstance(t, Mapping)}
    tariffs = [row for row in snap.tariffs if row.tariff_id not in stated]
    tariffs += [TariffRow(tariff_id, str(t.get("currency") or currency),
                          list(t.get("versions", []))) for tariff_id, t in stated.items()]
    tariffs.sort(key=lambda t: t.tariff_id)
    catalog = _catalog(tariffs)
    billing = billing_from_dict(document)
    products = dict(snap.products)
    products.update({p.product_id: p for p in billing.products})
    replaced = {(r.jurisdiction, r.tax_class) for r in billing.tax_rates}
    tax_rates = tuple(sorted(
        [r for r in snap.tax_rates if (r.jurisdiction, r.tax_class) not in replaced]
        + list(billing.tax_rates), key=lambda r: (r.jurisdiction, r.tax_class, r.valid_from)))
    discounts = {code: (code, d, snap.discount_accounts[d.discount_id])
                 for code, d in snap.discounts}
    next_id = max((d.discount_id for _, d in snap.discounts), default=0) + 1
    for spec in billing.discounts:
        known = discounts.get(spec.code)
        discount_id = known[1].discount_id if known else next_id
        next_id += 0 if known else 1
        discounts[spec.code] = (spec.code, Discount(
            discount_id=discount_id, kind=spec.kind, scope=spec.scope, service=spec.service,
            percent=spec.percent, amount_micros=spec.amount_micros, currency=spec.currency,
            tiers=spec.tiers, description=spec.description, valid_from=spec.valid_from,
            valid_to=spec.valid_to), spec.account_id)
    return Scenario(
        catalog=catalog, tariffs=tariffs,
        subscriptions=_moves(snap, document.get("accounts", []), catalog, products),
        products=products, tax_rates=tax_rates,
        discounts=sorted(discounts.values(), key=lambda d: d[1].discount_id))


def _catalog(tariffs: list[TariffRow]) -> Catalog:
    currency = tariffs[0].currency if tariffs else "EUR"
    return catalog_from_definitions(
        currency, [{"id": t.tariff_id, "currency": t.currency, "versions": t.versions}
                   for t in tariffs], {})


def _moves(snap: Snapshot, accounts: Any, catalog: Catalog,
           products: Mapping[str, Product]) -> list[SubscriptionRow]:
    if not isinstance(accounts, list):
        raise CatalogError("accounts", "a list of accounts")
    known = {a.account_id for a in snap.accounts}
    moves: dict[str, tuple[str, str | None]] = {}
    for i, account in enumerate(accounts):
        path = f"accounts[{i}]"
        if not isinstance(account, Mapping) or not isinstance(account.get("id"), str):
            raise CatalogError(f"{path}.id", "an account names its id")
        tariff, product = account.get("tariff"), account.get("product")
        if account["id"] not in known or tariff is None:
            continue  # a new account has no usage to price; no tariff: nothing moves
        if tariff not in catalog.tariffs:
            raise CatalogError(f"{path}.tariff", f"no tariff {tariff} in the candidate or "
                               "the catalog in force")
        if product is not None and product not in products:
            raise CatalogError(f"{path}.product", f"no product {product} in the candidate "
                               "or the catalog in force")
        moves[account["id"]] = (str(tariff), None if product is None else str(product))
    latest = {s.account_id: (s.tariff_id, s.product) for s in snap.subscriptions}
    moves = {a: (t, p) for a, (t, p) in moves.items()
             if latest.get(a) != (t, p if p is not None else latest.get(a, ("", ""))[1])}
    out = []
    for sub in snap.subscriptions:
        move = moves.get(sub.account_id)
        if move is not None:
            sub = msgspec.structs.replace(sub, tariff_id=move[0],
                                          product=move[1] if move[1] is not None
                                          else sub.product)
        out.append(sub)
    return out
