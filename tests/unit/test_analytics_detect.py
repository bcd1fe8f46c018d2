"""The detectors' arithmetic against plain-Python twins (hypothesis), and the forecasts'
shapes and interval order."""

from __future__ import annotations

import math
import statistics

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from billing_oss.server.analytics import detect, forecast

values = st.one_of(st.none(), st.integers(0, 50).map(float))


def reference(x: list[list[float | None]], season: int, weeks: int) -> list[list[tuple[
        float, float, int] | None]]:
    """Median and MAD of the known values at t − k·season, k = 1..weeks, in Python."""
    out = []
    for row in x:
        line: list[tuple[float, float, int] | None] = []
        for t in range(len(row)):
            seen = [v for k in range(1, weeks + 1) if t - k * season >= 0
                    and (v := row[t - k * season]) is not None]
            if not seen:
                line.append(None)
                continue
            m = statistics.median(seen)
            line.append((m, statistics.median(abs(v - m) for v in seen), len(seen)))
        out.append(line)
    return out


@given(st.lists(st.lists(values, min_size=30, max_size=30), min_size=1, max_size=5),
       st.integers(1, 8), st.integers(1, 7), st.integers(1, 3))
def test_seasonal_baseline_matches_python(rows: list[list[float | None]], season: int,
                                          weeks: int, chunk: int) -> None:
    x = np.array([[math.nan if v is None else v for v in row] for row in rows])
    base = detect.seasonal_baseline(x, season, weeks, chunk=chunk)
    for i, line in enumerate(reference(rows, season, weeks)):
        for t, want in enumerate(line):
            if want is None:
                assert math.isnan(base.median[i, t]) and base.known[i, t] == 0
            else:
                assert (base.median[i, t], base.mad[i, t], base.known[i, t]) == want


def test_scores_flag_spikes_and_silence_not_noise() -> None:
    rng = np.random.default_rng(3)
    x = rng.poisson(30, size=(3, 70)).astype(float)
    x[1, 63] = 300  # ten times the usual
    x[2, 63] = 0  # a broken feed
    scores, _ = detect.robust_scores(x, 7, 6, log=True)
    assert scores[1, 63] > 8 and scores[2, 63] < -8
    assert np.nanmax(np.abs(scores[0])) < 4
    assert np.isnan(scores[0, :21]).all()  # fewer than three weeks known


def test_ets_forecast_has_ordered_intervals() -> None:
    t = np.arange(120)
    y = 100 + 0.5 * t + 10 * np.sin(2 * np.pi * t / 7) + np.random.default_rng(1).normal(0, 2, 120)
    fc = forecast.ets(y, 14)
    assert fc.mean.shape == (14,)
    low80, high80 = fc.intervals[0.8]
    low95, high95 = fc.intervals[0.95]
    assert (low95 <= low80).all() and (low80 <= fc.mean).all() and (fc.mean <= high80).all()
    assert (high80 <= high95).all()
    assert abs(fc.mean[0] - (100 + 0.5 * 120)) < 15
    assert forecast.seasonal_naive(y, 9).tolist() == [*y[-7:], *y[-7:-5]]
    assert np.allclose(forecast.linear_trend(np.arange(60.0), 3), [60, 61, 62])


def test_a_steady_amount_moving_a_cent_is_no_anomaly() -> None:
    """Money in micro-units has no Poisson floor: a perfectly steady history (MAD 0) would
    turn 3.00 → 3.01 EUR into a huge score without the minimum scale."""
    x = np.full((1, 50), 3_000_000.0)
    x[0, 49] = 3_010_000.0
    loose, _ = detect.robust_scores(x, 7, 6, log=True)
    steady, _ = detect.robust_scores(x, 7, 6, log=True, min_scale=0.1)
    assert loose[0, 49] > 1 and abs(steady[0, 49]) < 0.1


def test_count_scores_keep_small_counts_noise_quiet_and_find_a_silence() -> None:
    """Eight calls a day of pure Poisson noise: a MAD z-score on log counts calls a day of
    2 calls five sigmas (about one false alarm per 1,000 days); the negative-binomial tail
    knows it happens. A two-day silence of 30 calls a day is still found."""
    rng = np.random.default_rng(5)
    x = rng.poisson(8, size=(2000, 70)).astype(float)
    x[0] = rng.poisson(30, size=70)
    x[0, 62:64] = 0.0  # a broken feed on a busier account
    counts, _ = detect.count_scores(x, 7, 6)
    robust, _ = detect.robust_scores(x, 7, 6, log=True, min_scale=0.1)
    assert counts[0, 63] <= -detect.THRESHOLD
    noise_counts = int((np.abs(counts[1:, 42:]) >= detect.THRESHOLD).sum())
    noise_robust = int((np.abs(robust[1:, 42:]) >= 5.0).sum())
    assert noise_counts <= 10 < 20 <= noise_robust, (noise_counts, noise_robust)
    assert np.isnan(counts[:, :21]).all()  # fewer than three weeks known


def test_count_scores_leave_a_quiet_series_one_call_alone() -> None:
    x = np.zeros((1, 60))
    x[0, 59] = 1.0
    scores, _ = detect.count_scores(x, 7, 6)
    assert 0 <= scores[0, 59] < detect.THRESHOLD


def test_count_scores_find_a_small_accounts_two_day_drop_and_leave_stable_ones() -> None:
    """400 accounts of 12 calls a day falling to a fifth for two days (24 calls expected,
    about 5 made): the two days' sum against the same weekdays' trimmed mean finds more
    than two in five of them by the second day (a median of six same weekdays found one in
    five), while 2,000 stable accounts raise at most a few flags in three weeks."""
    rng = np.random.default_rng(23)
    x = rng.poisson(12, size=(2400, 63)).astype(float)
    x[:400, 61:63] = rng.poisson(12 * 0.2, size=(400, 2))
    scores, _ = detect.count_scores(x, 7, 6)
    found = (scores[:400, 61:63] <= -detect.THRESHOLD).any(axis=1).mean()
    false = int((np.abs(scores[400:, 42:]) >= detect.THRESHOLD).sum())
    assert found >= 0.45 and false <= 5, (found, false)


def test_count_scores_learn_a_level_shift_in_two_weeks() -> None:
    """Accounts of 40 calls a day falling to 35 % for good: found on the first two days,
    then, once two weeks at the new level agree, no longer flagged (the same weekdays'
    history alone keeps flagging the new level until most of its six weeks hold it)."""
    rng = np.random.default_rng(29)
    x = rng.poisson(40, size=(200, 120)).astype(float)
    x[:, 60:] = rng.poisson(40 * 0.35, size=(200, 60))
    flagged = np.abs(detect.count_scores(x, 7, 6)[0]) >= detect.THRESHOLD
    assert flagged[:, 60:62].any(axis=1).mean() >= 0.9
    assert int(flagged[:, 76:].sum()) <= 5, int(flagged[:, 76:].sum())


def test_count_scores_leave_a_small_change_of_a_busy_account_alone() -> None:
    """A thousand calls a day falling to 700 is improbable under Poisson noise (z ≈ −8)
    but is no anomaly an operator acts on: only twice or half the expected count scores."""
    rng = np.random.default_rng(31)
    x = rng.poisson(1000, size=(50, 60)).astype(float)
    x[:, 59] = rng.poisson(700, 50)
    x[:, 58] = rng.poisson(1000, 50)
    scores, _ = detect.count_scores(x, 7, 6)
    assert (np.abs(scores[:, 59]) < detect.THRESHOLD).all()
    x[:, 59] = rng.poisson(400, 50)
    scores, _ = detect.count_scores(x, 7, 6)
    assert (scores[:, 59] <= -detect.THRESHOLD).all()


def test_ets_intervals_cover_their_level_after_holidays_in_the_history() -> None:
    """Daily revenue with a few holidays (a day at 45 %) in its history: the fit's error
    variance takes them in, so intervals from the normal quantile covered the ordinary days
    after it 99.6 % and 100 % of the time; the fit's own error quantiles keep the width, and
    the backtest's median error moves the intervals up to where the growth the damped trend
    bends away from lands (centred on the mean, 68 % of these 1,344 days fell inside the 80 %
    one). 96 series: with 16 the coverage turned on the floating point of the fit on each
    CPU."""
    rng = np.random.default_rng(11)
    inside = {0.8: 0, 0.95: 0}
    points = 0
    t = np.arange(154)
    for _ in range(96):
        y = (200 + 0.2 * t) * (1 + 0.15 * np.sin(2 * np.pi * t / 7)) + rng.normal(0, 4, 154)
        y[rng.choice(140, 4, replace=False)] *= 0.45
        fc = forecast.ets(y[:140], 14)
        for level in inside:
            low, high = fc.intervals[level]
            inside[level] += int(np.sum((y[140:] >= low) & (y[140:] <= high)))
        points += 14
    assert abs(inside[0.8] / points - 0.8) <= 0.05, inside
    assert abs(inside[0.95] / points - 0.95) <= 0.05, inside


def test_weekday_expectation_borrows_the_populations_weekday_shape() -> None:
    """2,000 small accounts of two kinds (busy weekends, quiet weekends) at 3–20 calls a
    day: their level from all seven weekdays times a profile shrunk toward the shapes the
    population shares errs by much less than each weekday's own six-week mean."""
    rng = np.random.default_rng(11)
    weekend = np.array([1, 1, 1, 1, 1.1, 1.25, 1.15])
    office = np.array([1, 1, 1, 1, 0.95, 0.3, 0.2])
    shapes = np.where(rng.random(2000)[:, None] < 0.7, weekend, office)
    rate = rng.uniform(3, 20, size=(2000, 1)) * np.tile(shapes, 10)
    x = rng.poisson(rate).astype(float)
    shared, _ = detect.weekday_expectation(x, 7, 6)
    own, _ = detect._trimmed_seasonal_mean(x, 7, 6)
    later = (slice(None), slice(42, None))

    def error(e: np.ndarray) -> float:
        return float(np.mean((e[later] - rate[later]) ** 2 / rate[later]))

    assert error(shared) < 0.6 * error(own), (error(shared), error(own))
    # a population too small to have a shape of its own keeps each weekday's mean
    few, _ = detect.weekday_expectation(x[:5], 7, 6)
    assert np.allclose(few, own[:5], equal_nan=True)


def test_a_level_shift_with_a_holiday_in_its_two_weeks_is_followed() -> None:
    """Accounts whose usage more than doubles for good are flagged when it starts; two weeks
    on, the expectation follows the new level even when a holiday (unknown) sits in those
    two weeks: it used to read as a fall of a seventh in one of them, keep the old level and
    flag the new one as a spike every week."""
    rng = np.random.default_rng(7)
    rate = np.full((400, 98), 40.0)
    rate[:, 63:] *= 2.5
    x = rng.poisson(rate).astype(float)
    x[:, 70] = np.nan  # a holiday in the week after the shift
    scores, _ = detect.count_scores(x, 7, 6)
    assert (scores[:, 63:65] >= detect.THRESHOLD).any(axis=1).mean() > 0.95
    after = scores[:, 78:]
    assert int((np.abs(after) >= detect.THRESHOLD).sum()) <= 4, np.nanmax(np.abs(after))


def cusum_reference(llr: list[float], counts: list[float], expected: list[float],
                    threshold: float) -> list[tuple[float | None, bool, int, float, float]]:
    """The drop test's CUSUM day by day in Python: S = max(0, S + llr), an alarm at S ≥
    threshold and S back to 0 after it; NaN days leave S and the run alone."""
    out: list[tuple[float | None, bool, int, float, float]] = []
    s, days, seen, usual = 0.0, 0, 0.0, 0.0
    for v, x, mu in zip(llr, counts, expected, strict=True):
        if math.isnan(v):
            out.append((None, False, days, seen, usual))
            continue
        s = max(0.0, s + v)
        if s > 0:
            days, seen, usual = days + 1, seen + x, usual + mu
        else:
            days, seen, usual = 0, 0.0, 0.0
        fired = s >= threshold
        out.append((s, fired, days, seen, usual))
        if fired:
            s, days, seen, usual = 0.0, 0, 0.0, 0.0
    return out


@given(st.lists(st.one_of(st.none(), st.floats(-6, 6)), min_size=1, max_size=40),
       st.floats(0.5, 8))
def test_cusum_matches_python(steps: list[float | None], threshold: float) -> None:
    llr = np.array([[math.nan if v is None else v for v in steps]])
    counts = np.arange(len(steps), dtype=float)[None] + 1
    expected = 2 * counts + 0.5
    phi = np.full_like(counts, 0.01)
    run = detect.cusum(detect.DropEvidence(llr, counts, expected, phi), threshold)
    for t, (s, fired, days, seen, usual) in enumerate(
            cusum_reference(list(llr[0]), list(counts[0]), list(expected[0]), threshold)):
        if s is None:
            assert math.isnan(run.statistic[0, t])
        else:
            assert math.isclose(run.statistic[0, t], s, abs_tol=1e-9)
        assert (bool(run.alarm[0, t]), int(run.days[0, t])) == (fired, days)
        assert math.isclose(run.observed[0, t], seen) and math.isclose(run.expected[0, t],
                                                                          usual)


def test_drop_llr_is_the_negative_binomials_log_ratio() -> None:
    """The closed form against scipy's probabilities, and its sign: evidence for the drop
    where the count is well below the expected one, against it at and above it."""
    from scipy import stats

    x = np.array([0.0, 3, 10, 20, 40])
    mean, phi, depth = np.full(5, 20.0), np.full(5, 0.04), 0.25
    n = 1 / phi
    want = (stats.nbinom.logpmf(x, n, n / (n + depth * mean))
            - stats.nbinom.logpmf(x, n, n / (n + mean)))
    got = detect._nb_drop_llr(x, mean, phi, depth)
    assert np.allclose(got, want)
    assert got[0] > got[1] > 0 > got[3] > got[4]


def test_drop_test_finds_small_accounts_drops_and_stops_after_each_alarm() -> None:
    """1,000 accounts of 10 calls a day, 400 of them at a fifth for three days: the CUSUM
    finds more of those by their third day than the count score (one or two days at a time)
    at an equal or smaller number of alarms on the 600 stable ones over three weeks, and it
    alarms on days of the drop, not after it (an alarm starts the sum again from 0)."""
    rng = np.random.default_rng(41)
    x = rng.poisson(10, size=(1000, 70)).astype(float)
    x[:400, 60:63] = rng.poisson(2, size=(400, 3))
    run = detect.drop_cusum(x, 7, 6)
    scores, _ = detect.count_scores(x, 7, 6)
    by_cusum = run.alarm[:400, 60:63].any(axis=1).mean()
    by_score = (scores[:400, 60:63] <= -detect.THRESHOLD).any(axis=1).mean()
    false_cusum = int(run.alarm[400:, 42:].sum())
    false_score = int((np.abs(scores[400:, 42:]) >= detect.THRESHOLD).sum())
    assert by_cusum >= by_score + 0.1 and false_cusum <= max(false_score, 3), (
        by_cusum, by_score, false_cusum, false_score)
    assert int(run.alarm[:400, 63:].sum()) <= 3  # back to 10 a day: the sum started again
    alarmed = run.alarm[:400, 60:63]
    assert (run.run_scores()[:400, 60:63][alarmed] < -2).all()


def test_drop_test_leaves_spikes_and_small_falls_alone() -> None:
    """Counts above the expected and a fall to 70 % of a busy account are evidence against
    the drop (S stays at 0); a fall to a tenth alarms the same day."""
    rng = np.random.default_rng(43)
    x = rng.poisson(200, size=(30, 60)).astype(float)
    x[:10, 50:] = rng.poisson(1000, size=(10, 10))
    x[10:20, 50:] = rng.poisson(140, size=(10, 10))
    x[20:, 50] = rng.poisson(20, size=10)
    run = detect.drop_cusum(x, 7, 6)
    assert not run.alarm[:20].any()
    assert (run.statistic[:10, 50:] == 0).all()
    assert run.alarm[20:, 50].all() and (run.days[20:, 50] == 1).all()
    assert (run.observed[20:, 50] == x[20:, 50]).all()
