"""The minimum charge: a call with usage costs at least this much."""

from __future__ import annotations

from billing_oss.server.catalog.rules.base import optional_amount_rule
from billing_oss.server.catalog.wire import DecimalText, Strict


class MinimumChargeFields(Strict):
    minimum_charge: DecimalText | None = None


RULE = optional_amount_rule("minimum_charge", order=20, fields=MinimumChargeFields,
                            columns=("r_has_min", "r_min"), combine=max)
