"""Off-policy estimators: hand-computed cases, closed forms, input checks, and coverage of the true value."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pytest

from bandits.evaluate import estimators
from bandits.evaluate.estimators import dm, dr, effective_sample_size, ips, snips

Z95 = NormalDist().inv_cdf(0.975)

# A small case computed by hand: weights w = target / pscore = [2, 0, 2, 1].
REWARD = [1.0, 0.0, 1.0, 0.0]
PSCORE = [0.5, 0.5, 0.25, 1.0]
TARGET = [1.0, 0.0, 0.5, 1.0]
Q_LOGGED = [0.6, 0.1, 0.3, 0.2]
Q_TARGET = [0.5, 0.2, 0.4, 0.1]


def test_ips_by_hand():
    estimate = ips(reward=REWARD, pscore=PSCORE, target_prob=TARGET)
    assert estimate.value == pytest.approx(1.0)  # (2 + 0 + 2 + 0) / 4
    half = Z95 * math.sqrt(4 / 3) / 2  # terms [2, 0, 2, 0]: sd sqrt(4/3), n = 4
    assert (estimate.ci_low, estimate.ci_high) == pytest.approx((1.0 - half, 1.0 + half))
    assert estimate.effective_sample_size == pytest.approx(25 / 9)  # (2+0+2+1)^2 / (4+0+4+1)
    assert estimate.n_rounds == 4 and estimate.interval == "normal" and estimate.level == 0.95
    clipped = ips(reward=REWARD, pscore=PSCORE, target_prob=TARGET, clip=1.5)
    assert clipped.value == pytest.approx(0.75)  # weights [1.5, 0, 1.5, 1]
    assert clipped.estimator == "ips(clip=1.5)"


def test_snips_by_hand():
    estimate = snips(reward=REWARD, pscore=PSCORE, target_prob=TARGET)
    assert estimate.value == pytest.approx(0.8)  # 4 / 5
    # Delta method: terms w * (r - V) / mean(w) = [0.32, 0, 0.32, -0.64] / 1.25
    terms = np.array([2 * 0.2, 0.0, 2 * 0.2, -0.8]) / 1.25
    half = Z95 * float(np.std(terms, ddof=1)) / 2
    assert (estimate.ci_low, estimate.ci_high) == pytest.approx((0.8 - half, 0.8 + half))


def test_dm_and_dr_by_hand():
    assert dm(q_target=Q_TARGET).value == pytest.approx(0.3)
    assert dm(q_target=Q_TARGET).effective_sample_size == 4
    estimate = dr(reward=REWARD, pscore=PSCORE, target_prob=TARGET, q_logged=Q_LOGGED, q_target=Q_TARGET)
    # terms: 0.5 + 2 * 0.4, 0.2 + 0, 0.4 + 2 * 0.7, 0.1 + 1 * (-0.2)
    assert estimate.value == pytest.approx((1.3 + 0.2 + 1.8 - 0.1) / 4)


def test_closed_forms():
    rng = np.random.default_rng(0)
    reward = rng.random(500)
    pscore = rng.uniform(0.1, 1.0, 500)
    # The logging policy evaluated on its own log: every weight is 1.
    on_policy = ips(reward=reward, pscore=pscore, target_prob=pscore)
    assert on_policy.value == pytest.approx(reward.mean())
    assert on_policy.effective_sample_size == pytest.approx(500)
    assert snips(reward=reward, pscore=pscore, target_prob=pscore).value == pytest.approx(reward.mean())
    # A reward model that is exact on the logged actions leaves DR equal to DM.
    q_target = rng.random(500)
    exact = dr(reward=reward, pscore=pscore, target_prob=rng.random(500), q_logged=reward, q_target=q_target)
    assert exact.value == pytest.approx(q_target.mean())
    # A zero reward model leaves DR equal to IPS.
    target = rng.random(500)
    zero = dr(reward=reward, pscore=pscore, target_prob=target, q_logged=np.zeros(500), q_target=np.zeros(500))
    assert zero.value == pytest.approx(ips(reward=reward, pscore=pscore, target_prob=target).value)
    assert effective_sample_size(np.array([1.0, 0.0, 0.0, 0.0])) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reward": [1.0, float("nan")]}, "reward: holds a NaN"),
        ({"reward": [1.0, 0.0, 1.0]}, "pscore: has 2 rounds but reward has 3"),
        ({"pscore": [0.5, 0.0]}, "pscore: probabilities must be in (0, 1]"),
        ({"pscore": [0.5, 1.5]}, "pscore: probabilities must be in (0, 1]"),
        ({"target_prob": [-0.1, 0.5]}, "target_prob: probabilities must be in [0, 1]"),
        ({"reward": [], "pscore": [], "target_prob": []}, "reward: is empty"),
        ({"reward": [1.0], "pscore": [0.5], "target_prob": [0.5]}, "at least 2 are needed"),
        ({"reward": [[1.0, 0.0]]}, "reward: must be a one-dimensional array"),
        ({"clip": -1.0}, "clip: must be a positive number"),
        ({"interval": "jackknife"}, "interval: must be one of"),
        ({"level": 1.5}, "level: must be between 0 and 1"),
        ({"interval": "bootstrap", "n_bootstrap": 10}, "n_bootstrap: at least 100"),
    ],
)
def test_invalid_inputs_name_the_argument(kwargs, message):
    arguments = {"reward": [1.0, 0.0], "pscore": [0.5, 0.5], "target_prob": [1.0, 0.0], **kwargs}
    with pytest.raises(ValueError) as error:
        ips(**arguments)
    assert message in str(error.value)


def test_invalid_model_inputs_name_the_argument():
    with pytest.raises(ValueError, match="q_logged: holds a NaN"):
        dr(reward=[1, 0], pscore=[0.5, 0.5], target_prob=[1, 0], q_logged=[0.2, float("nan")], q_target=[0.1, 0.1])
    with pytest.raises(ValueError, match="q_target: has 3 rounds"):
        dr(reward=[1, 0], pscore=[0.5, 0.5], target_prob=[1, 0], q_logged=[0.2, 0.1], q_target=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="q_target: is empty"):
        dm(q_target=[])
    with pytest.raises(ValueError, match="SNIPS is undefined"):
        snips(reward=[1, 0], pscore=[0.5, 0.5], target_prob=[0, 0])


def test_bootstrap_is_seeded_and_agrees_with_the_normal_interval_on_a_large_sample():
    rng = np.random.default_rng(1)
    n = 20_000
    reward = (rng.random(n) < 0.3).astype(float)
    pscore = rng.choice([0.2, 0.5, 0.8], n)
    target = rng.choice([0.0, 1.0], n)
    first = ips(reward=reward, pscore=pscore, target_prob=target, interval="bootstrap", n_bootstrap=400, seed=7)
    again = ips(reward=reward, pscore=pscore, target_prob=target, interval="bootstrap", n_bootstrap=400, seed=7)
    other = ips(reward=reward, pscore=pscore, target_prob=target, interval="bootstrap", n_bootstrap=400, seed=8)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    normal = ips(reward=reward, pscore=pscore, target_prob=target)
    width = normal.ci_high - normal.ci_low
    assert first.value == normal.value
    assert abs(first.ci_low - normal.ci_low) < 0.1 * width and abs(first.ci_high - normal.ci_high) < 0.1 * width
    ratio = snips(reward=reward, pscore=pscore, target_prob=target, interval="bootstrap", n_bootstrap=400)
    assert ratio.ci_low < ratio.value < ratio.ci_high


# ---------------------------------------------------------------- a world where the true value is known


@dataclass(frozen=True)
class World:
    """Segments with known click rates per action, a logging policy and a different target policy."""

    means: np.ndarray  # (segments, actions): expected reward of each action in each segment
    logging: np.ndarray  # (segments, actions): the logging policy's probabilities
    target: np.ndarray  # (segments, actions): the target policy's probabilities

    @property
    def true_value(self) -> float:
        """The target policy's expected reward, segments equally likely."""
        return float((self.target * self.means).sum(axis=1).mean())

    def log(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Log ``n`` rounds of the logging policy: segment, action, its probability, Bernoulli reward."""
        segments, actions = self.means.shape
        segment = rng.integers(segments, size=n)
        cumulative = self.logging.cumsum(axis=1)[segment]
        action = np.minimum((rng.random(n)[:, None] > cumulative).sum(axis=1), actions - 1)
        reward = (rng.random(n) < self.means[segment, action]).astype(float)
        return {
            "segment": segment,
            "action": action,
            "reward": reward,
            "pscore": self.logging[segment, action],
            "target_prob": self.target[segment, action],
        }


@pytest.fixture(scope="session")
def world() -> World:
    rng = np.random.default_rng(2024)
    segments, actions, epsilon = 4, 5, 0.3
    means = rng.uniform(0.05, 0.6, size=(segments, actions))
    logging = np.full((segments, actions), epsilon / actions)
    logging[np.arange(segments), rng.integers(actions, size=segments)] += 1 - epsilon  # its own favourites
    target = np.full((segments, actions), 0.05 / actions)
    target[np.arange(segments), means.argmax(axis=1)] += 0.95  # mostly the best action
    return World(means=means, logging=logging, target=target)


def cross_fitted_model(log: dict[str, np.ndarray], world: World, *, folds: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Cell means of reward per (segment, action), each round predicted by a model fitted on the other folds."""
    segments, actions = world.means.shape
    n = log["reward"].size
    fold = np.arange(n) * folds // n  # contiguous folds, in logging order
    q_logged, q_target = np.empty(n), np.empty(n)
    for k in range(folds):
        train, test = fold != k, fold == k
        sums = np.zeros((segments, actions))
        counts = np.zeros((segments, actions))
        np.add.at(sums, (log["segment"][train], log["action"][train]), log["reward"][train])
        np.add.at(counts, (log["segment"][train], log["action"][train]), 1)
        model = np.where(counts > 0, sums / np.maximum(counts, 1), log["reward"][train].mean())
        q_logged[test] = model[log["segment"][test], log["action"][test]]
        q_target[test] = (world.target[log["segment"][test]] * model[log["segment"][test]]).sum(axis=1)
    return q_logged, q_target


def repeated_estimates(world: World, *, repetitions: int, n: int, **options) -> dict[str, np.ndarray]:
    """(value, low, high) of IPS, SNIPS, DR and DM on ``repetitions`` independent seeded logs."""
    found: dict[str, list[tuple[float, float, float]]] = {"ips": [], "snips": [], "dr": [], "dm": []}
    for repetition in range(repetitions):
        log = world.log(n, np.random.default_rng(10_000 + repetition))
        q_logged, q_target = cross_fitted_model(log, world)
        common = {"reward": log["reward"], "pscore": log["pscore"], "target_prob": log["target_prob"], **options}
        for name, estimate in (
            ("ips", ips(**common)),
            ("snips", snips(**common)),
            ("dr", dr(**common, q_logged=q_logged, q_target=q_target)),
            ("dm", dm(q_target=q_target, **options)),
        ):
            found[name].append((estimate.value, estimate.ci_low, estimate.ci_high))
    return {name: np.array(rows) for name, rows in found.items()}


def test_normal_intervals_cover_the_true_value_and_the_estimators_are_unbiased(world):
    truth = world.true_value
    assert abs(truth - float((world.logging * world.means).sum(axis=1).mean())) > 0.05  # the policies differ
    results = repeated_estimates(world, repetitions=300, n=2000)
    for name in ("ips", "snips", "dr"):
        values, low, high = results[name].T
        coverage = float(np.mean((low <= truth) & (truth <= high)))
        assert coverage >= 0.90, (name, coverage)
        # Unbiased: the mean of 300 independent estimates is within 3 standard errors of the truth.
        assert abs(values.mean() - truth) <= 3 * values.std(ddof=1) / math.sqrt(values.size), name
    # DR, with a reward model, varies less than IPS.
    assert results["dr"][:, 0].std() < results["ips"][:, 0].std()


def test_bootstrap_intervals_cover_the_true_value(world):
    truth = world.true_value
    results = repeated_estimates(world, repetitions=200, n=2000, interval="bootstrap", n_bootstrap=200)
    for name in ("ips", "snips", "dr"):
        _, low, high = results[name].T
        coverage = float(np.mean((low <= truth) & (truth <= high)))
        assert coverage >= 0.90, (name, coverage)


def test_bootstrap_resamples_depend_on_the_seed_alone():
    from bandits.evaluate.estimators import bootstrap_means

    columns = [np.arange(50, dtype=float), np.arange(50, dtype=float) ** 2]
    one = bootstrap_means(columns, n_bootstrap=120, seed=3, threads=1)
    four = bootstrap_means(columns, n_bootstrap=120, seed=3, threads=4)
    assert np.array_equal(one, four) and one.shape == (120, 2)
    assert not np.array_equal(one, bootstrap_means(columns, n_bootstrap=120, seed=4, threads=1))
    with pytest.raises(ValueError, match="seed: must be a non-negative integer"):
        bootstrap_means(columns, n_bootstrap=120, seed=-1)


# ---------------------------------------------------------------- the likelihood interval


def heavy_tail_log(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A target that mostly agrees with the logger, and in 14 % of rounds picks what the logger tries 1 time in 70.

    Every action earns a reward 10 % of the time, so the target's true value is 0.1, and about 8
    rounds of a log of 4,000 carry weight 70; in a third of the logs none of them is rewarded.
    """
    disagrees = rng.random(n) < 0.14
    pscore_of_target = np.where(disagrees, 1 / 70, 0.95)
    chosen = rng.random(n) < pscore_of_target  # the logger picked the target's action
    return {
        "reward": (rng.random(n) < 0.1).astype(float),
        "pscore": np.where(chosen, pscore_of_target, 1 - pscore_of_target),
        "target_prob": chosen.astype(float),
    }


def coverage_and_width(logs: list[dict[str, np.ndarray]], truth: float, **options) -> dict[str, tuple[float, float]]:
    found: dict[str, list[tuple[float, float]]] = {"ips": [], "snips": [], "dr": []}
    for log in logs:
        q = np.full(log["reward"].size, 0.09)  # a reward model a little off
        for name, estimate in (
            ("ips", ips(**log, **options)),
            ("snips", snips(**log, **options)),
            ("dr", dr(**log, q_logged=q, q_target=q, **options)),
        ):
            found[name].append((estimate.ci_low, estimate.ci_high))
    result = {}
    for name, rows in found.items():
        low, high = np.array(rows).T
        result[name] = (float(np.mean((low <= truth) & (truth <= high))), float(np.mean(high - low)))
    return result


def test_the_likelihood_interval_sees_heavy_weights_that_were_never_rewarded():
    logs = [heavy_tail_log(4000, np.random.default_rng([7, repetition])) for repetition in range(300)]
    normal = coverage_and_width(logs, 0.1)
    likely = coverage_and_width(logs, 0.1, interval="likelihood")
    assert normal["ips"][0] < 0.85  # the normal interval trusts a sample variance that missed the tail
    for name in ("ips", "snips", "dr"):
        assert likely[name][0] >= 0.92, (name, likely[name])
        assert likely[name][1] < 1.5 * normal[name][1], (name, likely[name], normal[name])


def test_the_likelihood_interval_is_the_normal_one_where_weights_are_light(world):
    truth = world.true_value
    logs = [
        {key: log[key] for key in ("reward", "pscore", "target_prob")}
        for log in (world.log(2000, np.random.default_rng(20_000 + repetition)) for repetition in range(100))
    ]
    normal = coverage_and_width(logs, truth)
    likely = coverage_and_width(logs, truth, interval="likelihood")
    for name in ("ips", "snips", "dr"):
        assert likely[name][0] >= 0.90, (name, likely[name])
        assert abs(likely[name][1] / normal[name][1] - 1) < 0.05, (name, likely[name], normal[name])
    rng = np.random.default_rng(3)
    reward = (rng.random(5000) < 0.3).astype(float)
    one = np.ones(5000)
    both = (
        ips(reward=reward, pscore=one, target_prob=one),
        ips(reward=reward, pscore=one, target_prob=one, interval="likelihood"),
    )
    width = both[0].ci_high - both[0].ci_low
    assert abs(both[1].ci_low - both[0].ci_low) < 0.02 * width and abs(both[1].ci_high - both[0].ci_high) < 0.02 * width
    assert both[1].interval == "likelihood" and both[1].value == both[0].value


def test_the_likelihood_interval_needs_importance_weights():
    with pytest.raises(ValueError, match="interval: likelihood is not available for dm"):
        dm(q_target=[0.1, 0.2, 0.3], interval="likelihood")
    with pytest.raises(ValueError, match="interval: must be one of normal, likelihood, bootstrap"):
        ips(reward=[1, 0], pscore=[0.5, 0.5], target_prob=[1, 0], interval="exact")


def test_a_large_log_searches_both_ends_of_the_likelihood_interval_at_once_to_the_same_interval(monkeypatch):
    rng = np.random.default_rng(11)
    n = 2 * estimators.THREADED_FROM
    pscore = rng.choice([0.05, 0.3, 0.9], size=n)
    log = {"reward": (rng.random(n) < 0.2).astype(float), "pscore": pscore, "target_prob": rng.random(n)}
    q = {"q_logged": rng.random(n) * 0.3, "q_target": rng.random(n) * 0.3}
    threaded = [f(**log, interval="likelihood") for f in (ips, snips)] + [dr(**log, **q, interval="likelihood")]
    monkeypatch.setattr(estimators, "THREADED_FROM", n + 1)
    alone = [f(**log, interval="likelihood") for f in (ips, snips)] + [dr(**log, **q, interval="likelihood")]
    assert [(e.ci_low, e.ci_high) for e in threaded] == [(e.ci_low, e.ci_high) for e in alone]
    assert all(e.ci_low < e.value < e.ci_high for e in threaded)
