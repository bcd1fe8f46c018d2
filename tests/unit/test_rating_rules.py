"""The per-call pricing rules live in one place (``server.catalog.rules``): the catalog's
rate type, its checks, the kernel's tables and the reference rater read the registry and
name no rule, so a new rule is its module plus its lines in the kernel."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec

from billing_oss.native import rating as native_rating
from billing_oss.server.catalog.rules import RULES

ROOT = Path(__file__).resolve().parents[2]
# What iterates the registry instead of naming a rule.
READERS = ("server/catalog/schema.py", "server/catalog/model.py", "server/catalog/validate.py",
           "server/rating/compile.py", "server/rating/reference.py")


def _rule_words() -> set[str]:
    words: set[str] = set()
    for rule in RULES:
        words.add(rule.name)
        words.update(rule.columns)
        for field in msgspec.structs.fields(rule.fields):
            words.update((field.name, field.encode_name))
    return words


def _code_words(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Every identifier and string of the code; docstrings (prose) left out."""
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Name):
            yield line, node.id
        elif isinstance(node, ast.Attribute):
            yield line, node.attr
        elif isinstance(node, ast.arg | ast.keyword) and node.arg:
            yield line, node.arg
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            yield line, node.name
        elif isinstance(node, ast.alias):
            yield line, node.asname or node.name.split(".")[-1]
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings):
            yield from ((line, word) for word in _identifiers(node.value))


def _identifiers(text: str) -> list[str]:
    return [w for w in "".join(c if c.isalnum() or c == "_" else " " for c in text).split()]


def rules_named(path: str) -> list[str]:
    words = _rule_words()
    tree = ast.parse((ROOT / path).read_text(), path)
    return sorted({f"{path}:{line} {word}" for line, word in _code_words(tree) if word in words})


def test_the_readers_of_the_registry_name_no_rule() -> None:
    found = [hit for path in READERS for hit in rules_named(path)]
    assert found == []


def test_the_scan_sees_a_rule_named_in_code() -> None:
    tree = ast.parse('"""rounding in prose"""\nx = rate.rules["rounding"] + entry.connect_fee\n')
    words = {word for _, word in _code_words(tree)} & _rule_words()
    assert words == {"rounding", "connect_fee"}


def test_the_kernel_reads_the_columns_the_rules_fill() -> None:
    filled = [column for rule in RULES for column in rule.columns]
    assert sorted(filled) == sorted(native_rating.RULE_COLUMNS)


TOY_RULE = '''
"""A per-call surcharge, added after the maximum and before the rounding."""

from fractions import Fraction

from billing_oss.server.catalog.rules.base import PricingRule, flagged, optional_fee, present
from billing_oss.server.catalog.wire import DecimalText, Strict


class SurchargeFields(Strict):
    surcharge: DecimalText | None = None


def check(fields: SurchargeFields, path: str) -> Fraction | None:
    return optional_fee(fields.surcharge, f"{path}.surcharge")


def apply(surcharge: Fraction | None, total: Fraction, usage: int) -> Fraction:
    return total if surcharge is None else total + surcharge


RULE = PricingRule(
    name="surcharge", order=35, fields=SurchargeFields, check=check,
    columns=("r_has_surcharge", "r_surcharge"), compile=flagged, apply=apply, money=present,
)
'''

# Run in a fresh interpreter whose rules package also holds the toy module, as if it had
# been added to server/catalog/rules/ (the registry is read once, at import).
TOY_RUN = '''
import importlib.abc, importlib.machinery, json, sys

class WithToyRule(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "billing_oss.server.catalog.rules":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.submodule_search_locations.append(sys.argv[1])
        return spec

sys.meta_path.insert(0, WithToyRule())

import msgspec
from billing_oss.core.errors import CatalogError
from billing_oss.core.records import UsageRecord
from billing_oss.server.catalog import catalog_from_dict, version_from_definition
from billing_oss.server.catalog.rules import RULES
from billing_oss.server.catalog.schema import RateDef
from billing_oss.server.rating import NativeRater, ReferenceRater

def catalog(**rule_fields):
    rate = {"kind": "voice", "zone": "*", "band": "*", "connect_fee": "0.10",
            "steps": [{"from": 0, "price": "0.60", "unit": 60, "increment": 1}],
            "maximum_charge": "1.00", "rounding": {"decimals": 1, "method": "up"},
            **rule_fields}
    version = {"effective_from": "2026-01-01T00:00:00Z", "timezone": "UTC",
               "zones": {"de": ["49"]}, "rates": [rate]}
    return {"tariffs": [{"id": "t", "versions": [version]}],
            "accounts": [{"id": "A", "identifiers": ["331"], "tariff": "t"}]}

def micros(seconds, **rule_fields):
    record = UsageRecord(record_key="k", source="s", kind="voice", duration_s=seconds,
                         event_time="2026-02-01T00:00:00Z", calling="331", called="491")
    [charge] = ReferenceRater(catalog_from_dict(catalog(**rule_fields))).rate([record])
    return charge.amount_micros

def refusal(check, *args):
    try:
        check(*args)
    except (CatalogError, RuntimeError) as exc:
        return str(exc)
    return None

bad = catalog(surcharge="-0.25")
out = {
    "rules": [rule.name for rule in RULES],
    "fields": list(msgspec.json.schema(RateDef)["$defs"]["RateDef"]["properties"]),
    "without": micros(10, surcharge=None),
    "short": micros(10, surcharge="0.25"),
    "capped": micros(600, surcharge="0.25"),
    "file": refusal(catalog_from_dict, bad),
    "api": refusal(version_from_definition, "t", bad["tariffs"][0]["versions"][0]),
    "native": refusal(NativeRater, catalog_from_dict(catalog(surcharge="0.25"))),
}
print(json.dumps(out))
'''


def test_a_rule_module_is_all_the_catalog_and_the_reference_need(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "surcharge.py").write_text(TOY_RULE)
    (tmp_path / "run.py").write_text(TOY_RUN)
    done = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "rules")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["rules"] == ["connect_fee", "minimum_charge", "maximum_charge", "surcharge",
                            "rounding"]
    assert out["fields"][-2:] == ["surcharge", "rounding"]  # the rate's wire shape has it
    # 0.10 + 10 s at 0.60/min = 0.20; + 0.25 = 0.45 -> 0.5 (1 decimal, up)
    assert (out["without"], out["short"]) == (200_000, 500_000)
    # 0.10 + 6.00 is capped at 1.00 before the surcharge is added: 1.25 -> 1.3
    assert out["capped"] == 1_300_000
    path = "tariffs[0].versions[0].rates[0].surcharge"
    assert out["file"] == f"{path}: must not be negative: -0.25"
    assert out["api"] == "$.rates[0].surcharge: must not be negative: -0.25"
    # Without its kernel lines the rule is refused, never rated by one rater only.
    assert out["native"].startswith(
        "the pricing rules and the rating kernel disagree: the kernel reads no column "
        "['r_has_surcharge', 'r_surcharge'], no rule fills []")
