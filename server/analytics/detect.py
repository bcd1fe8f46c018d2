"""Anomaly detectors over usage series (numpy; no database here).

The default is a **robust seasonal baseline**: the value at time t is compared with the
values at the same place of the season (same weekday for daily series, same weekday and
hour for hourly ones) over the last ``weeks`` weeks, by their median and MAD:

    score = (x − median) / max(1.4826 · MAD, sqrt(median + 1))

The second term is a Poisson-like floor: counts are noisy when small, and a MAD of 0 (a
quiet account) must not turn one extra call into an alarm. ``min_history`` earlier seasons
must be known (not NaN: holidays and days before the account existed are NaN) for a score.

Counts (records a day) are scored by ``count_scores``: the probability of a count at least
as far from its expected count under a negative binomial around it, as a normal quantile,
over one day and over two days summed (a two-day drop on a small account hides in either
day's Poisson noise, not in their sum). MAD z-scores treat a fall from 14 calls to 3 as five
sigmas on a log scale; the Poisson tail says it happens once in 2,000 days. The expected
count is the series' level (all seven weekdays' trimmed means over the last weeks) times
its weekday profile shrunk toward the shapes the population of series shares (a small
account's Saturday is known better from all accounts like it than from its own six
Saturdays), follows a level shift once two weeks confirm it, and only a change to twice or
half of it, or beyond, scores at all.

``drop_cusum`` is a sequential drop test on the same expectation: a CUSUM of each day's
likelihood ratio of a fall to ``DROP_DEPTH`` of the expected count, so a drop's evidence adds
up over the days it lasts instead of being judged one or two days at a time.

``naive_scores`` is the fixed-threshold rule operators start with (today against the mean
of the last four weeks, as a ratio); ``isolation_scores`` the scikit-learn alternative on
per-day features. ``perf/eval_analytics.py`` measures all three.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
MAD_SCALE = 1.4826  # MAD × this estimates σ for normal data
# The count score that flags, chosen once on a tuning operator (perf/eval_analytics.py,
# seed 8) as the best F1 within 1 false alarm per 1,000 account-days, and evaluated on
# another (seed 7).
THRESHOLD = 4.0
MIN_DISPERSION = 0.05  # a count's relative spread beyond Poisson is at least 5 %
WINDOWS = (1, 2)  # days summed by the count score
MATERIAL = 2.0  # a count flags only at twice or half its expected value, or beyond
REBASE_Z = 3.0  # |z| of the last two weeks' level that moves the expectation to it
# The sequential drop test (``drop_cusum``): the fall it looks for and its alarm (a
# log-likelihood ratio, nats), chosen on the tuning operator as THRESHOLD was (best F1 of
# precision against the mean recall of the patterns; depths 0.2–0.35 tried)
DROP_DEPTH = 0.25
DROP_THRESHOLD = 8.5
# The expectation's error variance × known weeks × mean (measured on the tuning operator:
# 0.07–0.11 × 6 under 100 a day for the level × shrunk profile, against 1.1–1.3 for one
# weekday's own mean)
ESTIMATE_ERROR = 0.5


class Baseline:
    """Median (for counts: the expected count), MAD and the resulting scale of each
    point's seasonal history."""

    def __init__(self, median: Array, mad: Array, known: NDArray[np.int_]) -> None:
        self.median, self.mad, self.known = median, mad, known

    @property
    def scale(self) -> Array:
        return np.maximum(MAD_SCALE * self.mad, np.sqrt(np.maximum(self.median, 0) + 1.0))


def seasonal_baseline(x: Array, season: int, weeks: int, chunk: int = 512) -> Baseline:
    """For each row of ``x`` (series × time) and each t: the median and MAD of
    x[t − season], x[t − 2·season], …, x[t − weeks·season] (NaN ignored). Rows are done
    ``chunk`` at a time to bound memory (chunk × time × weeks floats)."""
    n, length = x.shape
    median = np.full((n, length), np.nan)
    mad = np.full((n, length), np.nan)
    known = np.zeros((n, length), dtype=np.int_)
    for first in range(0, n, chunk):
        rows = x[first:first + chunk]
        planes = []  # one (rows × time) plane per lag, unknown = +inf (sorts last)
        for k in range(1, weeks + 1):
            plane = np.full(rows.shape, np.inf)
            shift = k * season
            if shift < length:
                plane[:, shift:] = rows[:, :length - shift]
            planes.append(np.where(np.isnan(plane), np.inf, plane))
        seen = np.sum([np.isfinite(p) for p in planes], axis=0)
        m = _median_of_known(planes, seen)
        median[first:first + chunk] = m
        mad[first:first + chunk] = _median_of_known([np.abs(p - m) for p in planes], seen)
        known[first:first + chunk] = seen
    return Baseline(median, mad, known)


def _median_of_known(planes: list[Array], seen: NDArray[np.int_]) -> Array:
    """Element-wise median of the finite values across ``planes`` (+inf: unknown), by an
    odd-even transposition sort of the planes: a few whole-array min/max passes, much
    faster than sorting millions of six-element rows. NaN where nothing is known."""
    ordered = list(planes)
    for round_ in range(len(ordered)):
        for i in range(round_ % 2, len(ordered) - 1, 2):
            low = np.minimum(ordered[i], ordered[i + 1])
            ordered[i + 1] = np.maximum(ordered[i], ordered[i + 1])
            ordered[i] = low
    stacked = np.stack(ordered)
    low_i = np.maximum(seen - 1, 0) // 2
    high_i = np.minimum(seen // 2, len(ordered) - 1)
    a = np.take_along_axis(stacked, low_i[None], axis=0)[0]
    b = np.take_along_axis(stacked, high_i[None], axis=0)[0]
    with np.errstate(invalid="ignore"):
        out = (a + b) / 2
    out[seen == 0] = np.nan
    return np.asarray(out, dtype=np.float64)


def robust_scores(x: Array, season: int, weeks: int, min_history: int = 3, *,
                  log: bool = False, min_scale: float = 0.0) -> tuple[Array, Baseline]:
    """Signed scores (positive: more than usual) and the baseline they came from; NaN where
    the history is too short or the value unknown.

    With ``log``, values are compared as log(1 + x): a fall to a fifth and a rise to five
    times score alike (a drop cannot exceed the baseline in counts, a spike can without
    bound), and the floor becomes the Poisson noise of a log count, 1 / sqrt(median + 1),
    or ``min_scale`` where larger (0.1: a 10 % change is one unit of score however steady the
    history; money in micro-units has no Poisson floor of its own)."""
    if not log:
        base = seasonal_baseline(x, season, weeks)
        with np.errstate(all="ignore"):
            scores = (x - base.median) / base.scale
        scores[base.known < min_history] = np.nan
        return scores, base
    logged = np.log1p(x)
    base = seasonal_baseline(logged, season, weeks)
    with np.errstate(all="ignore"):
        counts = np.expm1(base.median)
        scale = np.maximum(np.maximum(MAD_SCALE * base.mad, min_scale),
                           1.0 / np.sqrt(np.maximum(counts, 0) + 1.0))
        scores = (logged - base.median) / scale
    scores[base.known < min_history] = np.nan
    return scores, Baseline(counts, base.mad, base.known)


def count_scores(x: Array, season: int, weeks: int, min_history: int = 3, *,
                 min_dispersion: float = MIN_DISPERSION, windows: tuple[int, ...] = WINDOWS,
                 material: float = MATERIAL, expected: Expected | None = None
                 ) -> tuple[Array, Baseline]:
    """Signed scores of counts (positive: more than usual) as normal quantiles of the tail
    probability of each value under a negative binomial around its expected count, the
    largest in size over the ``windows`` (days summed, ending at t); NaN where the history
    is too short or a value in the window unknown; 0 where the window's sum is within
    ``material`` times its expected sum either way (likely or not, no one acts on it).

    The expected count is the series' level times its weekday profile
    (``weekday_expectation``): the level from all seven weekdays' trimmed means, the
    profile shrunk toward the shapes the population of series shares. When both of the
    last two weeks stood at one new level, improbably far from what the history expected
    (a level shift already flagged), the expectation moves to that level. Its variance is
    Poisson plus the expectation's own error (``ESTIMATE_ERROR`` / known weeks / mean, the
    error measured on the tuning operator) plus ``min_dispersion``² · mean²
    (``expected_counts``; ``expected`` where the caller has it already)."""
    if expected is None:
        expected = expected_counts(x, season, weeks, min_history,
                                   min_dispersion=min_dispersion, material=material)
    mean, phi, unknown, known = expected
    best = np.full(x.shape, np.nan)
    for w in windows:
        if w > x.shape[1]:
            continue
        summed, mu = _window_sum(x, w), _window_sum(mean, w)
        bad = _window_sum(unknown.astype(np.float64), w)
        ph = _window_max(phi, w)
        with np.errstate(all="ignore"):
            z = _nb_z(summed, mu, ph)
            ratio = (summed + 1) / (mu + 1)
        z[(ratio < material) & (ratio > 1 / material)] = 0.0
        z[bad > 0] = np.nan
        z = np.concatenate([np.full((x.shape[0], w - 1), np.nan), z], axis=1)
        take = np.isnan(best) | (np.abs(z) > np.abs(best))
        best = np.where(take & ~np.isnan(z), z, best)
    log_mad = seasonal_baseline(np.log1p(x), season, weeks).mad
    return best, Baseline(mean, log_mad, known)


class DropRun:
    """The sequential drop test's state after each day (series × time): the CUSUM
    statistic (NaN where the day cannot be scored; its value before an alarm resets it),
    whether it alarmed, and the run it sums: days since it last stood at 0 (unknown days
    bridged, not counted), their observed and expected counts and the largest φ among
    them."""

    def __init__(self, statistic: Array, alarm: NDArray[np.bool_], days: NDArray[np.int_],
                 observed: Array, expected: Array, phi: Array) -> None:
        self.statistic, self.alarm, self.days = statistic, alarm, days
        self.observed, self.expected, self.phi = observed, expected, phi

    def run_scores(self) -> Array:
        """Each run's observed sum against its expected sum as ``count_scores`` scores a
        window (signed normal quantile of the negative binomial's tail; NaN outside runs):
        the score a drop-test flag carries beside the count score's."""
        with np.errstate(all="ignore"):
            z = _nb_z(self.observed, self.expected, np.maximum(self.phi, 1e-9))
        return np.where(self.days > 0, z, np.nan)


class DropEvidence:
    """Each day's log-likelihood ratio of the drop (NaN where it cannot be scored), its
    count, its expected count and φ: what ``cusum`` sums, at any threshold."""

    def __init__(self, llr: Array, counts: Array, expected: Array, phi: Array) -> None:
        self.llr, self.counts, self.expected, self.phi = llr, counts, expected, phi


def drop_cusum(x: Array, season: int, weeks: int, min_history: int = 3, *,
               depth: float = DROP_DEPTH, threshold: float = DROP_THRESHOLD,
               expected: Expected | None = None) -> DropRun:
    """A CUSUM of each day's log-likelihood ratio of "the rate fell to ``depth`` of its
    expected count" against "it did not" (``drop_evidence``): S_t = max(0, S_{t−1} +
    llr_t), an alarm where S_t ≥ ``threshold`` (nats), after which S starts again at 0.

    A drop that lasts builds up evidence day by day, where a fixed window of one or two days
    sees only its own: the statistic is the likelihood ratio of the whole run since S last
    stood at 0, and the alarm comes on the first day that run is improbable enough. The
    ratio weighs accounts by what a fall of that depth would show in them: a busy account's
    fall to a quarter is sure on its first day, a small account's takes two or more, and a
    fall to 70 % pulls S back toward 0 however improbable it is (llr_t < 0 wherever the
    count stays above about (1 − depth) / −log(depth) of its expectation: 54 % at 0.25)."""
    return cusum(drop_evidence(x, season, weeks, min_history, depth=depth,
                               expected=expected), threshold)


def drop_evidence(x: Array, season: int, weeks: int, min_history: int = 3, *,
                  depth: float = DROP_DEPTH, min_dispersion: float = MIN_DISPERSION,
                  material: float = MATERIAL, expected: Expected | None = None
                  ) -> DropEvidence:
    """log P(count | a rate at ``depth`` of the expected) − log P(count | the expected),
    both negative binomials of ``count_scores``' expectation and φ (``expected`` where the
    caller has it already)."""
    if expected is None:
        expected = expected_counts(x, season, weeks, min_history,
                                   min_dispersion=min_dispersion, material=material)
    mean, phi, unknown, _ = expected
    with np.errstate(all="ignore"):
        llr = _nb_drop_llr(x, mean, phi, depth)
    llr[unknown] = np.nan
    return DropEvidence(llr, x, mean, phi)


def cusum(evidence: DropEvidence, threshold: float) -> DropRun:
    """The CUSUM of ``evidence.llr`` along each row, reset to 0 by an alarm (S ≥
    ``threshold``); days without evidence (NaN) leave S and its run as they were."""
    llr, x, mean, phi = evidence.llr, evidence.counts, evidence.expected, evidence.phi
    n, length = llr.shape
    statistic = np.full((n, length), np.nan)
    alarm = np.zeros((n, length), dtype=bool)
    days = np.zeros((n, length), dtype=np.int_)
    observed, expected, run_phis = (np.zeros((n, length)) for _ in range(3))
    s, run_x, run_mu, run_phi = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    run_days = np.zeros(n, dtype=np.int_)
    for t in range(length):
        ok = ~np.isnan(llr[:, t])
        s = np.where(ok, np.maximum(s + np.where(ok, llr[:, t], 0.0), 0.0), s)
        going = s > 0  # the run goes on (or starts) where S is above 0; a known 0 ends it
        ends = ok & ~going
        run_days = np.where(ends, 0, run_days + ok)
        run_x = np.where(ends, 0.0, run_x + np.where(ok, x[:, t], 0.0))
        run_mu = np.where(ends, 0.0, run_mu + np.where(ok, mean[:, t], 0.0))
        run_phi = np.where(ends, 0.0, np.maximum(run_phi, np.where(ok, phi[:, t], 0.0)))
        statistic[ok, t] = s[ok]
        fired = ok & (s >= threshold)
        alarm[:, t] = fired
        days[:, t], observed[:, t], expected[:, t] = run_days, run_x, run_mu
        run_phis[:, t] = run_phi
        s[fired], run_days[fired], run_x[fired], run_mu[fired] = 0.0, 0, 0.0, 0.0
        run_phi[fired] = 0.0
    return DropRun(statistic, alarm, days, observed, expected, run_phis)


def _nb_drop_llr(x: Array, mean: Array, phi: Array, depth: float) -> Array:
    """log P(x | mean · depth) − log P(x | mean) for negative binomials of the same φ:
    (x + 1/φ) · log((1/φ + mean) / (1/φ + depth · mean)) + x · log(depth). Positive for
    counts below ≈ mean · (1 − depth) / −log(depth) (Poisson's limit, φ → 0)."""
    fall = np.log1p(phi * mean * (1 - depth) / (1 + phi * depth * mean))
    return np.asarray((x + 1 / phi) * fall + x * np.log(depth), dtype=np.float64)


class Expected(NamedTuple):
    """Each day's expected count, its negative binomial's φ (variance mean + φ·mean²),
    where it cannot be scored, and how many weeks its weekday took: what ``count_scores``
    and ``drop_evidence`` both test the counts against, computed once for both."""

    mean: Array
    phi: Array
    unknown: NDArray[np.bool_]
    known: NDArray[np.int_]


def expected_counts(x: Array, season: int, weeks: int, min_history: int = 3, *,
                    min_dispersion: float = MIN_DISPERSION,
                    material: float = MATERIAL) -> Expected:
    """The expectation ``count_scores`` describes, for ``x``'s daily counts."""
    expected, known = weekday_expectation(x, season, weeks)
    unknown = np.isnan(x) | (known < min_history) | np.isnan(expected)
    with np.errstate(all="ignore"):
        # a series quiet for weeks has a small rate, not a zero one: one call is no alarm
        mean = np.maximum(expected, 0.5)
        n = np.maximum(known, 1)
        phi = min_dispersion ** 2 * (1 + 1 / n) + ESTIMATE_ERROR / (n * mean)
    mean, phi = _follow_level_shift(x, mean, phi, unknown, material, min_dispersion)
    return Expected(mean, phi, unknown, known)


def weekday_expectation(x: Array, season: int, weeks: int) -> tuple[Array, NDArray[np.int_]]:
    """Expected counts of daily series (``season`` 7; column c is weekday c mod 7) as the
    series' level times its weekday profile, and how many weeks the day's own weekday took.

    Each weekday's trimmed mean over ``weeks`` weeks (``_trimmed_seasonal_mean``) alone is
    an estimate from six counts. Here the level is the mean of all seven weekdays' latest
    trimmed means (seven times the counts), and the profile (the seven means over the
    level) is projected on the weekday shapes the series share: the population's mean
    profile plus its principal components that stand above the sampling noise
    (``profile_basis``, from the first ``weeks`` weeks of every series). What an account's
    profile has beyond them is noise: a small account's Saturday is known from the shape
    of all accounts like it, not from its own six Saturdays. On the tuning operator this
    halves the expectation's error (variance × rate 0.19 → 0.07–0.11). Other seasons, too
    few series, or a weekday not yet known: the day's own weekday mean."""
    own, known = _trimmed_seasonal_mean(x, season, weeks)
    if season != 7 or x.shape[1] < season:
        return own, known
    basis = profile_basis(x[:, :weeks * season])
    if basis is None:
        return own, known
    centre, components = basis
    n, length = x.shape
    t = np.arange(length)
    latest = np.full((n, length, 7), np.nan)  # each weekday's latest trimmed mean at t
    for w in range(7):
        source = t - (t - w) % 7
        ok = source >= 0
        latest[:, ok, w] = own[:, source[ok]]
    with np.errstate(all="ignore"):
        level = latest.mean(axis=2)
        profile = latest / level[:, :, None]
        shrunk = centre + ((profile - centre) @ components) @ components.T
        expected = level * shrunk[:, t, t % 7]
    usable = np.isfinite(expected) & (level > 0)
    return np.where(usable, np.maximum(expected, 0.0), own), known


def profile_basis(history: Array, min_series: int = 30,
                  noise_factor: float = 2.0) -> tuple[Array, Array] | None:
    """The weekday shapes a population of daily series shares: the volume-weighted mean of
    their profiles (each weekday's mean count over the series' mean, columns by c mod 7)
    and the principal components of the profiles whose variance exceeds ``noise_factor``
    times the Poisson sampling variance of a profile entry (more would fit each series'
    noise, fewer would force unlike series into one shape). None with fewer than
    ``min_series`` series known on every weekday."""
    sums = np.stack([np.nansum(history[:, w::7], axis=1) for w in range(7)], axis=1)
    counts = np.stack([np.sum(~np.isnan(history[:, w::7]), axis=1) for w in range(7)],
                      axis=1)
    ok = (counts > 0).all(axis=1)
    with np.errstate(all="ignore"):
        means = sums[ok] / counts[ok]
        level = means.mean(axis=1)
    ok_level = level > 0
    means, level, counts = means[ok_level], level[ok_level], counts[ok][ok_level]
    if len(level) < min_series:
        return None
    profiles = means / level[:, None]
    weight = level / level.sum()
    centre = weight @ profiles
    deviation = profiles - centre
    covariance = (deviation * weight[:, None]).T @ deviation
    noise = float(weight @ (profiles / (counts * level[:, None])).mean(axis=1))
    variances, vectors = np.linalg.eigh(covariance)
    keep = variances > noise_factor * noise
    return centre, vectors[:, keep]


def _trimmed_seasonal_mean(x: Array, season: int, weeks: int,
                           trim: float = 3.0) -> tuple[Array, NDArray[np.int_]]:
    """Mean of x[t − season], …, x[t − weeks·season] without the values more than ``trim``
    deviations (Poisson and 10 %) from their median; and how many values it took."""
    planes = np.full((weeks, *x.shape), np.nan)
    for k in range(1, weeks + 1):
        shift = k * season
        if shift < x.shape[1]:
            planes[k - 1, :, shift:] = x[:, :x.shape[1] - shift]
    median = seasonal_baseline(x, season, weeks).median
    with np.errstate(all="ignore"):
        spread = np.sqrt(np.maximum(median, 0.5) + (0.1 * median) ** 2)
        kept = np.abs(planes - median) <= trim * spread  # False where NaN
        taken = kept.sum(axis=0)
        mean = np.where(kept, planes, 0.0).sum(axis=0) / taken
    mean[taken == 0] = np.nan
    return mean, taken


def _follow_level_shift(x: Array, mean: Array, phi: Array, unknown: NDArray[np.bool_],
                        material: float, min_dispersion: float,
                        z_level: float = REBASE_Z) -> tuple[Array, Array]:
    """Expected counts moved to the level of the two weeks before day t (t − 14 … t − 1)
    where that level is ``material`` times off what the history before them expected,
    improbably so (|z| ≥ ``z_level``), and the two weeks agree within 12.5 % and their
    Poisson noise: a level shift, which the same-weekday history takes four weeks to learn,
    rather than a ramp (a drift keeps being scored against the history it leaves). Day t − 1
    counts: a shift is followed from its fifteenth day, the day an episode's third weekly
    alert would come (the first day of a two-day drop moves neither week's level enough).
    Both weeks are measured against the first week's expectations, whose own history
    precedes the shift, over the weekdays known in both weeks (a holiday in either week
    leaves its weekday out of both, rather than reading as a fall of a seventh), and t's
    expectation is that of its weekday in that week, scaled."""
    known = ~unknown
    paired = np.zeros(x.shape, dtype=bool)  # day t known, and the same weekday a week on
    paired[:, :-7] = known[:, :-7] & known[:, 7:]
    observed = np.where(paired, x, 0.0)
    later = np.zeros_like(observed)
    later[:, :-7] = np.where(paired[:, :-7], x[:, 7:], 0.0)
    early, late = _lagged_sum(observed, 8, 14), _lagged_sum(later, 8, 14)
    week = _lagged_sum(np.where(paired, mean, 0.0), 8, 14)
    anchor = np.full(x.shape, np.nan)
    usual = np.where(unknown, np.nan, mean)
    anchor[:, 14:] = usual[:, :-14]
    # t's weekday a week earlier where the first week's was a holiday: also from before it
    before = np.full(x.shape, np.nan)
    before[:, 21:] = usual[:, :-21]
    anchor = np.where(np.isnan(anchor), before, anchor)
    with np.errstate(all="ignore"):
        level = (early + late + 1) / (2 * week + 1)
        z = _nb_z(early + late, np.maximum(2 * week, 0.5),
                  np.full(x.shape, min_dispersion ** 2))
        shifted = ((np.abs(z) >= z_level) & ((level >= material) | (level <= 1 / material))
                   & (np.abs(late - early)
                      <= 0.125 * (late + early) + 2.5 * np.sqrt(late + early))
                   & ~np.isnan(anchor))
        # the new level is itself estimated, from two weeks' counts
        return (np.where(shifted, np.maximum(anchor * level, 0.5), mean),
                np.where(shifted, phi + 1 / np.maximum(early + late, 1), phi))


def _lagged_sum(a: Array, first: int, last: int) -> Array:
    """Sum of a[:, t − last .. t − first] at each t (zeros before the series starts)."""
    out = np.zeros_like(a)
    for k in range(first, last + 1):
        out[:, k:] += a[:, :a.shape[1] - k]
    return out


def _window_sum(a: Array, w: int) -> Array:
    """Sum of a[:, t − w + 1 .. t] for t ≥ w − 1 (shape: time − w + 1)."""
    out = a[:, w - 1:].copy()
    for k in range(1, w):
        out += a[:, w - 1 - k:a.shape[1] - k]
    return out


def _window_max(a: Array, w: int) -> Array:
    out = a[:, w - 1:].copy()
    for k in range(1, w):
        out = np.maximum(out, a[:, w - 1 - k:a.shape[1] - k])
    return out


def _nb_z(x: Array, mean: Array, phi: Array) -> Array:
    """Signed normal quantile of x's tail probability under a negative binomial of this
    mean and variance mean + phi·mean²: P(X ≥ x) above the mean, P(X ≤ x) below."""
    from scipy import stats

    n = 1.0 / phi
    p = n / (n + mean)
    up = stats.nbinom.sf(x - 1, n, p)
    down = stats.nbinom.cdf(x, n, p)
    z_up = stats.norm.isf(np.clip(up, 1e-300, 1.0))
    z_down = stats.norm.isf(np.clip(down, 1e-300, 1.0))
    return np.asarray(np.where(x >= mean, np.maximum(z_up, 0.0), -np.maximum(z_down, 0.0)),
                      dtype=np.float64)


def naive_scores(daily: Array, window: int = 28) -> Array:
    """|log ratio| of today against the mean of the previous ``window`` days (NaN ignored):
    a fixed-threshold rule ("alert above 3× or below ⅓ of the usual") ranks by this."""
    n, days = daily.shape
    out = np.full((n, days), np.nan)
    csum = np.nancumsum(np.nan_to_num(daily, nan=0.0), axis=1)
    count = np.cumsum(~np.isnan(daily), axis=1)
    for t in range(window, days):
        total = csum[:, t - 1] - csum[:, t - window - 1] if t > window else csum[:, t - 1]
        seen = count[:, t - 1] - (count[:, t - window - 1] if t > window else 0)
        with np.errstate(all="ignore"):
            mean = total / seen
            out[:, t] = np.abs(np.log((daily[:, t] + 1.0) / (mean + 1.0)))
    return out


def day_features(hourly: Array, window: int = 28) -> Array:
    """Per account-day features for the IsolationForest: log volume, log ratio to the last
    four weeks' mean, log ratio to the same weekday's median, night share (00:00–05:59),
    peak hour over mean hour. Shape (accounts, days, 5)."""
    n, hours = hourly.shape
    days = hours // 24
    by_day = hourly[:, :days * 24].reshape(n, days, 24)
    daily = by_day.sum(axis=2)
    weekday_scores, base = robust_scores(daily, 7, 6, min_history=1)
    trailing = np.full((n, days), np.nan)
    csum = np.nancumsum(np.nan_to_num(daily, nan=0.0), axis=1)
    for t in range(1, days):
        start = max(0, t - window)
        total = csum[:, t - 1] - (csum[:, start - 1] if start > 0 else 0)
        trailing[:, t] = total / (t - start)
    with np.errstate(all="ignore"):
        features = np.stack([
            np.log1p(daily),
            np.log((daily + 1) / (trailing + 1)),
            np.log((daily + 1) / (base.median + 1)),
            by_day[:, :, :6].sum(axis=2) / (daily + 1),
            by_day.max(axis=2) / (daily / 24 + 1),
        ], axis=2)
    del weekday_scores
    return features


def isolation_scores(features: Array, valid: NDArray[np.bool_], seed: int = 0) -> Array:
    """IsolationForest anomaly scores (higher: more anomalous) of the valid account-days."""
    from sklearn.ensemble import IsolationForest

    rows = features[valid]
    rows = np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0)
    forest = IsolationForest(n_estimators=100, max_samples=512, random_state=seed, n_jobs=1)
    rng = np.random.default_rng(seed)
    fit_rows = rows[rng.choice(len(rows), size=min(len(rows), 100_000), replace=False)]
    forest.fit(fit_rows)
    out = np.full(valid.shape, np.nan)
    out[valid] = -forest.score_samples(rows)
    return out
