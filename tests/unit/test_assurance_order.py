"""The engine starts the controls that took longest last time first, so that two lanes
finish together instead of one running a long control alone at the end."""

from __future__ import annotations

from billing_oss.server.assurance.controls import ALL
from billing_oss.server.assurance.engine import longest_first


def test_longest_first_by_the_last_run_and_never_run_ones_ahead() -> None:
    a, b, c, d = ALL[:4]
    last = {a.name: 10, b.name: 90_000, c.name: 500}
    assert [x.name for x in longest_first([a, b, c, d], last)] == [d.name, b.name, c.name,
                                                                   a.name]


def test_without_history_the_order_is_kept() -> None:
    assert longest_first(ALL, {}) == list(ALL)
