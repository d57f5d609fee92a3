"""Off-policy estimators: how well a target policy would have done, from decisions another policy logged.

Plain functions over NumPy arrays with one entry per logged decision (round), so that numbers from
other tools can be reproduced exactly. The vocabulary, for ``n`` rounds:

* ``reward``       shape (n,): the reward observed for the logged action;
* ``pscore``       shape (n,): the logging policy's probability of the logged action, in (0, 1];
* ``target_prob``  shape (n,): the target policy's probability of the logged action, in [0, 1];
* ``q_logged``     shape (n,): a reward model's prediction for the logged action;
* ``q_target``     shape (n,): the reward model's expectation under the target policy,
  ``sum_a target(a | x_i) * q(x_i, a)``.

With importance weights ``w_i = target_prob_i / pscore_i``:

* IPS    ``V = mean(w * reward)`` (weights optionally clipped at ``clip``; clipping trades bias for variance);
* SNIPS  ``V = sum(w * reward) / sum(w)``;
* DM     ``V = mean(q_target)``;
* DR     ``V = mean(q_target + w * (reward - q_logged))``.

Every estimator returns an ``Estimate``: the value, a confidence interval and the effective sample
size ``(sum w)^2 / sum(w^2)`` (Kish; ``n`` for DM, which uses no weights). The interval is the normal
approximation by default: the value plus or minus ``z * sd / sqrt(n)`` of the per-round terms (for
SNIPS, of its linearization ``w_i * (reward_i - V) / mean(w)``, the delta method). With
``interval="bootstrap"`` it is the percentile interval of ``n_bootstrap`` resamples of the rounds,
drawn with a seeded generator, so the same call gives the same interval. DM's interval covers only
the sampling of contexts, not the reward model's own error: DM is as biased as its model.

With ``interval="likelihood"`` (IPS, SNIPS and DR; what an evaluation report uses) it is the
empirical likelihood interval (Owen, 2001), widened for weights nobody saw rewarded, after
Karampatziakis, Langford and Mineiro's empirical likelihood for contextual bandits (2020): the
values ``V`` whose estimating equation (``mean(w * reward - V) = 0`` for IPS, ``mean(w * (reward -
V)) = 0`` for SNIPS, ``mean(dr term - V) = 0`` for DR) the rounds do not reject at the level, when
the rounds may be reweighted and one more decision, never seen, may carry some of the mass.
That decision is the heaviest the log shows (the largest importance weight), its reward at either end
of the rewards seen (and 0): the upper bound lets it have been rewarded, the lower bound not. The
normal interval trusts the rounds' sample variance, which misses a tail of heavily weighted decisions
none of which happened to be rewarded (a candidate close to a logger whose exploration has decayed:
BENCHMARKS.md, "Do the intervals hold the truth?"); this one does not, and where the weights are
light it is the normal interval to within a few percent of its width. It adapts to skew as well,
since its endpoints need not sit symmetrically about the estimate.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

INTERVALS = ("normal", "likelihood", "bootstrap")
RESAMPLES_PER_BLOCK = 25  # bootstrap resamples drawn from one seeded generator (see ``bootstrap_means``)


@dataclass(frozen=True)
class Estimate:
    """A policy value estimate with its confidence interval and effective sample size."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    level: float
    interval: str
    n_rounds: int
    effective_sample_size: float

    def as_dict(self) -> dict[str, Any]:
        """Return the estimate as JSON-ready data."""
        return asdict(self)


def _array(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name}: must be a one-dimensional array, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: is empty; at least 2 rounds are needed")
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"{name}: holds a NaN or infinite value (at index {bad})")
    return array


def _arrays(**named: Any) -> dict[str, np.ndarray]:
    """Check every named array (1-D, finite, non-empty) and that all have one length, of at least 2."""
    arrays = {name: _array(name, value) for name, value in named.items()}
    lengths = {name: array.size for name, array in arrays.items()}
    first = next(iter(lengths))
    for name, length in lengths.items():
        if length != lengths[first]:
            raise ValueError(f"{name}: has {length} rounds but {first} has {lengths[first]}")
    if lengths[first] < 2:
        raise ValueError(f"{first}: has 1 round; at least 2 are needed for a confidence interval")
    if "pscore" in arrays:
        pscore = arrays["pscore"]
        if np.any(pscore <= 0) or np.any(pscore > 1):
            bad = int(np.flatnonzero((pscore <= 0) | (pscore > 1))[0])
            raise ValueError(f"pscore: probabilities must be in (0, 1]; index {bad} is {pscore[bad]!r}")
    if "target_prob" in arrays:
        target = arrays["target_prob"]
        if np.any(target < 0) or np.any(target > 1):
            bad = int(np.flatnonzero((target < 0) | (target > 1))[0])
            raise ValueError(f"target_prob: probabilities must be in [0, 1]; index {bad} is {target[bad]!r}")
    return arrays


def _options(level: float, interval: str, n_bootstrap: int) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be between 0 and 1, got {level!r}")
    if interval not in INTERVALS:
        raise ValueError(f"interval: must be one of {', '.join(INTERVALS)}, got {interval!r}")
    if interval == "bootstrap" and n_bootstrap < 100:
        raise ValueError(f"n_bootstrap: at least 100 resamples, got {n_bootstrap!r}")


def _weights(pscore: np.ndarray, target_prob: np.ndarray, clip: float | None) -> np.ndarray:
    weights = target_prob / pscore
    if clip is not None:
        if not clip > 0 or not math.isfinite(clip):
            raise ValueError(f"clip: must be a positive number, got {clip!r}")
        weights = np.minimum(weights, clip)
    return weights


def effective_sample_size(weights: np.ndarray) -> float:
    """Return Kish's effective sample size of importance weights, ``(sum w)^2 / sum(w^2)``."""
    squares = float(np.dot(weights, weights))
    return float(weights.sum()) ** 2 / squares if squares > 0 else 0.0


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


BLOCK = 1 << 20  # rounds computed at a time by the sums over a long log (their temporaries stay this size)


def _std(terms: np.ndarray) -> float:
    """Return the sample standard deviation of ``terms``; a long log a block at a time (no temporary of its size)."""
    if terms.size <= BLOCK:
        return float(np.std(terms, ddof=1))
    mean = float(terms.mean())
    squares = sum(
        float(np.sum(np.square(terms[start : start + BLOCK] - mean))) for start in range(0, terms.size, BLOCK)
    )
    return math.sqrt(squares / (terms.size - 1))


def _normal(value: float, terms: np.ndarray, level: float) -> tuple[float, float]:
    half = _z(level) * _std(terms) / math.sqrt(terms.size)
    return value - half, value + half


def bootstrap_means(
    columns: list[np.ndarray], *, n_bootstrap: int, seed: int, threads: int | None = None
) -> np.ndarray:
    """Return the means of each column over ``n_bootstrap`` resamples of the rounds, shape (n_bootstrap, k).

    Each resample draws ``n`` round indices uniformly with replacement, and every column is averaged
    over the same indices. Resamples come in blocks of ``RESAMPLES_PER_BLOCK``, block ``j`` drawn from
    a generator seeded with ``(seed, j)``; so the result depends on the seed alone, not on ``threads``
    (default: one per core, at most 4; NumPy's sampling and gathering release the GIL, and one resample
    of a million rounds takes about 10 ms).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
    n = columns[0].size
    means = np.empty((n_bootstrap, len(columns)))
    dtype = np.int32 if n < 2**31 else np.int64
    if threads is None:
        threads = (os.cpu_count() or 1) if n >= 100_000 else 1
    threads = max(1, min(threads, 4, -(-n_bootstrap // RESAMPLES_PER_BLOCK)))

    blocks = range(0, n_bootstrap, RESAMPLES_PER_BLOCK)

    def work(first: int) -> None:
        buffer = np.empty(n)
        for block in range(first, len(blocks), threads):
            rng = np.random.default_rng([int(seed), block])
            start = blocks[block]
            for b in range(start, min(start + RESAMPLES_PER_BLOCK, n_bootstrap)):
                index = rng.integers(0, n, size=n, dtype=dtype)
                for k, column in enumerate(columns):
                    np.take(column, index, out=buffer)
                    means[b, k] = buffer.mean()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(work, range(threads)))
    return means


def _bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    columns: list[np.ndarray],
    *,
    level: float,
    n_bootstrap: int,
    seed: int,
) -> tuple[float, float]:
    values = statistic(bootstrap_means(columns, n_bootstrap=n_bootstrap, seed=seed))
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


Terms = Callable[[slice], np.ndarray]  # the rounds' terms in a block of rounds


def _likelihood_statistic(g: Terms, size: int, atom: float) -> float:
    """Return -2 log of the empirical likelihood ratio of ``mean(g) = 0``, one unseen point ``atom`` allowed.

    ``g(block)`` gives the terms of the rounds in a block of the ``size`` rounds: a long log is
    computed a block at a time, so that no step holds more than a block's temporaries.

    By duality the statistic is ``2 max_t sum(log(1 + t * g_i))`` over the ``t`` that keep every
    ``1 + t * g_i`` positive and ``1 + t * atom`` non-negative: the rounds' masses are
    ``1 / (n (1 + t g_i))`` and the unseen point takes what they leave, which it may only where the
    second bound holds with equality. The maximum is where ``sum(g_i / (1 + t g_i)) = 0`` if that
    ``t`` is allowed, else on the atom's bound. Infinite when neither the rounds nor the atom lie on
    the far side of zero: no reweighting makes their mean zero.
    """
    blocks = [slice(start, start + BLOCK) for start in range(0, size, BLOCK)]
    mean = sum(float(g(block).sum()) for block in blocks) / size
    if mean == 0.0:
        return 0.0
    sign = 1.0 if mean > 0 else -1.0  # make t positive: the statistic is the same for -g and -atom
    atom *= sign
    if sign > 0:
        lowest = min(float(g(block).min()) for block in blocks)
    else:
        lowest = -max(float(g(block).max()) for block in blocks)
    if min(lowest, atom) >= 0:
        return math.inf
    low, high = 0.0, -1.0 / min(lowest, atom)

    def slope(t: float) -> tuple[float, float]:
        total = square = 0.0
        for block in blocks:
            signed = sign * g(block)
            ratio = signed / (1.0 + t * signed)
            total += float(ratio.sum())
            square += float(np.dot(ratio, ratio))
        return total, square

    edge = math.nan
    if atom < lowest:  # the unseen point bounds t (a round level with it, to rounding, leaves the edge infinite)
        with np.errstate(divide="ignore", invalid="ignore"):
            edge = slope(high)[0]
    if math.isfinite(edge) and edge >= 0:
        t = high  # the root lies past the unseen point's bound: it takes mass, the bound holds
    else:  # the root is inside (low, high): Newton's steps, kept in the bracket by bisection
        t = 0.0
        for _ in range(200):
            value, curvature = slope(t)
            if value > 0:
                low = t
            else:
                high = t
            step = t + value / curvature if curvature > 0 else math.nan
            if not low < step < high:
                step = 0.5 * (low + high)
            if abs(step - t) <= 1e-12 * max(1.0, abs(t)):
                t = step
                break
            t = step
    return 2.0 * sum(float(np.sum(np.log1p(t * sign * g(block)))) for block in blocks)


THREADED_FROM = 200_000  # rounds from which the likelihood interval's two ends are searched in two threads


def _likelihood_interval(
    equation: Callable[[float, slice], np.ndarray],
    atoms: Callable[[float], tuple[float, float]],
    *,
    rounds: int,
    value: float,
    half: float,
    level: float,
) -> tuple[float, float]:
    """Return the values ``V`` around ``value`` where the likelihood statistic is at most the level's chi-square.

    ``equation(V, block)`` gives the term of the estimating equation at ``V`` of each round in a block
    of the ``rounds``, ``atoms(V)`` the unseen decision's term below and above. ``half`` (the normal
    interval's half-width) sets the first step; each endpoint is found by regula falsi on the
    statistic's square root, which is nearly linear in ``V``, falling back to bisection, to a
    millionth of ``half``. From ``THREADED_FROM`` ``rounds`` the
    two endpoints are searched in two threads (the same steps, so the same interval).
    """
    z = _z(level)
    scale = half if half > 0 else max(1e-9, abs(value) * 1e-6)

    def excess(v: float, side: int) -> float:
        statistic = _likelihood_statistic(lambda block: equation(v, block), rounds, atoms(v)[0 if side < 0 else 1])
        return math.sqrt(max(statistic, 0.0)) - z

    def endpoint(side: int) -> float:
        inner, inner_excess = value, -z
        outer = value + side * scale
        outer_excess = excess(outer, side)
        for _ in range(200):
            if outer_excess > 0:
                break
            inner, inner_excess = outer, outer_excess
            outer = value + 2 * (outer - value)
            outer_excess = excess(outer, side)
        last = 0  # which end the previous step moved: Illinois halves the excess of an end kept twice
        for _ in range(100):
            if abs(outer - inner) <= 1e-6 * scale:
                break
            if math.isfinite(outer_excess):
                middle = inner - inner_excess * (outer - inner) / (outer_excess - inner_excess)
            else:
                middle = 0.5 * (inner + outer)
            middle_excess = excess(middle, side)
            if middle_excess <= 0:
                inner, inner_excess = middle, middle_excess
                if last < 0:
                    outer_excess /= 2
                last = -1
            else:
                outer, outer_excess = middle, middle_excess
                if last > 0:
                    inner_excess /= 2
                last = 1
        return inner

    if rounds < THREADED_FROM:
        return endpoint(-1), endpoint(1)
    # Large logs: the two ends are searched at once; NumPy releases the GIL over arrays this long.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="likelihood") as pool:
        low, high = pool.map(endpoint, (-1, 1))
    return low, high


def _reward_range(reward: np.ndarray) -> tuple[float, float]:
    """The rewards an unseen decision may have had: those seen, and 0 (a decision nobody rewarded)."""
    return min(0.0, float(reward.min())), max(0.0, float(reward.max()))


def _estimate(
    name: str,
    *,
    value: float,
    terms: np.ndarray,
    ess: float,
    level: float,
    interval: str,
    n_bootstrap: int,
    seed: int,
    unseen: tuple[float, float] | None = None,
) -> Estimate:
    """An estimate whose value is the mean of ``terms`` (IPS, DM, DR).

    ``unseen``: the term an unseen decision could have, at its lowest and highest (the likelihood
    interval's extra point; required for it).
    """
    if interval == "normal":
        low, high = _normal(value, terms, level)
    elif interval == "likelihood":
        if unseen is None:
            raise ValueError(f"interval: likelihood is not available for {name}")
        below, above = unseen
        low, high = _likelihood_interval(
            lambda v, block: terms[block] - v,
            lambda v: (below - v, above - v),
            rounds=terms.size,
            value=value,
            half=_normal(value, terms, level)[1] - value,
            level=level,
        )
    else:
        low, high = _bootstrap(lambda means: means[:, 0], [terms], level=level, n_bootstrap=n_bootstrap, seed=seed)
    return Estimate(
        estimator=name,
        value=value,
        ci_low=low,
        ci_high=high,
        level=level,
        interval=interval,
        n_rounds=int(terms.size),
        effective_sample_size=ess,
    )


def ips(
    *,
    reward: Any,
    pscore: Any,
    target_prob: Any,
    clip: float | None = None,
    level: float = 0.95,
    interval: str = "normal",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> Estimate:
    """Estimate the target policy's value by inverse propensity scoring: ``mean(w * reward)``.

    Args:
        reward, pscore, target_prob: arrays of shape (n,) (see the module docstring).
        clip: if given, weights above it are set to it (biased towards zero, lower variance).
        level: the confidence level of the interval.
        interval: ``"normal"``, ``"likelihood"`` (IPS, SNIPS, DR; see the module docstring) or ``"bootstrap"``
            (``n_bootstrap`` resamples seeded by ``seed``).

    Raises:
        ValueError: an argument is malformed; the message names it.
    """
    _options(level, interval, n_bootstrap)
    data = _arrays(reward=reward, pscore=pscore, target_prob=target_prob)
    weights = _weights(data["pscore"], data["target_prob"], clip)
    ess, heaviest = effective_sample_size(weights), float(weights.max())
    terms = np.multiply(weights, data["reward"], out=weights)  # the weights are not needed again: their array
    least, most = _reward_range(data["reward"])
    return _estimate(
        "ips" if clip is None else f"ips(clip={clip:g})",
        value=float(terms.mean()),
        terms=terms,
        ess=ess,
        level=level,
        interval=interval,
        n_bootstrap=n_bootstrap,
        seed=seed,
        # min(w * least) and max(w * most) with least <= 0 <= most: both at the largest weight (rounding is monotone)
        unseen=(least * heaviest, most * heaviest),
    )


def snips(
    *,
    reward: Any,
    pscore: Any,
    target_prob: Any,
    level: float = 0.95,
    interval: str = "normal",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> Estimate:
    """Estimate the target policy's value by self-normalized IPS: ``sum(w * reward) / sum(w)``.

    Raises:
        ValueError: an argument is malformed, or the target policy gives probability 0 to every
            logged action (the estimate is then undefined).
    """
    _options(level, interval, n_bootstrap)
    data = _arrays(reward=reward, pscore=pscore, target_prob=target_prob)
    weights = _weights(data["pscore"], data["target_prob"], None)
    total = float(weights.sum())
    if total <= 0:
        raise ValueError(
            "target_prob: the target policy gives probability 0 to every logged action; SNIPS is undefined"
        )
    weighted = weights * data["reward"]
    value = float(weighted.sum()) / total
    if interval in ("normal", "likelihood"):
        del weighted  # only the bootstrap resamples it
        spread = data["reward"] - value  # the normal interval's terms, w (reward - value) / mean(w), in place
        spread *= weights
        spread /= weights.mean()
        low, high = _normal(value, spread, level)
        del spread
    if interval == "likelihood":
        least, most = _reward_range(data["reward"])
        heaviest = float(weights.max())
        low, high = _likelihood_interval(
            lambda v, block: weights[block] * (data["reward"][block] - v),
            lambda v: (heaviest * (least - v), heaviest * (most - v)),
            rounds=weights.size,
            value=value,
            half=high - value,
            level=level,
        )
    elif interval == "bootstrap":

        def ratio(means: np.ndarray) -> np.ndarray:
            # A resample may hold no round the target policy would choose; its ratio is then undefined.
            with np.errstate(invalid="ignore", divide="ignore"):
                values = means[:, 0] / means[:, 1]
            return values[np.isfinite(values)]

        low, high = _bootstrap(ratio, [weighted, weights], level=level, n_bootstrap=n_bootstrap, seed=seed)
    return Estimate(
        estimator="snips",
        value=value,
        ci_low=low,
        ci_high=high,
        level=level,
        interval=interval,
        n_rounds=int(weights.size),
        effective_sample_size=effective_sample_size(weights),
    )


def dm(
    *, q_target: Any, level: float = 0.95, interval: str = "normal", n_bootstrap: int = 1000, seed: int = 0
) -> Estimate:
    """Estimate the target policy's value by the direct method: ``mean(q_target)``.

    The interval covers the sampling of contexts only; the reward model's bias is not in it.
    """
    _options(level, interval, n_bootstrap)
    terms = _arrays(q_target=q_target)["q_target"]
    return _estimate(
        "dm",
        value=float(terms.mean()),
        terms=terms,
        ess=float(terms.size),
        level=level,
        interval=interval,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )


def dr(
    *,
    reward: Any,
    pscore: Any,
    target_prob: Any,
    q_logged: Any,
    q_target: Any,
    clip: float | None = None,
    level: float = 0.95,
    interval: str = "normal",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> Estimate:
    """Estimate the target policy's value by doubly robust estimation.

    ``mean(q_target + w * (reward - q_logged))``: the direct method corrected by the importance-
    weighted error of the reward model on the logged actions. Unbiased when either the propensities
    or the reward model are right; its variance is low when the reward model is good.
    """
    _options(level, interval, n_bootstrap)
    data = _arrays(reward=reward, pscore=pscore, target_prob=target_prob, q_logged=q_logged, q_target=q_target)
    weights = _weights(data["pscore"], data["target_prob"], clip)
    q_target, q_logged = data["q_target"], data["q_logged"]
    least, most = _reward_range(data["reward"])
    blocks = [slice(start, start + BLOCK) for start in range(0, weights.size, BLOCK)]
    ess = effective_sample_size(weights)
    unseen = (
        min(float(np.min(q_target[b] + weights[b] * (least - q_logged[b]))) for b in blocks),
        max(float(np.max(q_target[b] + weights[b] * (most - q_logged[b]))) for b in blocks),
    )
    terms = data["reward"] - q_logged  # q_target + w * (reward - q_logged), in place: one array, not three
    terms *= weights
    terms += q_target
    del weights  # the interval reads the terms alone
    return _estimate(
        "dr" if clip is None else f"dr(clip={clip:g})",
        value=float(terms.mean()),
        terms=terms,
        ess=ess,
        level=level,
        interval=interval,
        n_bootstrap=n_bootstrap,
        seed=seed,
        unseen=unseen,
    )


def wilson(successes: int, trials: int, *, level: float = 0.95) -> dict[str, Any]:
    """Return a proportion with its Wilson score interval (None values when there are no trials)."""
    if trials == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    z = _z(level)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return {"value": p, "ci_low": max(0.0, centre - half), "ci_high": min(1.0, centre + half), "n": trials}


def mean_interval(values: np.ndarray, *, level: float = 0.95) -> dict[str, Any]:
    """Return a mean with its normal interval (None values for fewer than two)."""
    if values.size < 2:
        return {
            "value": float(values.mean()) if values.size else None,
            "ci_low": None,
            "ci_high": None,
            "n": int(values.size),
        }
    value = float(values.mean())
    low, high = _normal(value, values, level)
    return {"value": value, "ci_low": low, "ci_high": high, "n": int(values.size)}
