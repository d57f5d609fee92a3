"""Exploration over VW scores: epsilon-greedy per decision and per slot of a row.

VW's ``--cb_adf`` returns a cost estimate per action; Marquee draws from an explicit distribution
over those estimates so that every logged propensity is the exact probability of the pick.

Epsilon-greedy with uniform tie-breaking: of ``k`` actions, the ``m`` that share the lowest cost
each get ``(1 - epsilon) / m + epsilon / k``, every other ``epsilon / k``. Ties are common (an
untrained model, new titles with no learned weights) and breaking them uniformly, rather than by
catalog order, keeps a cold catalog from always showing its first titles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Pick:
    """One draw: the index chosen among the offered actions, its probability, and whether it explored."""

    index: int
    probability: float
    greedy_index: int  # the pick itself when it is one of the best, else the first of the best

    @property
    def explored(self) -> bool:
        """Whether the pick is not one of the lowest-cost actions."""
        return self.index != self.greedy_index


def epsilon_greedy_pmf(costs: Sequence[float], epsilon: float) -> np.ndarray:
    """Return the epsilon-greedy distribution over actions (ties for the lowest cost share the greedy mass)."""
    k = len(costs)
    if k == 0:
        raise ValueError("costs is empty")
    values = np.asarray(costs, dtype=float)
    best = values == values.min()
    pmf = np.full(k, epsilon / k)
    pmf[best] += (1.0 - epsilon) / int(best.sum())
    return pmf


def _check_finite(costs: Sequence[float]) -> None:
    if not all(math.isfinite(cost) for cost in costs):
        raise ValueError("costs must be finite numbers")


def _draw(best: list[int], others_and_best: list[int], epsilon: float, rng: np.random.Generator) -> Pick:
    """Draw among ``others_and_best`` (all actions offered), the ``best`` ones favoured."""
    k, m = len(others_and_best), len(best)
    if rng.random() < epsilon:
        index = others_and_best[int(rng.integers(k))]
    else:
        index = best[int(rng.integers(m))] if m > 1 else best[0]
    is_best = index in best
    probability = epsilon / k + ((1.0 - epsilon) / m if is_best else 0.0)
    return Pick(index=index, probability=probability, greedy_index=index if is_best else best[0])


def epsilon_greedy(costs: Sequence[float], epsilon: float, rng: np.random.Generator, *,
                   trial: Sequence[int] = (), trial_share: float = 0.0) -> Pick:
    """Draw one action epsilon-greedily, giving actions on ``trial`` an extra ``trial_share`` of draws.

    With ``trial`` a non-empty strict subset of the actions, a draw is, with probability
    ``trial_share``, uniform over the trial actions, and otherwise epsilon-greedy over all; the
    pick's probability is ``(1 - trial_share) * eg(a) + trial_share * [a on trial] / len(trial)``.
    This gives new artwork a fair number of impressions however the model scores it, with the
    probability still exact.
    """
    k = len(costs)
    if k == 0:
        raise ValueError("costs is empty")
    _check_finite(costs)
    low = min(costs)
    best = [index for index, cost in enumerate(costs) if cost == low]
    actions = list(range(k))
    if not trial or len(trial) >= k or trial_share <= 0.0:
        return _draw(best, actions, epsilon, rng)
    if rng.random() < trial_share:
        index = trial[int(rng.integers(len(trial)))]
    else:
        index = _draw(best, actions, epsilon, rng).index
    greedy_mass = epsilon / k + ((1.0 - epsilon) / len(best) if index in best else 0.0)
    probability = (1.0 - trial_share) * greedy_mass + (trial_share / len(trial) if index in trial else 0.0)
    return Pick(index=index, probability=probability, greedy_index=index if index in best else best[0])


def epsilon_greedy_row(costs: Sequence[float], slots: int, epsilon: float, rng: np.random.Generator) -> list[Pick]:
    """Fill ``slots`` positions without repeats, each slot epsilon-greedy over the actions left.

    Each ``Pick.index`` indexes ``costs``; its probability is the exact conditional probability of
    that pick given the picks of the earlier slots (computed over the actions left at that slot).
    """
    if slots > len(costs):
        raise ValueError(f"slots ({slots}) is more than the actions offered ({len(costs)})")
    _check_finite(costs)
    values = list(costs)
    order = sorted(range(len(values)), key=values.__getitem__)  # cheapest first; stable for ties
    picks: list[Pick] = []
    for _ in range(slots):
        low = values[order[0]]
        best = []
        for index in order:
            if values[index] != low:
                break
            best.append(index)
        pick = _draw(best, order, epsilon, rng)
        order.remove(pick.index)
        picks.append(pick)
    return picks
