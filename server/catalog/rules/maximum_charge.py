"""The maximum charge: a call costs at most this much, however long it ran (the kernel
caps a total too large for 128 bits at it as well)."""

from __future__ import annotations

from billing_oss.server.catalog.rules.base import optional_amount_rule
from billing_oss.server.catalog.wire import DecimalText, Strict


class MaximumChargeFields(Strict):
    maximum_charge: DecimalText | None = None


RULE = optional_amount_rule("maximum_charge", order=30, fields=MaximumChargeFields,
                            columns=("r_has_max", "r_max"), combine=min)
