"""``POST /v1/rank``, rewards, activation, and reading a logged event."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from bandits.decide.row import RowDecision, decide_row
from bandits.log.eventlog import activate, get_event, new_event_id, record_reward
from bandits.model import tastes
from bandits.model.exploration import event_rng
from bandits.model.policy import parse_reward_values
from bandits.reports import explain
from bandits.vw import features
from service import metrics
from service.config import deployment
from service.db import get_db
from service.errors import Conflict, Invalid
from service.runtime import ServingState, rank_and_log, serving_state
from service.schemas import RankRequest, RewardRequest, check_id, parse

bp = Blueprint("decisions", __name__)

MAX_IDEMPOTENCY_KEY = 200
ARTWORK_URL_WIDTH = 342  # the rendition rank responses point to (WebP, 342 px wide)


def _slot_json(slot: Any, *, explanation: dict[str, Any] | None) -> dict[str, Any]:
    body = {
        "position": slot.position,
        "title_id": slot.title_id,
        "artwork_id": slot.artwork_id,
        "artwork_url": f"/v1/artworks/{slot.artwork_id}/image?w={ARTWORK_URL_WIDTH}",
        "title_probability": slot.title_prob,
        "artwork_probability": slot.artwork_prob,
    }
    if explanation is not None:
        body["explanation"] = explanation
    return body


def _explanations(decision: RowDecision, models: Any) -> list[dict[str, Any]]:
    """Per slot: whether each pick explored, the greedy choice, and what drove the estimate
    (``bandits.reports.explain``)."""
    titles, artwork = explain.explainer_for(models["titles"]), explain.explainer_for(models["artwork"])
    lines = decision.candidate_block.lines
    found = []
    for slot in decision.slots:
        title_line = lines[slot.title_index]
        artwork_line = slot.artwork_block.lines[slot.artwork_index]
        title_tried = models["titles"].tried_of([title_line])
        artwork_tried = models["artwork"].tried_of([artwork_line])
        found.append(
            {
                "title": {
                    "explored": slot.title_explored,
                    "times_learned": None if title_tried is None else title_tried[0],
                    "greedy_title_id": slot.greedy_title_id,
                    **titles.explain(decision.shared_line, title_line),
                },
                "artwork": {
                    "explored": slot.artwork_explored,
                    "times_learned": None if artwork_tried is None else artwork_tried[0],
                    "greedy_artwork_id": slot.greedy_artwork_id,
                    **artwork.explain(features.artwork_shared(decision.shared_line, title_line), artwork_line),
                },
            }
        )
    return found


@bp.post("/v1/rank")
def rank() -> ResponseReturnValue:
    """Choose titles and artwork for a row, log the decision, return it."""
    body: RankRequest = parse(RankRequest, request)
    config = current_app.config
    if body.slots > config["MAX_SLOTS"]:
        raise Invalid(f"slots: at most {config['MAX_SLOTS']} slots per row")
    for field, ids in (("candidates", body.candidates or []), ("exclude", body.exclude)):
        for index, title_id in enumerate(ids):
            check_id(title_id, what=f"{field}[{index}]")
    event_id = body.event_id or new_event_id()
    viewer_tastes = tastes.of_viewer(get_db(), body.user.id) if body.user.id and config["TASTE_CLASSES"] else None

    def decide(state: ServingState) -> RowDecision:
        snapshot, models, policies = state.snapshot, state.models, state.policies
        assert snapshot is not None
        diversity = policies["titles"].diversity
        if body.diversity is not None:
            diversity = diversity.override(body.diversity.model_dump(exclude_unset=True))
        if not snapshot.titles:
            raise Conflict("the catalog has no active title with an active artwork; add titles and artworks first")
        return decide_row(
            snapshot=snapshot,
            titles_model=models["titles"],
            artwork_model=models["artwork"],
            titles_exploration=policies["titles"].explorer(models["titles"].examples_learned),
            artwork_exploration=policies["artwork"].explorer(models["artwork"].examples_learned),
            user_id=body.user.id,
            user_features=body.user.features,
            slots=body.slots,
            candidates=body.candidates,
            exclude=body.exclude,
            rng=event_rng(body.event_id) if body.event_id else state.rng,
            trial_seconds=float(config["ARTWORK_TRIAL_HOURS"]) * 3600,
            trial_share=float(config["ARTWORK_TRIAL_SHARE"]),
            diversity=diversity,
            title_trial_seconds=float(config["TITLE_TRIAL_HOURS"]) * 3600,
            title_trial_share=float(config["TITLE_TRIAL_SHARE"]),
            tastes=viewer_tastes,
        )

    decision, state = rank_and_log(
        get_db(),
        deployment(),
        decide=decide,
        decision_of=lambda made: made,
        event_id=event_id,
        user_id=body.user.id,
        context=body.user.features,
        deferred=body.defer_activation,
    )
    models = state.models
    response: dict[str, Any] = {
        "event_id": event_id,
        "model_versions": dict(decision.model_versions),
        "deferred": body.defer_activation,
        "slots": [
            _slot_json(slot, explanation=explanation)
            for slot, explanation in zip(
                decision.slots, _explanations(decision, models) if body.explain else [None] * len(decision.slots)
            )
        ],
    }
    if decision.diversity is not None:
        response["diversity"] = dict(decision.diversity)
    if decision.unavailable:
        response["unavailable_candidates"] = list(decision.unavailable)
    return jsonify(response)


def idempotency_key() -> str | None:
    """The request's ``Idempotency-Key`` header, checked (None when absent)."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise Invalid(f"Idempotency-Key: must be 1-{MAX_IDEMPOTENCY_KEY} characters")
    return key


@bp.post("/v1/events/<event_id>/reward")
def reward(event_id: str) -> ResponseReturnValue:
    """Report a reward for one title of an event."""
    check_id(event_id, what="event_id")
    body: RewardRequest = parse(RewardRequest, request)
    key = idempotency_key()
    config = current_app.config
    db = get_db()
    policies = serving_state(config["DATABASE"]).current_policies(db, deployment())
    if body.type is not None:
        value = parse_reward_values(config["REWARD_VALUES"])[body.type]  # for display; each policy values it itself
    else:
        assert body.value is not None
        value = body.value
    receipt = record_reward(
        db,
        event_id=event_id,
        title_id=body.title_id,
        value=value,
        reward_type=body.type,
        idempotency_key=key,
        policies=policies,
    )
    metrics.reward(receipt.value, reward_type=body.type, credited=bool(receipt.credited), replayed=receipt.replayed)
    return jsonify(receipt.as_dict()), (200 if receipt.replayed else 201)


@bp.post("/v1/events/<event_id>/activate")
def activate_event(event_id: str) -> ResponseReturnValue:
    """Mark a deferred event as shown; its reward windows start now."""
    check_id(event_id, what="event_id")
    config = current_app.config
    db = get_db()
    policies = serving_state(config["DATABASE"]).current_policies(db, deployment())
    return jsonify(activate(db, event_id=event_id, policies=policies))


@bp.get("/v1/events/<event_id>")
def show_event(event_id: str) -> ResponseReturnValue:
    """Return a logged event: context, slots, probabilities, rewards and learning state."""
    check_id(event_id, what="event_id")
    return jsonify(get_event(get_db(), event_id))


@bp.get("/v1/tastes")
def show_tastes() -> ResponseReturnValue:
    """Return the taste classes' setting and latest fits; with ``user_id``, also that viewer's classes."""
    config = current_app.config
    found: dict[str, Any] = {"classes": int(config["TASTE_CLASSES"]), "fits": tastes.fits(get_db())}
    user_id = request.args.get("user_id")
    if user_id is not None:
        if not user_id or len(user_id) > 128:
            raise Invalid("user_id: a viewer id of 1 to 128 characters")
        found["viewer"] = {"user_id": user_id, "classes": tastes.of_viewer(get_db(), user_id)}
    return jsonify(found)
