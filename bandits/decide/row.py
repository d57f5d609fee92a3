"""One rank decision: titles for the slots of a row, then one artwork per chosen title."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from assets.catalog import CatalogSnapshot
from bandits.errors import Invalid
from bandits.model.diversity import Diversity
from bandits.model.exploration import Exploration, judged_by
from bandits.model.policy import ServingModel
from bandits.vw import features
from bandits.vw.blocks import Block


class NotEnoughCandidates(Invalid):
    """Fewer servable candidate titles than slots."""


class SlotDecision(NamedTuple):
    """The title and artwork picks of one slot, with exact probabilities and the features as used.

    A named tuple rather than a frozen dataclass: a row makes ten, and a frozen dataclass of twenty
    fields costs 3.4 us to build.
    """

    position: int
    title_id: str
    title_index: int  # index into the row's candidate list
    title_prob: float
    title_offered: tuple[int, ...] | None  # the candidates this slot drew from, when fewer than all left
    title_explored: bool
    artwork_id: str
    artwork_ids: tuple[str, ...]
    artwork_block: Block  # the artwork lines offered, as used
    artwork_index: int
    artwork_prob: float
    artwork_explored: bool
    title_estimate: float  # the model's expected reward of the chosen title
    greedy_title_id: str
    artwork_estimate: float
    greedy_artwork_id: str
    # The deterministic greedy choices (the last of the lowest-cost actions offered), logged so that
    # the greedy model can be evaluated against the baseline (bandits.evaluate.apprentice).
    title_lead: str = ""
    artwork_lead: str = ""
    # A multi-slot ranking over inline actions (bandits.decide.inline.rank_slots): the slot's own shared line
    # (the context plus the slot's features) and its id.
    shared_line: str = ""
    slot_id: str = ""


@dataclass(frozen=True)
class RowDecision:
    """A whole row: the shared viewer line, the candidate titles and their lines, and the slots."""

    shared_line: str
    candidate_ids: tuple[str, ...]
    candidate_block: Block  # the candidate title lines, as used
    slots: tuple[SlotDecision, ...]
    unavailable: tuple[str, ...]
    model_versions: Mapping[str, int]
    diversity: Mapping[str, Any] | None = None  # the constraint and whether the row met it, when one applied


def candidate_titles(
    snapshot: CatalogSnapshot, *, candidates: Sequence[str] | None, exclude: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Return (servable candidate ids in request or catalog order, requested ids that are not servable)."""
    excluded = set(exclude)
    if candidates is None:
        return [tid for tid in snapshot.order if tid not in excluded], []
    chosen: list[str] = []
    unavailable: list[str] = []
    for tid in dict.fromkeys(candidates):
        if tid in excluded:
            continue
        (chosen if tid in snapshot.titles else unavailable).append(tid)
    return chosen, unavailable


def decide_row(
    *,
    snapshot: CatalogSnapshot,
    titles_model: ServingModel,
    artwork_model: ServingModel,
    titles_exploration: Exploration,
    artwork_exploration: Exploration,
    user_id: str | None,
    user_features: Mapping[str, Any],
    slots: int,
    candidates: Sequence[str] | None,
    exclude: Sequence[str],
    rng: np.random.Generator,
    trial_seconds: float = 0.0,
    trial_share: float = 0.0,
    now: float | None = None,
    diversity: Diversity | None = None,
    title_trial_seconds: float = 0.0,
    title_trial_share: float = 0.0,
    tastes: Mapping[str, float] | None = None,
) -> RowDecision:
    """Choose titles for ``slots`` positions (no repeats) and an artwork for each; one VW call per policy step.

    Artworks uploaded less than ``trial_seconds`` ago, next to older ones of the same title, get an
    extra ``trial_share`` of that title's artwork draws (``bandits.model.exploration.Exploration.pick``).
    Titles added less than ``title_trial_seconds`` ago likewise get an extra ``title_trial_share``
    of each slot's title draw, among those the slot offers. A ``diversity`` constraint narrows each
    slot's title draw (``bandits.model.diversity``). ``tastes`` are the viewer's taste classes
    (``bandits.model.tastes.of_viewer``), part of the shared line both policies see and the log keeps.
    """
    now = time.time() if now is None else now
    ids, unavailable = candidate_titles(snapshot, candidates=candidates, exclude=exclude)
    if len(ids) < slots:
        raise NotEnoughCandidates(
            f"slots: {slots} requested but only {len(ids)} candidate titles are servable"
            + (f" (not servable: {', '.join(unavailable[:20])})" if unavailable else "")
        )
    shared = features.viewer_shared(user_id=user_id, features=user_features, tastes=tastes)
    if candidates is None and not exclude:
        block = snapshot.all_titles_block
    else:
        block = Block.of([snapshot.titles[tid].action_line for tid in ids], ids)
    lines = block.lines
    # The slot position is a shared, uncrossed feature: it shifts every title's cost equally, so one
    # prediction ranks the whole row and each slot's greedy pick is the best title not yet placed.
    costs = titles_model.costs(shared, lines)
    restriction = None
    if diversity is not None and diversity.active:
        restriction = diversity.restriction([snapshot.titles[tid].genres for tid in ids], slots)
    title_trial: list[int] = []
    if title_trial_share > 0.0:
        title_cutoff = now - title_trial_seconds
        title_trial = [i for i, tid in enumerate(ids) if snapshot.titles[tid].created_at > title_cutoff]
    picks = titles_exploration.row(
        titles_model.scored(titles_exploration, costs, lines),
        slots,
        rng,
        allowed=restriction,
        trial=title_trial,
        trial_share=title_trial_share,
    )
    if titles_exploration.bonus > 0.0:  # a pick the bonus made was not the model's best: it explored
        picks = judged_by(picks, costs)
    decided: list[SlotDecision] = []
    for position, pick in enumerate(picks):
        title = snapshot.titles[ids[pick.index]]
        art_costs = artwork_model.costs(features.artwork_shared(shared, lines[pick.index]), title.artwork_lines)
        trial: list[int] = []
        if trial_share > 0.0 and len(title.artwork_ids) > 1:
            cutoff = now - trial_seconds
            trial = [i for i, created in enumerate(title.artwork_created) if created > cutoff]
        art = artwork_exploration.pick(
            artwork_model.scored(artwork_exploration, art_costs, title.artwork_lines),
            rng,
            trial=trial,
            trial_share=trial_share,
        )
        if artwork_exploration.bonus > 0.0:
            art = judged_by([art], art_costs)[0]
        decided.append(
            SlotDecision(
                position=position,
                title_id=title.id,
                title_index=pick.index,
                title_prob=pick.probability,
                title_offered=pick.offered,
                title_explored=pick.explored,
                artwork_id=title.artwork_ids[art.index],
                artwork_ids=title.artwork_ids,
                artwork_block=title.artwork_block,
                artwork_index=art.index,
                artwork_prob=art.probability,
                artwork_explored=art.explored,
                title_estimate=features.reward_of(float(costs[pick.index])),
                greedy_title_id=ids[pick.greedy_index],
                artwork_estimate=features.reward_of(float(art_costs[art.index])),
                greedy_artwork_id=title.artwork_ids[art.greedy_index],
                title_lead=ids[pick.lead],
                artwork_lead=title.artwork_ids[art.lead],
            )
        )
    return RowDecision(
        shared_line=shared,
        candidate_ids=tuple(ids),
        candidate_block=block,
        slots=tuple(decided),
        unavailable=tuple(unavailable),
        model_versions={"titles": titles_model.version, "artwork": artwork_model.version},
        diversity=restriction.report([pick.index for pick in picks]) if restriction is not None else None,
    )
