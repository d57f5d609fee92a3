"""Decisions over inline actions, as Azure Personalizer made them: a context, a list of actions, one pick.

The ``actions`` policy is a VW ``--cb_adf`` cost regressor like the others, with Marquee's own
exploration and the same log, reward windows, learner and offline evaluation. A decision is logged as
an event of kind ``actions`` with one impression: the chosen action, its exact probability, and the
VW lines of every action offered.

Features arrive as Personalizer sent them: a list of JSON objects per context or action, nested
objects naming their features by path (``{"user": {"profileType": "Anon"}}`` is ``user.profileType``).
Context features go to namespace ``C`` of the shared line, action features and the action id to
namespace ``X``; the default interactions cross the two (``-q CX``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandits.decide.row import RowDecision, SlotDecision
from bandits.errors import Invalid
from bandits.model.exploration import Exploration, Pick, judged_by
from bandits.model.policy import ACTIONS, ServingModel
from bandits.vw import features
from bandits.vw.blocks import Block

CONTEXT = "C"
ACTION = "X"
MAX_ACTIONS = 50  # as Personalizer
MAX_SLOTS = 10
MAX_DEPTH = 4
MAX_FEATURES = 200
MAX_NAME = 128
MAX_STRING = 256


class InlineError(Invalid, ValueError):
    """A context or an action is not usable; the message names where."""


def flatten(objects: Sequence[Any], *, where: str) -> dict[str, Any]:
    """Return the features of a list of feature objects, nested keys joined by ``.``."""
    found: dict[str, Any] = {}

    def visit(value: Any, path: str, place: str, depth: int) -> None:
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise InlineError(f"{place}: features nest at most {MAX_DEPTH} objects deep")
            for key, inner in value.items():
                if not isinstance(key, str) or not key:
                    raise InlineError(f"{place}: feature names must be non-empty strings")
                visit(inner, f"{path}.{key}" if path else key, f"{place}.{key}", depth + 1)
            return
        if not path or len(path) > MAX_NAME:
            raise InlineError(f"{place}: a feature needs a name of 1-{MAX_NAME} characters")
        if path in found:
            raise InlineError(f"{place}: feature {path!r} is given twice")
        if value is None:
            return
        if isinstance(value, bool):
            found[path] = value
        elif isinstance(value, (int, float)):
            if not math.isfinite(float(value)) or abs(float(value)) > 1e12:
                raise InlineError(f"{place}: numbers must be finite and at most 1e12 in size")
            found[path] = float(value)
        elif isinstance(value, str):
            if len(value) > MAX_STRING:
                raise InlineError(f"{place}: strings are at most {MAX_STRING} characters")
            found[path] = value
        elif isinstance(value, list):
            if not all(isinstance(item, str) and len(item) <= MAX_STRING for item in value) or len(value) > 100:
                raise InlineError(
                    f"{place}: a list feature holds at most 100 strings of at most {MAX_STRING} characters"
                )
            found[path] = list(value)
        else:
            raise InlineError(f"{place}: a feature is a string, a number, a boolean, a list of strings or an object")
        if len(found) > MAX_FEATURES:
            raise InlineError(f"{where}: at most {MAX_FEATURES} features")

    if not isinstance(objects, list):
        raise InlineError(f"{where}: must be a list of feature objects")
    for index, item in enumerate(objects):
        if not isinstance(item, dict):
            raise InlineError(f"{where}[{index}]: must be an object of features")
        visit(item, "", f"{where}[{index}]", 1)
    return found


def context_line(context: Mapping[str, Any]) -> str:
    """Return the shared VW line of a context."""
    return "shared " + features.namespace(CONTEXT, features.feature_tokens(context))


def action_line(action_id: str, action_features: Mapping[str, Any]) -> str:
    """Return the VW line of an action: its id and its features."""
    return features.namespace(ACTION, [f"id={features.escape(action_id)}", *features.feature_tokens(action_features)])


def _picked(
    position: int,
    ids: Sequence[str],
    offered: list[int],
    pick: Pick,
    costs: Sequence[float],
    *,
    block: Block,
    logged_offered: tuple[int, ...] | None,
    shared_line: str = "",
    slot_id: str = "",
) -> SlotDecision:
    """Return the decision to log of a pick among ``offered`` (indices into ``ids``; ``pick`` indexes ``offered``)."""
    return SlotDecision(
        position=position,
        title_id=ids[offered[pick.index]],
        title_index=offered[pick.index],
        title_prob=pick.probability,
        title_offered=logged_offered,
        title_explored=pick.explored,
        artwork_id="",
        artwork_ids=(),
        artwork_block=block,
        artwork_index=0,
        artwork_prob=1.0,
        artwork_explored=False,
        title_estimate=features.reward_of(float(costs[pick.index])),
        greedy_title_id=ids[offered[pick.greedy_index]],
        artwork_estimate=0.0,
        greedy_artwork_id="",
        title_lead=ids[offered[pick.lead]],
        shared_line=shared_line,
        slot_id=slot_id,
    )


@dataclass(frozen=True)
class InlineRanking:
    """Every action with its probability, the chosen one first, and the decision to log."""

    ranking: list[tuple[str, float]]
    reward_action_id: str
    decision: RowDecision


def rank(
    *,
    model: ServingModel,
    exploration: Exploration,
    context: Mapping[str, Any],
    actions: Sequence[tuple[str, Mapping[str, Any]]],
    excluded: Sequence[str],
    rng: np.random.Generator,
) -> InlineRanking:
    """Pick one of the actions not excluded; rank the rest by their probability, excluded ones last at 0."""
    skipped = set(excluded)
    offered = [(action_id, found) for action_id, found in actions if action_id not in skipped]
    if not offered:
        raise InlineError("excludedActions: every action is excluded; at least one must be left to rank")
    ids = [action_id for action_id, _ in offered]
    lines = [action_line(action_id, found) for action_id, found in offered]
    shared = context_line(context)
    costs = model.costs(shared, lines)
    scored = model.scored(exploration, costs, lines)
    pick = exploration.pick(scored, rng)
    if exploration.bonus > 0.0:
        pick = judged_by([pick], costs)[0]
    pmf = exploration.pmf(scored)
    order = sorted(range(len(ids)), key=lambda i: (i != pick.index, -pmf[i], costs[i], i))
    ranking = [(ids[i], float(pmf[i])) for i in order]
    ranking += [(action_id, 0.0) for action_id, _ in actions if action_id in skipped]
    block = Block.of(lines, ids)
    slot = _picked(0, ids, list(range(len(ids))), pick, costs, block=block, logged_offered=None)
    decision = RowDecision(
        shared_line=shared,
        candidate_ids=tuple(ids),
        candidate_block=block,
        slots=(slot,),
        unavailable=(),
        model_versions={ACTIONS: model.version},
    )
    return InlineRanking(ranking=ranking, reward_action_id=ids[pick.index], decision=decision)


# ---------------------------------------------------------------- multi-slot


@dataclass(frozen=True)
class Slot:
    """One slot of a multi-slot ranking: its id, features, the actions it may not show, and its baseline."""

    id: str
    features: Mapping[str, Any]
    excluded: tuple[str, ...]
    baseline: str


def slot_context(context: Mapping[str, Any], slot: Slot) -> dict[str, Any]:
    """Return a slot's context: the request's features, the slot's id as ``slot``, its features as ``slot.<name>``."""
    return {**context, "slot": slot.id, **{f"slot.{name}": value for name, value in slot.features.items()}}


@dataclass(frozen=True)
class SlotRanking:
    """The action chosen for every slot, in slot order, and the decision to log."""

    chosen: list[tuple[str, str]]  # (slot id, action id)
    decision: RowDecision


def rank_slots(
    *,
    model: ServingModel,
    exploration: Exploration,
    context: Mapping[str, Any],
    actions: Sequence[tuple[str, Mapping[str, Any]]],
    slots: Sequence[Slot],
    rng: np.random.Generator,
) -> SlotRanking:
    """Fill the slots in order, each with a different action, each pick one exact-probability decision.

    Each slot draws from the actions neither excluded from it nor placed in an earlier slot, its
    baseline first when it is among them (else the first in request order), with its own shared
    line: the context plus the slot's id and features (``slot_context``). The logged probability of
    each pick is its probability given the earlier slots' picks, so every slot is learned and
    evaluated as a decision of its own. With a baseline share (apprentice), each slot serves its
    baseline.
    """
    ids = [action_id for action_id, _ in actions]
    lines = [action_line(action_id, found) for action_id, found in actions]
    block = Block.of(lines, ids)
    position_of = {action_id: index for index, action_id in enumerate(ids)}
    used: set[int] = set()
    decided: list[SlotDecision] = []
    for position, slot in enumerate(slots):
        skipped = set(slot.excluded)
        offered = [i for i, action_id in enumerate(ids) if i not in used and action_id not in skipped]
        if not offered:
            raise InlineError(
                f"slots[{position}]: no action is left for slot {slot.id!r} (the others are excluded "
                "from it or shown in earlier slots)"
            )
        baseline = position_of[slot.baseline]
        if baseline in offered:
            offered.remove(baseline)
            offered.insert(0, baseline)
        shared = context_line(slot_context(context, slot))
        offered_lines = [lines[i] for i in offered]
        costs = model.costs(shared, offered_lines)
        pick = exploration.pick(model.scored(exploration, costs, offered_lines), rng)
        if exploration.bonus > 0.0:
            pick = judged_by([pick], costs)[0]
        used.add(offered[pick.index])
        decided.append(
            _picked(
                position,
                ids,
                offered,
                pick,
                costs,
                block=block,
                logged_offered=tuple(offered),
                shared_line=shared,
                slot_id=slot.id,
            )
        )
    decision = RowDecision(
        shared_line=context_line(context),
        candidate_ids=tuple(ids),
        candidate_block=block,
        slots=tuple(decided),
        unavailable=(),
        model_versions={ACTIONS: model.version},
    )
    return SlotRanking(chosen=[(slot.id, ids[d.title_index]) for slot, d in zip(slots, decided)], decision=decision)
