"""Logged probabilities equal the true selection probabilities (checked by repeated sampling)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from bandits.exploration import epsilon_greedy, epsilon_greedy_pmf, epsilon_greedy_row


def test_pmf_shape_and_ties():
    assert epsilon_greedy_pmf(np.array([0.3, -0.2, 0.1]), 0.3) == pytest.approx([0.1, 0.8, 0.1])
    assert epsilon_greedy_pmf(np.array([0.0, 0.0, 0.5, 0.0]), 0.2) == pytest.approx([0.05 + 0.8 / 3] * 2 + [0.05] + [0.05 + 0.8 / 3])
    assert epsilon_greedy_pmf(np.array([5.0]), 0.5) == pytest.approx([1.0])
    with pytest.raises(ValueError):
        epsilon_greedy_pmf(np.array([]), 0.1)


def test_single_draws_match_their_logged_probability():
    rng = np.random.default_rng(3)
    costs = np.array([0.0, -1.0, 0.5, 0.2])
    draws = [epsilon_greedy(costs, 0.4, rng) for _ in range(40_000)]
    counts = Counter(d.index for d in draws)
    for draw in draws[:50]:
        assert counts[draw.index] / len(draws) == pytest.approx(draw.probability, abs=0.01)
    assert all(d.explored == (d.index != 1) for d in draws[:200])


def test_tied_draws_match_their_logged_probability():
    rng = np.random.default_rng(4)
    costs = np.array([0.0, -1.0, -1.0, 0.2])
    draws = [epsilon_greedy(costs, 0.3, rng) for _ in range(40_000)]
    counts = Counter(d.index for d in draws)
    pmf = epsilon_greedy_pmf(costs, 0.3)
    for index in range(4):
        assert counts[index] / len(draws) == pytest.approx(pmf[index], abs=0.01)
    assert all(d.probability == pytest.approx(pmf[2]) for d in draws if d.index == 2)


@pytest.mark.parametrize("costs", [[0.4, -0.3, 0.1, 0.0, 0.2], [0.0, 0.0, 0.1, 0.0, -0.2]])
def test_row_probabilities_are_exact_conditional_probabilities(costs):
    rng = np.random.default_rng(5)
    costs = np.array(costs)
    n = 60_000
    rows = [epsilon_greedy_row(costs, 3, 0.3, rng) for _ in range(n)]
    # The probability of a whole row is the product of its slots' logged probabilities.
    counts = Counter(tuple(p.index for p in row) for row in rows)
    logged = {tuple(p.index for p in row): float(np.prod([p.probability for p in row])) for row in rows}
    assert sum(logged.values()) == pytest.approx(1.0)  # every possible row seen, and they sum to one
    for key, probability in logged.items():
        assert counts[key] / n == pytest.approx(probability, abs=4 * np.sqrt(probability / n) + 1e-4)
    for row in rows[:500]:
        assert len({p.index for p in row}) == 3


def test_row_without_exploration_is_the_greedy_order():
    rng = np.random.default_rng(0)
    row = epsilon_greedy_row(np.array([0.3, -0.1, 0.2, -0.5]), 4, 0.0, rng)
    assert [p.index for p in row] == [3, 1, 2, 0]
    assert all(p.probability == 1.0 for p in row)
    with pytest.raises(ValueError):
        epsilon_greedy_row(np.array([0.0]), 2, 0.1, rng)


def test_trial_share_is_exact_by_sampling():
    rng = np.random.default_rng(8)
    costs = [-1.0, 0.0, 0.0, 0.5]
    trial, share, epsilon = [2, 3], 0.25, 0.1
    draws = [epsilon_greedy(costs, epsilon, rng, trial=trial, trial_share=share) for _ in range(60_000)]
    counts = Counter(d.index for d in draws)
    eg = epsilon_greedy_pmf(np.array(costs), epsilon)
    for index in range(4):
        expected = (1 - share) * eg[index] + (share / len(trial) if index in trial else 0.0)
        assert counts[index] / len(draws) == pytest.approx(expected, abs=0.006)
        logged = {round(d.probability, 12) for d in draws if d.index == index}
        assert logged == {round(expected, 12)}


def test_no_trial_when_every_action_is_new_or_the_share_is_zero():
    rng = np.random.default_rng(2)
    costs = [-1.0, 0.0, 0.0]
    assert epsilon_greedy(costs, 0.0, rng, trial=[0, 1, 2], trial_share=0.5).probability == 1.0
    assert epsilon_greedy(costs, 0.0, rng, trial=[1], trial_share=0.0).probability == 1.0
