"""`catalog load` with billing sections against a real PostgreSQL: products, tax rates and
discounts stored with the rest of the catalog in one transaction, read back as loaded; the
same file again changes nothing; a changed file replaces by key; conflicts with what is
stored name the file's path; the CLI as an operator runs it."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from billing_oss.core.errors import CatalogError
from billing_oss.server.composition import read_catalog_file, validate_catalog
from billing_oss.server.store import (
    audit,
    catalog_repo,
    discounts_repo,
    products_repo,
    tax_rates_repo,
)
from billing_oss.server.store.discounts_repo import DiscountFilter
from billing_oss.server.store.tax_rates_repo import RateFilter
from tests.conftest import REPO

DEMO = read_catalog_file(REPO / "config/demo-catalog.json")
CLI = [sys.executable, "-m", "billing_oss"]


async def audit_rows(pool: asyncpg.Pool) -> int:
    rows: int = await pool.fetchval("SELECT count(*) FROM audit_log")
    return rows


async def test_demo_round_trip_then_reload_changes_nothing(pool: asyncpg.Pool) -> None:
    checked = validate_catalog(copy.deepcopy(DEMO)).billing
    first = await catalog_repo.load_catalog(pool, DEMO, billing=checked, actor="test")
    assert (first.products_changed, first.tax_rates_changed, first.discounts_changed) == (
        len(DEMO["products"]), len(DEMO["tax_rates"]), len(DEMO["discounts"]))
    for product in checked.products:
        assert await products_repo.get(pool, product.product_id) == product
    stored_rates = await tax_rates_repo.find(pool, RateFilter(limit=100))
    assert sorted(stored_rates, key=str) == sorted(checked.tax_rates, key=str)
    stored = await discounts_repo.find(pool, DiscountFilter())
    assert [d.spec for d in stored] == list(checked.discounts)
    b1 = await pool.fetchrow("SELECT a.attrs::text, s.product, s.tariff_id FROM accounts a "
                             "JOIN subscriptions s USING (account_id) WHERE account_id = 'B1'")
    assert json.loads(b1["attrs"])["vat_id"] == "DE123456789"
    assert (b1["product"], b1["tariff_id"]) == ("business-pro", "business")
    assert [e.action for e in await audit.entries(pool, "product:iot-connect")] == [
        "product.put"]

    before = await audit_rows(pool)
    again = await catalog_repo.load_catalog(pool, DEMO, actor="test")  # billing checked inside
    assert not again.changed and again.tariffs == len(DEMO["tariffs"])
    assert await audit_rows(pool) == before + 1  # the load itself, no change of any entity
    assert await discounts_repo.find(pool, DiscountFilter()) == stored


def small(fee: str = "10.00", rate: str = "21", percent: str = "5") -> dict[str, Any]:
    return {"currency": "EUR", "tariffs": [],
            "products": [{"id": "nl-plan", "recurring_fee": fee}],
            "tax_rates": [{"jurisdiction": "NL", "rate": rate, "valid_from": "2012-10-01"}],
            "discounts": [{"code": "NL-5", "kind": "percentage", "percent": percent}]}


async def test_a_changed_file_replaces_by_key(pool: asyncpg.Pool) -> None:
    await catalog_repo.load_catalog(pool, small(), actor="test")
    [nl5] = await discounts_repo.find(pool, DiscountFilter(code="NL-5"))
    changed = await catalog_repo.load_catalog(pool, small("12.50", "21.5", "7.5"),
                                              actor="test")
    assert (changed.products_changed, changed.tax_rates_changed,
            changed.discounts_changed) == (1, 1, 1)
    assert (await products_repo.get(pool, "nl-plan")).recurring_fee_micros == 12_500_000
    [nl] = await tax_rates_repo.find(pool, RateFilter(jurisdiction="NL"))
    assert nl.rate == Decimal("21.5")
    [again] = await discounts_repo.find(pool, DiscountFilter(code="NL-5"))
    assert again.discount_id == nl5.discount_id and again.spec.percent == Decimal("7.5")
    [put] = [e for e in await audit.entries(pool, "product:nl-plan")][1:]
    assert (put.before["recurring_fee_micros"], put.after["recurring_fee_micros"]) == (
        10_000_000, 12_500_000)


async def test_conflicts_with_stored_rows_name_the_path_and_store_nothing(
        pool: asyncpg.Pool) -> None:
    await catalog_repo.load_catalog(pool, small())
    overlapping = small()
    overlapping["products"][0]["recurring_fee"] = "99"
    overlapping["tax_rates"].append({"jurisdiction": "NL", "rate": "9", "valid_from":
                                     "2019-01-01"})
    with pytest.raises(CatalogError) as caught:
        await catalog_repo.load_catalog(pool, overlapping)
    assert caught.value.path == "tax_rates[1].valid_from"
    assert "NL/standard 21" in caught.value.message
    stranger = small()
    stranger["discounts"][0]["account_id"] = "NOBODY"
    with pytest.raises(CatalogError) as caught:
        await catalog_repo.load_catalog(pool, stranger)
    assert caught.value.path == "discounts[0].account_id"
    assert (await products_repo.get(pool, "nl-plan")).recurring_fee_micros != 99_000_000


def cli(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "--database-url", database_url], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "false"})


TOML = """currency = "EUR"

[[accounts]]
id = "T1"
name = "Toml Customer"
identifiers = ["33699999999"]
tariff = "toml-tariff"
product = "toml-plan"
attrs = { country = "FR" }

[[tariffs]]
id = "toml-tariff"

[[tariffs.versions]]
effective_from = "2026-01-01T00:00:00Z"
timezone = "UTC"

[[tariffs.versions.rates]]
kind = "voice"
zone = "*"
band = "*"
steps = [{ from = 0, price = "0.01", unit = 1, increment = 1 }]

[[products]]
id = "toml-plan"
recurring_fee = "RECURRING_FEE"

[[tax_rates]]
jurisdiction = "BE"
rate = "21"
valid_from = 1996-01-01
"""


def test_cli_loads_a_toml_catalog_and_books_adjustments(database_url: str,
                                                        tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(TOML.replace("RECURRING_FEE", "7.50"))
    out = cli(["catalog", "load", str(path), "--json"], database_url)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) | {"tariffs": 1} == {
        "tariffs": 1, "versions_added": 1, "accounts_added": 1, "products_changed": 1,
        "tax_rates_changed": 1, "discounts_changed": 0}
    out = cli(["catalog", "load", str(path)], database_url)
    assert out.returncode == 0 and "0 products, 0 tax rates, 0 discounts" in out.stdout

    path.write_text(TOML.replace("RECURRING_FEE", "7.5.0"))
    out = cli(["catalog", "load", str(path)], database_url)
    assert out.returncode == 1 and "products[0].recurring_fee" in out.stderr, out.stderr

    add = ["adjustment", "add", "--account", "T1", "--description", "Goodwill credit",
           "--reference", "ticket-42"]
    out = cli([*add, "--amount", "-5.00", "--json"], database_url)
    assert out.returncode == 0, out.stderr
    booked = json.loads(out.stdout)
    assert booked["amount"] == {"amount": "-5.000000", "currency": "EUR"} and booked["created"]
    out = cli([*add, "--amount", "-5.00"], database_url)  # retried: nothing new
    assert out.returncode == 0 and out.stdout.startswith("already booked"), out.stdout
    out = cli([*add, "--amount", "-5.001", "--reference", "ticket-43"], database_url)
    assert out.returncode == 1 and "$.amount" in out.stderr and "2 decimals" in out.stderr
    out = cli([*add, "--amount", "ten"], database_url)
    assert out.returncode == 1 and "--amount" in out.stderr
    out = cli(["adjustment", "list", "--account", "T1", "--json"], database_url)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["reference"], r["invoice_id"]) for r in rows] == [("ticket-42", None)]
