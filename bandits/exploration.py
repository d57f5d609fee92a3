"""Exploration over VW scores: epsilon-greedy per decision and per slot of a row.

VW's ``--cb_adf`` returns a cost estimate per action; Marquee draws from an explicit distribution
over those estimates so that every logged propensity is the exact probability of the pick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pick:
    """One draw: the index chosen among the offered actions, its probability, and whether it explored."""

    index: int
    probability: float
    greedy_index: int

    @property
    def explored(self) -> bool:
        """Whether the pick differs from the greedy choice."""
        return self.index != self.greedy_index


def epsilon_greedy_pmf(costs: np.ndarray, epsilon: float) -> tuple[np.ndarray, int]:
    """Return the epsilon-greedy distribution over actions and the greedy index.

    The greedy action (lowest cost; the first of equals) gets ``1 - epsilon + epsilon / k``, every
    other ``epsilon / k``, for ``k = len(costs)``.
    """
    k = len(costs)
    if k == 0:
        raise ValueError("costs is empty")
    greedy = int(np.argmin(costs))
    pmf = np.full(k, epsilon / k)
    pmf[greedy] += 1.0 - epsilon
    return pmf, greedy


def epsilon_greedy(costs: np.ndarray, epsilon: float, rng: np.random.Generator) -> Pick:
    """Draw one action epsilon-greedily."""
    pmf, greedy = epsilon_greedy_pmf(costs, epsilon)
    k = len(costs)
    if k > 1 and rng.random() < epsilon:
        index = int(rng.integers(k))
    else:
        index = greedy
    return Pick(index=index, probability=float(pmf[index]), greedy_index=greedy)


def epsilon_greedy_row(costs: np.ndarray, slots: int, epsilon: float, rng: np.random.Generator) -> list[Pick]:
    """Fill ``slots`` positions without repeats, each slot epsilon-greedy over the actions left.

    Each ``Pick.index`` indexes ``costs``; its probability is the exact conditional probability of
    that pick given the picks of the earlier slots (the uniform part is over the actions left).
    """
    if slots > len(costs):
        raise ValueError(f"slots ({slots}) is more than the actions offered ({len(costs)})")
    order = np.argsort(costs, kind="stable")  # greedy order; ties keep the catalog order
    taken = np.zeros(len(costs), dtype=bool)
    picks: list[Pick] = []
    cursor = 0  # position in `order` of the best action not yet taken
    for slot in range(slots):
        while taken[order[cursor]]:
            cursor += 1
        greedy = int(order[cursor])
        left = len(costs) - slot
        if left > 1 and rng.random() < epsilon:
            remaining = np.flatnonzero(~taken)
            index = int(remaining[rng.integers(left)])
        else:
            index = greedy
        probability = epsilon / left + (1.0 - epsilon if index == greedy else 0.0)
        taken[index] = True
        picks.append(Pick(index=index, probability=probability, greedy_index=greedy))
    return picks
