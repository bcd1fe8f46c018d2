"""Catalog loading and validation: every error names the offending path."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from billing_oss.core.errors import CatalogError
from billing_oss.server.catalog import (
    catalog_from_definitions,
    catalog_from_dict,
    load_catalog,
    version_from_definition,
)
from tests.unit.test_rating import BASE

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo-catalog.json"
V0 = "tariffs[0].versions[0]"


def broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def version(data: dict[str, Any], index: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = data["tariffs"][0]["versions"][index]
    return found


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    (
        "unknown key",
        lambda d: version(d)["rates"][0]["steps"][1].update(size=1),
        f"{V0}.rates[0].steps[1].size",
        "unknown key",
    ),
    (
        "wrong type",
        lambda d: version(d)["rates"][0]["steps"][1].update(increment="1"),
        f"{V0}.rates[0].steps[1].increment",
        "Expected `int`",
    ),
    (
        "float money",
        lambda d: version(d)["rates"][0].update(connect_fee=0.1),
        f"{V0}.rates[0].connect_fee",
        "Expected `str`",
    ),
    (
        "zero increment",
        lambda d: version(d)["rates"][0]["steps"][1].update(increment=0),
        f"{V0}.rates[0].steps[1].increment",
        "between 1",
    ),
    (
        "overlapping steps",
        lambda d: version(d)["rates"][0]["steps"][1].update({"from": 0}),
        f"{V0}.rates[0].steps[1].from",
        "overlap",
    ),
    (
        "gap before first step",
        lambda d: version(d)["rates"][0]["steps"][0].update({"from": 5}),
        f"{V0}.rates[0].steps[0].from",
        "gap",
    ),
    (
        "undefined band",
        lambda d: version(d)["rates"][0].update(band="weekend"),
        f"{V0}.rates[0].band",
        "not defined",
    ),
    (
        "undefined zone",
        lambda d: version(d)["rates"][0].update(zone="mars"),
        f"{V0}.rates[0].zone",
        "not defined",
    ),
    (
        "prefix twice across zones",
        lambda d: version(d)["zones"]["de"].append("3361"),
        f"{V0}.zones.de[1]",
        "listed twice",
    ),
    (
        "prefix twice in a zone",
        lambda d: version(d)["zones"]["de"].append("49"),
        f"{V0}.zones.de[1]",
        "listed twice",
    ),
    (
        "non-digit prefix",
        lambda d: version(d)["zones"]["de"].append("+49"),
        f"{V0}.zones.de[1]",
        "digits",
    ),
    (
        "negative price",
        lambda d: version(d)["rates"][0]["steps"][1].update(price="-0.1"),
        f"{V0}.rates[0].steps[1].price",
        "negative",
    ),
    (
        "not a decimal",
        lambda d: version(d)["rates"][0].update(minimum_charge="1e3"),
        f"{V0}.rates[0].minimum_charge",
        "decimal",
    ),
    (
        "duplicate rate",
        lambda d: version(d)["rates"].append(copy.deepcopy(version(d)["rates"][0])),
        f"{V0}.rates[5]",
        "same kind",
    ),
    (
        "bad time zone",
        lambda d: version(d).update(timezone="Europe/Atlantis"),
        f"{V0}.timezone",
        "time zone",
    ),
    (
        "bad band time",
        lambda d: version(d)["time_bands"][0].update(to="25:00"),
        f"{V0}.time_bands[0].to",
        "time of day",
    ),
    (
        "bad day",
        lambda d: version(d)["time_bands"][0]["days"].append("xyz"),
        f"{V0}.time_bands[0].days[5]",
        "one of",
    ),
    (
        "two defaults",
        lambda d: version(d)["time_bands"].append({"name": "x", "default": True}),
        f"{V0}.time_bands[3].default",
        "already the default",
    ),
    (
        "rounding decimals",
        lambda d: version(d)["rates"][0]["rounding"].update(decimals=7),
        f"{V0}.rates[0].rounding.decimals",
        "between 0 and 6",
    ),
    (
        "rounding method",
        lambda d: version(d)["rates"][0]["rounding"].update(method="bankers"),
        f"{V0}.rates[0].rounding.method",
        "Invalid enum value",
    ),
    (
        "same effective_from",
        lambda d: version(d, 1).update(effective_from="2026-01-01T01:00+01:00"),
        "tariffs[0].versions[1].effective_from",
        "another version",
    ),
    (
        "no offset",
        lambda d: version(d).update(effective_from="2026-01-01T00:00:00"),
        f"{V0}.effective_from",
        "offset",
    ),
    (
        "unknown tariff",
        lambda d: d["accounts"][0].update(tariff="gold"),
        "accounts[0].tariff",
        "not defined",
    ),
    (
        "identifier twice",
        lambda d: d["accounts"].append(
            {"id": "A2", "identifiers": ["33611111111"], "tariff": "retail"}
        ),
        "accounts[1].identifiers[0]",
        "already belongs",
    ),
    (
        "missing steps",
        lambda d: version(d)["rates"][0].pop("steps"),
        f"{V0}.rates[0]",
        "missing required field `steps`",
    ),
    (
        "denominator too fine",
        lambda d: version(d)["rates"][0]["steps"][0].update(price="0.000000000001", unit=2**62 - 1),
        f"{V0}.rates[0].steps",
        "too fine",
    ),
]


@pytest.mark.parametrize(
    ("change", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_catalog_names_the_path(
    change: Callable[[dict[str, Any]], None], path: str, message: str
) -> None:
    with pytest.raises(CatalogError) as caught:
        catalog_from_dict(broken(change))
    assert caught.value.path == path
    assert message in caught.value.message


def test_versions_sorted_and_identified() -> None:
    catalog = catalog_from_dict(BASE)
    versions = catalog.tariffs["retail"].versions
    assert [v.identity for v in versions] == [
        "retail@2026-01-01T00:00:00Z",
        "retail@2026-06-30T22:00:00Z",
    ]


def test_json_and_toml_files_load_the_same(tmp_path: Path) -> None:
    from_json = load_catalog(DEMO)
    toml_path = tmp_path / "demo.toml"
    toml_path.write_text(_to_toml(json.loads(DEMO.read_text())))
    assert load_catalog(toml_path) == from_json


def test_file_errors_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(broken(lambda d: version(d)["rates"][0].update(kind="fax"))))
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert caught.value.path == f"{V0}.rates[0].kind"
    with pytest.raises(CatalogError, match="not valid JSON"):
        path.write_text("{")
        load_catalog(path)


def test_catalog_from_stored_definitions() -> None:
    tariffs = [{"id": "retail", "versions": BASE["tariffs"][0]["versions"]}]
    catalog = catalog_from_definitions("EUR", tariffs, {"3361": ("A9", "retail")})
    assert catalog.identifiers["3361"].id == "A9"
    assert catalog == catalog_from_definitions("EUR", tariffs, {"3361": ("A9", "retail")})
    with pytest.raises(CatalogError, match="not defined"):
        catalog_from_definitions("EUR", tariffs, {"3361": ("A9", "gold")})
    one = version_from_definition("retail", BASE["tariffs"][0]["versions"][1])
    assert one.identity == "retail@2026-06-30T22:00:00Z"


def test_million_prefixes_load_quickly(tmp_path: Path) -> None:
    import time

    from billing_oss.server.rating import NativeRater

    zones = {f"z{n}": [str(10**6 + n * 1000 + k) for k in range(1000)] for n in range(1000)}
    data = copy.deepcopy(BASE)
    version(data).update(
        zones=zones,
        rates=[
            {
                "kind": "data",
                "zone": "*",
                "band": "*",
                "steps": [{"from": 0, "price": "1", "unit": 1, "increment": 1}],
            }
        ],
    )
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data))
    began = time.perf_counter()
    rater = NativeRater(load_catalog(path))
    assert time.perf_counter() - began < 6  # the target is 3 s; leave room for a busy CI
    assert rater.compiled.lpms[0].lookup(b"1999999123") == 999


def _to_toml(value: dict[str, Any]) -> str:
    """Just enough TOML for the demo catalog: inline tables, no nulls."""

    def render(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, (int, str)):
            return json.dumps(item)
        if isinstance(item, list):
            return "[" + ", ".join(render(x) for x in item) + "]"
        return (
            "{"
            + ", ".join(f"{json.dumps(k)} = {render(v)}" for k, v in item.items() if v is not None)
            + "}"
        )

    return "\n".join(f"{key} = {render(item)}" for key, item in value.items()) + "\n"
