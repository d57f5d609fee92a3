"""Logged probabilities equal the true selection probabilities (checked by repeated sampling)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import vowpal_wabbit_next as vw

from bandits.model.exploration import Exploration, epsilon_greedy, epsilon_greedy_pmf, epsilon_greedy_row, squarecb_pmf


def test_pmf_shape_and_ties():
    assert epsilon_greedy_pmf(np.array([0.3, -0.2, 0.1]), 0.3) == pytest.approx([0.1, 0.8, 0.1])
    assert epsilon_greedy_pmf(np.array([0.0, 0.0, 0.5, 0.0]), 0.2) == pytest.approx(
        [0.05 + 0.8 / 3] * 2 + [0.05] + [0.05 + 0.8 / 3]
    )
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


def test_a_rows_trial_share_is_exact_by_sampling():
    """A row with actions on trial draws three numbers a slot; each whole row still comes as often as
    the product of its slots' logged probabilities."""
    rng = np.random.default_rng(9)
    costs = [-1.0, 0.0, 0.0, 0.5, 0.2]
    n = 60_000
    rows = [epsilon_greedy_row(costs, 2, 0.2, rng, trial=[3, 4], trial_share=0.3) for _ in range(n)]
    counts = Counter(tuple(p.index for p in row) for row in rows)
    logged = {tuple(p.index for p in row): float(np.prod([p.probability for p in row])) for row in rows}
    assert sum(logged.values()) == pytest.approx(1.0)
    for key, probability in logged.items():
        assert counts[key] / n == pytest.approx(probability, abs=4 * np.sqrt(probability / n) + 1e-4)
    # The trial actions come first in a fifth of the rows or more, where epsilon alone would give 8 %.
    assert sum(count for key, count in counts.items() if key[0] in (3, 4)) / n > 0.2


def test_no_trial_when_every_action_is_new_or_the_share_is_zero():
    rng = np.random.default_rng(2)
    costs = [-1.0, 0.0, 0.0]
    assert epsilon_greedy(costs, 0.0, rng, trial=[0, 1, 2], trial_share=0.5).probability == 1.0
    assert epsilon_greedy(costs, 0.0, rng, trial=[1], trial_share=0.0).probability == 1.0


# ---------------------------------------------------------------- SquareCB


def test_squarecb_pmf_follows_the_rule():
    costs = [0.0, 0.1, 0.5, 0.0]
    pmf = squarecb_pmf(costs, 20.0)
    assert pmf[1] == pytest.approx(1 / (4 + 2.0)) and pmf[2] == pytest.approx(1 / (4 + 10.0))
    assert pmf[0] == pmf[3] == pytest.approx((1 - pmf[1] - pmf[2]) / 2)  # the tied best share the rest
    assert squarecb_pmf(costs, 0.0) == pytest.approx([0.25] * 4)  # gamma 0: uniform
    assert squarecb_pmf([3.0], 100.0) == pytest.approx([1.0])
    with pytest.raises(ValueError):
        squarecb_pmf([], 1.0)


def test_squarecb_gamma_grows_with_what_the_model_learned():
    assert Exploration.squarecb(gamma_scale=10, gamma_exponent=0.5, examples_learned=0).gamma == 0.0
    assert Exploration.squarecb(gamma_scale=10, gamma_exponent=0.5, examples_learned=400).gamma == pytest.approx(200.0)
    costs = [-0.5, -0.45, -0.2, 0.0]
    explored = [
        1 - Exploration.squarecb(gamma_scale=10, gamma_exponent=0.5, examples_learned=n).pmf(costs)[0]
        for n in (1, 100, 10_000)
    ]
    assert explored[0] > explored[1] > explored[2]
    late = Exploration.squarecb(gamma_scale=10, gamma_exponent=0.5, examples_learned=10_000).pmf(costs)
    assert late[1] > 5 * late[3]  # a near-miss keeps being tried; a clear loser is left alone


def test_squarecb_has_the_form_of_vw_squarecb():
    """VW's ``--squarecb`` probabilities fit ``1 / (k + gamma * gap)`` with one gamma over every action.

    The gaps are those of a ``--cb_adf`` model taught the same example. Its scale differs from
    Marquee's (VW's gamma here is not 10 * 1 ** 0.5 for every such example), but the shape is the rule's.
    """
    explore = vw.Workspace(["--cb_explore_adf", "--squarecb", "--quiet"])
    regress = vw.Workspace(["--cb_adf", "--quiet"])
    labelled = ["shared |U u=1", "|A a=0 f:0.2", "0:-1:0.25 |A a=1 f:0.7", "|A a=2 f:0.1", "|A a=3 f:0.9"]
    plain = ["shared |U u=1", "|A a=0 f:0.3", "|A a=1 f:0.6", "|A a=2 f:0.4", "|A a=3 f:0.8"]
    for workspace in (explore, regress):
        parser = vw.TextFormatParser(workspace)
        workspace.learn_one([parser.parse_line(line) for line in labelled])
    theirs = dict(explore.predict_one([vw.TextFormatParser(explore).parse_line(line) for line in plain]))
    costs = [0.0] * 4
    for index, score in regress.predict_one([vw.TextFormatParser(regress).parse_line(line) for line in plain]):
        costs[index] = score
    assert len(set(costs)) == 4  # no ties: every action's share depends on its own gap
    best = int(np.argmin(costs))
    gammas = [(1 / theirs[i] - 4) / (costs[i] - costs[best]) for i in range(4) if i != best]
    assert max(gammas) == pytest.approx(min(gammas), rel=1e-4) and gammas[0] > 0
    ours = squarecb_pmf(costs, gammas[0])
    assert ours == pytest.approx([theirs[i] for i in range(4)], abs=1e-6)


def test_squarecb_draws_match_their_logged_probability_with_and_without_trial():
    rng = np.random.default_rng(8)
    costs = [0.0, -0.3, -0.25, 0.4]
    rule = Exploration.squarecb(gamma_scale=10, gamma_exponent=0.5, examples_learned=9)
    for trial, share in (((), 0.0), ((3,), 0.2)):
        draws = [rule.pick(costs, rng, trial=trial, trial_share=share) for _ in range(40_000)]
        counts = Counter(d.index for d in draws)
        seen = {d.index: d.probability for d in draws}
        assert set(seen) == {0, 1, 2, 3}
        assert sum(seen.values()) == pytest.approx(1.0)
        for index, probability in seen.items():
            assert counts[index] / len(draws) == pytest.approx(probability, abs=0.01)
        assert all(d.explored == (d.index != 1) for d in draws[:200])


def test_squarecb_row_probabilities_are_exact_conditionals():
    rng = np.random.default_rng(4)
    costs = [0.1, -0.2, 0.0, 0.3]
    rule = Exploration.squarecb(gamma_scale=10, gamma_exponent=0.5, examples_learned=4)
    n = 40_000
    rows = [rule.row(costs, 2, rng) for _ in range(n)]
    counts = Counter((r[0].index, r[1].index) for r in rows)
    joint = {(r[0].index, r[1].index): r[0].probability * r[1].probability for r in rows}
    assert sum(joint.values()) == pytest.approx(1.0)
    for pair, probability in joint.items():
        assert pair[0] != pair[1]
        assert counts[pair] / n == pytest.approx(probability, abs=0.01)
    with pytest.raises(ValueError):
        rule.row(costs, 5, rng)
    with pytest.raises(ValueError):
        rule.row([0.0, float("nan")], 1, rng)
