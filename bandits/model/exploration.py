"""Exploration over VW scores: epsilon-greedy or SquareCB, per decision and per slot of a row.

VW's ``--cb_adf`` returns a cost estimate per action; Marquee draws from an explicit distribution
over those estimates so that every logged propensity is the exact probability of the pick.

Epsilon-greedy with uniform tie-breaking: of ``k`` actions, the ``m`` that share the lowest cost
each get ``(1 - epsilon) / m + epsilon / k``, every other ``epsilon / k``. Ties are common (an
untrained model, new titles with no learned weights) and breaking them uniformly, rather than by
catalog order, keeps a cold catalog from always showing its first titles.

Epsilon-greedy's rate may decay as the model learns (``Exploration.decaying``): a fixed share of
random draws keeps costing the same however well the model has learned, and a rate falling like
``n ** (-1/3)`` is the schedule under which epsilon-greedy's regret grows as ``T ** (2/3)``.

SquareCB (Foster and Rakhlin, 2020; VW's ``--squarecb``) explores in proportion to how much worse
an action looks: of ``k`` actions, one whose estimated cost exceeds the lowest by ``gap`` gets
``1 / (k + gamma * gap)`` and the lowest-cost actions share the rest. ``gamma`` grows with what the
model has learned (``gamma_scale * n ** gamma_exponent`` after ``n`` learned examples; VW's defaults
are 10 and 0.5), so exploration starts uniform and narrows as the estimates earn trust, and an action
that looks nearly as good as the best keeps being tried while a hopeless one is left alone.

Either rule may first raise each action's estimate by how little the model has tried it (``bonus``,
``optimistic``): an action the serving model learned ``n`` times, with an estimated reward ``r``,
counts as ``r + bonus * sqrt(r' (1 - r') / (n + 1))`` where ``r'`` is ``r`` kept within
``[BONUS_FLOOR, 1 - BONUS_FLOOR]``. The term is the standard error of a rate of ``r`` measured ``n + 1``
times, so the bonus goes where the model is unsure: to actions seldom shown, and, among those, to
the ones that may pay rather than those estimated at nearly nothing, which need few tries to rule
out. The counts come with the model version (``bandits.model.tried``), so the distribution is still
a function of the version and the features, and every probability exact. Rewards are taken to lie
in ``[0, 1]`` (a click or a play worth 1); other estimates are held to that range for the bonus.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from bandits.vw import features


@dataclass(slots=True)
class Pick:
    """One draw: the index chosen among the offered actions, its probability, and whether it explored.

    Not frozen, though nothing changes a pick once made: a row makes some thirty, and a frozen
    dataclass costs twice as much to build (1.1 us against 0.5 us a pick).
    """

    index: int
    probability: float
    greedy_index: int  # the pick itself when it is one of the best, else the first of the best
    offered: tuple[int, ...] | None = None  # in a row: the actions drawn from, when fewer than all left
    # The deterministic greedy choice: the last (highest index) of the lowest-cost actions offered. A
    # tie so never names the first action offered, the baseline (bandits.evaluate.apprentice): a model with no
    # preference does not count as agreeing with it.
    lead: int = -1

    @property
    def explored(self) -> bool:
        """Whether the pick is not one of the lowest-cost actions."""
        return self.index != self.greedy_index


def lead_of(costs: Sequence[float] | np.ndarray) -> int:
    """Return the deterministic greedy choice: the last of the lowest-cost actions (see ``Pick.lead``)."""
    values = np.asarray(costs, dtype=float)
    return int(np.flatnonzero(values == values.min())[-1])


def epsilon_greedy_pmf(costs: Sequence[float] | np.ndarray, epsilon: float) -> np.ndarray:
    """Return the epsilon-greedy distribution over actions (ties for the lowest cost share the greedy mass)."""
    k = len(costs)
    if k == 0:
        raise ValueError("costs is empty")
    values = np.asarray(costs, dtype=float)
    best = values == values.min()
    pmf = np.full(k, epsilon / k)
    pmf[best] += (1.0 - epsilon) / int(best.sum())
    return pmf


def all_finite(values: Sequence[float]) -> bool:
    """Whether every value is a finite number.

    A sum of finite numbers is finite unless it overflows, and any infinity or NaN makes it not: one
    pass in C for the common case, the exact check only when the sum is not finite.
    """
    return math.isfinite(sum(values)) or all(math.isfinite(value) for value in values)


def _check_finite(costs: Sequence[float]) -> None:
    if not all_finite(costs):
        raise ValueError("costs must be finite numbers")


def uniforms(rng: np.random.Generator, count: int) -> list[float]:
    """Draw ``count`` uniform numbers in [0, 1) at once: one call into NumPy for a whole row's draws
    instead of two a slot (each call costs 0.5 to 1.4 us; the row's batch 1.3 us)."""
    return rng.random(count).tolist()


def _index(u: float, k: int) -> int:
    """Return ``floor(u * k)`` for a uniform ``u`` in [0, 1): each of ``0 .. k-1`` with probability ``1/k``
    to within ``k * 2**-53`` (``u`` is drawn on a grid of 2**53 points; ``min`` guards the product
    rounding up to ``k``)."""
    return min(int(u * k), k - 1)


def _draw(best: list[int], others_and_best: list[int], epsilon: float, explore: float, among: float) -> Pick:
    """Draw among ``others_and_best`` (all actions offered), the ``best`` ones favoured, with two uniforms:
    ``explore`` decides whether the draw is uniform over all, ``among`` which action it takes."""
    k, m = len(others_and_best), len(best)
    if explore < epsilon:
        index = others_and_best[_index(among, k)]
    else:
        index = best[_index(among, m)] if m > 1 else best[0]
    is_best = index in best
    probability = epsilon / k + ((1.0 - epsilon) / m if is_best else 0.0)
    return Pick(index=index, probability=probability, greedy_index=index if is_best else best[0], lead=best[-1])


def epsilon_greedy(
    costs: Sequence[float],
    epsilon: float,
    rng: np.random.Generator,
    *,
    trial: Sequence[int] = (),
    trial_share: float = 0.0,
) -> Pick:
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
        explore, among = uniforms(rng, 2)
        return _draw(best, actions, epsilon, explore, among)
    on_trial, explore, among = uniforms(rng, 3)
    if on_trial < trial_share:
        index = trial[_index(among, len(trial))]
    else:
        index = _draw(best, actions, epsilon, explore, among).index
    greedy_mass = epsilon / k + ((1.0 - epsilon) / len(best) if index in best else 0.0)
    probability = (1.0 - trial_share) * greedy_mass + (trial_share / len(trial) if index in trial else 0.0)
    return Pick(index=index, probability=probability, greedy_index=index if index in best else best[0], lead=best[-1])


Allowed = Callable[[Sequence[int], Sequence[int]], Sequence[int]]
"""A row's restriction: given the picks so far and the actions left (in that order), the actions the
next slot may draw from; a non-empty subset of those left. It must depend on nothing else, so that the
draw's probability, computed over the subset, is the exact conditional probability of the pick."""


def _offered(allowed: Allowed | None, picks: Sequence[Pick], left: list[int]) -> tuple[list[int], bool]:
    """Return the actions this slot draws from (in ``left``'s order) and whether they are fewer than ``left``."""
    if allowed is None:
        return left, False
    keep = set(allowed([pick.index for pick in picks], left))
    offered = [index for index in left if index in keep]
    if not offered:
        raise ValueError("a row restriction offered no action")
    return offered, len(offered) < len(left)


def epsilon_greedy_row(
    costs: Sequence[float],
    slots: int,
    epsilon: float,
    rng: np.random.Generator,
    *,
    allowed: Allowed | None = None,
    trial: Sequence[int] = (),
    trial_share: float = 0.0,
) -> list[Pick]:
    """Fill ``slots`` positions without repeats, each slot epsilon-greedy over the actions left.

    Each ``Pick.index`` indexes ``costs``; its probability is the exact conditional probability of
    that pick given the picks of the earlier slots, computed over the actions that slot offered: all
    those left, or the subset ``allowed`` returns (then recorded in ``Pick.offered``). Actions on
    ``trial`` get an extra ``trial_share`` of each slot's draw among those the slot offers, as in
    ``epsilon_greedy``, when it offers some but not only those.
    """
    on_trial = set(trial) if trial_share > 0.0 else set()
    if slots > len(costs):
        raise ValueError(f"slots ({slots}) is more than the actions offered ({len(costs)})")
    _check_finite(costs)
    values = list(costs)
    order = sorted(range(len(values)), key=values.__getitem__)  # cheapest first; stable for ties
    picks: list[Pick] = []
    drawn = uniforms(rng, 3 * slots if on_trial else 2 * slots)  # each slot's own, in slot order
    for slot in range(slots):
        offered, restricted = _offered(allowed, picks, order)
        low = values[offered[0]]
        best = []
        for index in offered:
            if values[index] != low:
                break
            best.append(index)
        trial_here = [index for index in offered if index in on_trial] if on_trial else []
        if on_trial:
            explore, among, trial_draw = drawn[3 * slot : 3 * slot + 3]
        else:
            explore, among = drawn[2 * slot], drawn[2 * slot + 1]
        if trial_here and len(trial_here) < len(offered):
            if trial_draw < trial_share:
                index = trial_here[_index(among, len(trial_here))]
            else:
                index = _draw(best, offered, epsilon, explore, among).index
            greedy_mass = epsilon / len(offered) + ((1.0 - epsilon) / len(best) if index in best else 0.0)
            probability = (1.0 - trial_share) * greedy_mass + (
                trial_share / len(trial_here) if index in on_trial else 0.0
            )
            pick = Pick(
                index=index, probability=probability, greedy_index=index if index in best else best[0], lead=best[-1]
            )
        else:
            pick = _draw(best, offered, epsilon, explore, among)
        if restricted:
            pick = replace(pick, offered=tuple(sorted(offered)))
        order.remove(pick.index)
        picks.append(pick)
    return picks


def event_rng(event_id: str) -> np.random.Generator:
    """The exploration randomness of a decision whose client chose its event id: the same id, the same draws.

    Given the same model and candidates, a decision is then reproducible from its id (as in Azure
    Personalizer), while distinct ids draw independently, so every logged probability stays exact.
    """
    digest = hashlib.blake2b(event_id.encode("utf-8"), digest_size=16, person=b"marquee-explore").digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


# ---------------------------------------------------------------- SquareCB and the exploration rule

EPSILON_GREEDY = "epsilon-greedy"
SQUARECB = "squarecb"
RULES = (EPSILON_GREEDY, SQUARECB)


def squarecb_pmf(costs: Sequence[float] | np.ndarray, gamma: float) -> np.ndarray:
    """Return SquareCB's distribution: ``1 / (k + gamma * gap)`` off the best, the rest shared by the best."""
    k = len(costs)
    if k == 0:
        raise ValueError("costs is empty")
    values = np.asarray(costs, dtype=float)
    gaps = values - values.min()
    best = gaps == 0.0
    pmf = 1.0 / (k + gamma * gaps)
    pmf[best] = 0.0
    pmf[best] = (1.0 - pmf.sum()) / int(best.sum())
    return pmf


def _sample(pmf: np.ndarray, rng: np.random.Generator) -> int:
    cumulative = np.cumsum(pmf)
    return min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(pmf) - 1)


BONUS_FLOOR = 0.01  # the least estimated reward the bonus counts with: an unseen action's is not 0


# Below this many actions the bonus is computed on Python floats, at and above it on arrays: NumPy's
# fixed cost a call outweighs its speed for an artwork's few (5 artworks: 2.8 us against 9.6 us; 40
# titles: 11.7 us on arrays against 19.6 us). The arithmetic is the same, in the same order, so
# either way gives the same numbers to the last bit.
ARRAY_FROM = 16


def optimistic(costs: Sequence[float], tried: Sequence[int], bonus: float) -> list[float]:
    """Return the costs with each action's reward raised by ``bonus`` times its standard error (see the module)."""
    if len(tried) != len(costs):
        raise ValueError("tried must give one count per action")
    if len(costs) < ARRAY_FROM:
        raised = []
        for cost, count in zip(costs, tried):
            reward = features.reward_of(float(cost))
            rate = min(max(reward, BONUS_FLOOR), 1.0 - BONUS_FLOOR)
            raised.append(features.cost_of(reward + bonus * math.sqrt(rate * (1.0 - rate) / (count + 1.0))))
        return raised
    rewards = features.rewards_of(np.asarray(costs, dtype=float))
    rates = np.clip(rewards, BONUS_FLOOR, 1.0 - BONUS_FLOOR)
    on_arrays: list[float] = features.costs_of(
        rewards + bonus * np.sqrt(rates * (1.0 - rates) / (np.asarray(tried, dtype=float) + 1.0))
    ).tolist()
    return on_arrays


def judged_by(picks: Sequence[Pick], costs: Sequence[float]) -> list[Pick]:
    """Return picks drawn over raised costs with their greedy choice, lead and ``explored`` judged by ``costs``.

    ``costs`` are the model's own estimates, before a bonus raised them: a pick the bonus made is one
    the model did not think best, so it counts as explored, and the greedy choice logged for it is the
    model's (the lowest index of the lowest estimates, the lead the highest), as without a bonus. The
    picks are a row's in slot order (or one pick); each slot's choice is among what it offered.
    """
    if any(pick.offered is not None for pick in picks):
        return _judged_by_offered(picks, costs)
    if len(picks) == 1:  # one draw over all the actions (an artwork's): the lowest estimate, first and last
        pick, values = picks[0], list(costs)
        low = min(values)
        greedy = pick.index if values[pick.index] == low else values.index(low)
        lead = len(values) - 1 - values[::-1].index(low)
        return [Pick(index=pick.index, probability=pick.probability, greedy_index=greedy, lead=lead)]
    # Every slot offered all the actions left: walk the actions once, cheapest first (ties in index
    # order), skipping the ones earlier slots took.
    order = sorted(range(len(costs)), key=costs.__getitem__)
    taken: set[int] = set()
    judged = []
    start = 0
    for pick in picks:
        while order[start] in taken:
            start += 1
        low = costs[order[start]]
        greedy = lead = order[start]
        for index in order[start + 1 :]:
            if costs[index] != low:
                break
            if index not in taken:
                lead = index
        if costs[pick.index] == low:
            greedy = pick.index
        judged.append(Pick(index=pick.index, probability=pick.probability, greedy_index=greedy, lead=lead))
        taken.add(pick.index)
    return judged


def _judged_by_offered(picks: Sequence[Pick], costs: Sequence[float]) -> list[Pick]:
    left = list(range(len(costs)))
    judged = []
    for pick in picks:
        offered = list(pick.offered) if pick.offered is not None else left
        low = min(costs[i] for i in offered)
        best = [i for i in offered if costs[i] == low]
        greedy = pick.index if pick.index in best else min(best)
        judged.append(
            Pick(
                index=pick.index,
                probability=pick.probability,
                greedy_index=greedy,
                offered=pick.offered,
                lead=max(best),
            )
        )
        left = [i for i in left if i != pick.index]
    return judged


def with_baseline(pmf: np.ndarray, baseline: float) -> np.ndarray:
    """Mix a distribution with the baseline (the first action offered): ``baseline`` of the draws go to it."""
    if baseline <= 0.0:
        return pmf
    mixed = (1.0 - baseline) * pmf
    mixed[0] += baseline
    return mixed


@dataclass(frozen=True)
class Exploration:
    """How one policy explores at one model version: the rule and its parameter at that version.

    ``epsilon`` is used by epsilon-greedy; ``gamma`` by SquareCB (see ``Exploration.squarecb``);
    ``bonus`` by either, on the costs before the draw (``scored``).
    ``baseline`` is the share of draws that serve the baseline, the first action offered, whatever
    the model thinks (1 in the apprentice and logging-only learning modes: the caller's own choice is
    always served); every probability stays exact, and each pick still names the model's greedy choice.
    Trial shares (``pick``, ``row``) apply only without a baseline share.
    """

    rule: str = EPSILON_GREEDY
    epsilon: float = 0.1
    gamma: float = 0.0
    baseline: float = 0.0
    bonus: float = 0.0

    def scored(self, costs: Sequence[float], tried: Sequence[int] | None) -> list[float]:
        """Return the costs the draw uses: raised by the bonus (``optimistic``) when there is one and counts to
        rest it on, else as given. A model version without counts (``bandits.model.tried``) explores without it."""
        if self.bonus <= 0.0 or tried is None:
            return list(costs)
        return optimistic(costs, tried, self.bonus)

    @classmethod
    def decaying(cls, *, epsilon: float, decay_after: float, floor: float, examples_learned: int) -> Exploration:
        """Epsilon-greedy whose rate shrinks as the model learns: ``epsilon`` until ``decay_after`` examples,
        then ``epsilon * (decay_after / n) ** (1/3)`` after ``n``, never below ``floor`` (nor above ``epsilon``).

        ``decay_after`` 0 keeps ``epsilon`` fixed. The rate is a function of the serving model version's
        ``examples_learned``, so the probability of every pick stays exact and reproducible.
        """
        if decay_after <= 0 or examples_learned <= decay_after:
            return cls(epsilon=epsilon)
        return cls(epsilon=min(epsilon, max(floor, epsilon * (decay_after / examples_learned) ** (1.0 / 3.0))))

    @classmethod
    def squarecb(cls, *, gamma_scale: float, gamma_exponent: float, examples_learned: int) -> Exploration:
        """SquareCB at a model that has learned ``examples_learned`` examples (uniform before the first)."""
        return cls(
            rule=SQUARECB, gamma=gamma_scale * float(examples_learned) ** gamma_exponent if examples_learned else 0.0
        )

    @classmethod
    def configured(
        cls,
        *,
        rule: str,
        epsilon: float,
        decay_after: float,
        floor: float,
        gamma_scale: float,
        gamma_exponent: float,
        bonus: float,
        examples_learned: int,
    ) -> Exploration:
        """The exploration a policy's (or a candidate's) settings give at a model that learned ``examples_learned``."""
        if rule == SQUARECB:
            found = cls.squarecb(
                gamma_scale=gamma_scale, gamma_exponent=gamma_exponent, examples_learned=examples_learned
            )
        else:
            found = cls.decaying(
                epsilon=epsilon, decay_after=decay_after, floor=floor, examples_learned=examples_learned
            )
        return replace(found, bonus=bonus)

    def pmf(self, costs: Sequence[float] | np.ndarray) -> np.ndarray:
        """Return the distribution over actions of the given costs."""
        if self.rule == SQUARECB:
            return with_baseline(squarecb_pmf(costs, self.gamma), self.baseline)
        return with_baseline(epsilon_greedy_pmf(costs, self.epsilon), self.baseline)

    def pick(
        self, costs: Sequence[float], rng: np.random.Generator, *, trial: Sequence[int] = (), trial_share: float = 0.0
    ) -> Pick:
        """Draw one action; actions on ``trial`` get an extra ``trial_share`` of draws (see ``epsilon_greedy``)."""
        if self.rule == EPSILON_GREEDY and self.baseline <= 0.0:
            return epsilon_greedy(costs, self.epsilon, rng, trial=trial, trial_share=trial_share)
        _check_finite(costs)
        pmf = self.pmf(costs)
        if trial and len(trial) < len(costs) and trial_share > 0.0 and self.baseline <= 0.0:
            extra = np.zeros(len(costs))
            extra[list(trial)] = 1.0 / len(trial)
            pmf = (1.0 - trial_share) * pmf + trial_share * extra
        index = _sample(pmf, rng)
        return self._pick(costs, index, float(pmf[index]))

    def row(
        self,
        costs: Sequence[float],
        slots: int,
        rng: np.random.Generator,
        *,
        allowed: Allowed | None = None,
        trial: Sequence[int] = (),
        trial_share: float = 0.0,
    ) -> list[Pick]:
        """Fill ``slots`` positions without repeats, each slot's probability exact given the earlier ones.

        ``allowed`` restricts each slot's draw to a subset of the actions left (see ``Allowed``).
        Actions on ``trial`` get an extra ``trial_share`` of each slot's draw, as in ``pick``, among
        the trial actions that slot offers (when it offers some, but not only those).
        """
        if self.rule == EPSILON_GREEDY and self.baseline <= 0.0:
            return epsilon_greedy_row(
                costs, slots, self.epsilon, rng, allowed=allowed, trial=trial, trial_share=trial_share
            )
        if slots > len(costs):
            raise ValueError(f"slots ({slots}) is more than the actions offered ({len(costs)})")
        _check_finite(costs)
        values = np.asarray(costs, dtype=float)
        on_trial = set(trial) if trial_share > 0.0 and self.baseline <= 0.0 else set()
        left = list(range(len(values)))  # in the order given: each slot's baseline is the first one left
        picks: list[Pick] = []
        for _ in range(slots):
            offered, restricted = _offered(allowed, picks, left)
            offered_costs = values[offered]
            pmf = self.pmf(offered_costs)
            trial_at = [j for j, index in enumerate(offered) if index in on_trial]
            if trial_at and len(trial_at) < len(offered):
                extra = np.zeros(len(offered))
                extra[trial_at] = 1.0 / len(trial_at)
                pmf = (1.0 - trial_share) * pmf + trial_share * extra
            chosen = _sample(pmf, rng)
            pick = self._pick(offered_costs.tolist(), chosen, float(pmf[chosen]))
            picks.append(
                Pick(
                    index=offered[pick.index],
                    probability=pick.probability,
                    greedy_index=offered[pick.greedy_index],
                    lead=offered[pick.lead],
                    offered=tuple(offered) if restricted else None,
                )
            )
            left.remove(offered[chosen])
        return picks

    @staticmethod
    def _pick(costs: Sequence[float], index: int, probability: float) -> Pick:
        low = min(costs)
        first = next(i for i, cost in enumerate(costs) if cost == low)
        return Pick(
            index=index,
            probability=probability,
            greedy_index=index if costs[index] == low else first,
            lead=lead_of(costs),
        )
