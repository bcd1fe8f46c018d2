"""A segment's forecast for a period: the Σ of its daily forecast, fitted from its first day
with revenue on (days before it existed are not zeros it earned)."""

from __future__ import annotations

from billing_oss.server.analytics import forecast
from billing_oss.server.analytics.reports import segment_forecast


def test_a_steady_weekly_pattern_is_forecast_close_to_itself() -> None:
    week = [10_000_000, 10_000_000, 10_000_000, 10_000_000, 10_000_000, 4_000_000, 2_000_000]
    found = segment_forecast(week * 8, 7)
    assert found is not None
    predicted, method = found
    assert abs(predicted - sum(week)) < sum(week) // 100
    assert method == forecast.METHOD


def test_days_before_the_first_revenue_are_left_out() -> None:
    short = [0] * 50 + [3_000_000] * 10  # ten days of history: too short for ETS
    found = segment_forecast(short, 4)
    assert found == (12_000_000, "seasonal naive (short history)")


def test_no_revenue_no_forecast() -> None:
    assert segment_forecast([0] * 56, 7) is None
    assert segment_forecast([], 7) is None
