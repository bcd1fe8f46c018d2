"""The per-call pricing rules of a rate, one module each (``base`` says what one holds).

Every module of this package but ``base`` is a rule: it defines ``RULE``, and ``RULES``
below finds it. The catalog's rate type (``schema.RateDef``), its checks
(``validate``), the kernel's tables (``server.rating.compile``) and the reference rater
(``server.rating.reference``) read ``RULES`` and name no rule, so a new rule is its module
here plus its lines in ``native/rating.pyx`` (its ``RULE_COLUMNS``, their fields and its
arithmetic in ``Kernel._amount``); a rule the kernel has no columns for is refused when
tariffs are compiled, never rated by one rater and not the other.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import msgspec

from billing_oss.server.catalog.rules.base import PricingRule

Rule = PricingRule[Any, Any]


def _discover() -> tuple[Rule, ...]:
    found: list[Rule] = []
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            rule = importlib.import_module(f"{__name__}.{module.name}").RULE
            if not isinstance(rule, PricingRule):
                raise TypeError(f"{__name__}.{module.name}.RULE is not a PricingRule")
            found.append(rule)
    ordered = tuple(sorted(found, key=lambda r: r.order))
    _refuse_clashes(ordered)
    return ordered


def _refuse_clashes(rules: tuple[Rule, ...]) -> None:
    for what, values in (
        ("order", [str(r.order) for r in rules]),
        ("name", [r.name for r in rules]),
        ("column", [c for r in rules for c in r.columns]),
        ("field", [f.encode_name for r in rules for f in msgspec.structs.fields(r.fields)]),
    ):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise TypeError(f"pricing rules share a {what}: {repeated}")
    for rule in rules:
        for field in msgspec.structs.fields(rule.fields):
            if field.required:
                raise TypeError(f"pricing rule {rule.name}: {field.name} needs a default")


RULES = _discover()


def rate_fields() -> list[tuple[str, Any, Any]]:
    """Every rule's catalog fields in rule order, as ``msgspec.defstruct`` takes them."""
    out: list[tuple[str, Any, Any]] = []
    for rule in RULES:
        for field in msgspec.structs.fields(rule.fields):
            rename = field.encode_name if field.encode_name != field.name else None
            if field.default_factory is not msgspec.NODEFAULT:
                spec = msgspec.field(name=rename, default_factory=field.default_factory)
            else:
                spec = msgspec.field(name=rename, default=field.default)
            out.append((field.name, field.type, spec))
    return out


__all__ = ["RULES", "PricingRule", "Rule", "rate_fields"]
