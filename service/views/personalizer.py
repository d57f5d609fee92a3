"""Azure Personalizer's REST API on Marquee: rank, reward and activate with Personalizer's shapes.

A Personalizer client points its endpoint at Marquee and keeps its requests, responses, status codes
and field names; ``Ocp-Apim-Subscription-Key`` is accepted as an API key (``service.auth``). The
decisions are made by the ``actions`` policy over the request's inline actions (``bandits.inline``)
and share Marquee's log, reward windows, learner and evaluation. Bad input is a 400 with code
``BadArgument``, as Personalizer answered.
"""

from __future__ import annotations

import uuid
from typing import Any, Optional

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from bandits import inline
from bandits.eventlog import activate, log_decision, record_reward
from bandits.exploration import event_rng
from bandits.policy import ACTIONS
from service import metrics
from service.db import get_db
from service.errors import Conflict, Invalid, NotFound, error_body
from service.runtime import serving_state
from service.schemas import check_id, parse
from service.views.decisions import idempotency_key

bp = Blueprint("personalizer", __name__, url_prefix="/personalizer/v1.0")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Action(_Body):
    id: str = Field(min_length=1, max_length=128, description="the action's id, unique in the request")
    features: list[dict[str, Any]] = Field(default_factory=list, max_length=50)


class RankRequest(_Body):
    contextFeatures: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    actions: list[Action] = Field(min_length=1, max_length=inline.MAX_ACTIONS)
    excludedActions: list[str] = Field(default_factory=list, max_length=inline.MAX_ACTIONS)
    eventId: Optional[str] = Field(default=None, max_length=128)
    deferActivation: bool = False


class RewardRequest(_Body):
    value: float = Field(ge=-1.0, le=1.0)


@bp.errorhandler(Invalid)
def _bad_argument(exc: Invalid) -> ResponseReturnValue:
    return jsonify(error_body("BadArgument", exc.message, exc.details)), 400


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> ResponseReturnValue:
    return jsonify(error_body("NotFound", exc.message, exc.details)), 404


@bp.errorhandler(Conflict)
def _conflict(exc: Conflict) -> ResponseReturnValue:
    return jsonify(error_body("Conflict", exc.message, exc.details)), 409


def _event_id(event_id: str) -> str:
    check_id(event_id, what="eventId")
    return event_id


@bp.post("/rank")
def rank() -> ResponseReturnValue:
    """Rank the request's actions for its context; the first is the one to show (``rewardActionId``)."""
    body: RankRequest = parse(RankRequest, request)
    ids = [action.id for action in body.actions]
    if len(set(ids)) != len(ids):
        duplicate = next(action_id for action_id in ids if ids.count(action_id) > 1)
        raise Invalid(f"actions: the id {duplicate!r} is given twice; action ids must be unique")
    unknown = [action_id for action_id in body.excludedActions if action_id not in set(ids)]
    if unknown:
        raise Invalid(f"excludedActions: {unknown[0]!r} is not one of the actions")
    event_id = _event_id(body.eventId) if body.eventId else str(uuid.uuid4())
    try:
        context = inline.flatten(body.contextFeatures, where="contextFeatures")
        actions = [(action.id, inline.flatten(action.features, where=f"actions[{index}].features"))
                   for index, action in enumerate(body.actions)]
    except inline.InlineError as exc:
        raise Invalid(str(exc)) from None
    config = current_app.config
    db = get_db()
    state = serving_state(config["DATABASE"])
    state.refresh(db, config, wait_for_models=False)
    model, settings = state.models[ACTIONS], state.policies[ACTIONS]
    try:
        ranked = inline.rank(model=model, exploration=settings.explorer(model.examples_learned), context=context,
                             actions=actions, excluded=body.excludedActions,
                             rng=event_rng(event_id) if body.eventId else state.rng)
    except inline.InlineError as exc:
        raise Invalid(str(exc)) from None
    log_decision(db, database=config["DATABASE"], event_id=event_id, decision=ranked.decision, user_id=None,
                 context=context, deferred=body.deferActivation, policies=state.policies, kind=ACTIONS,
                 learned_by=(ACTIONS,))
    metrics.decision(ranked.decision.slots)
    return jsonify({"ranking": [{"id": action_id, "probability": probability} for action_id, probability in ranked.ranking],
                    "eventId": event_id, "rewardActionId": ranked.reward_action_id}), 201


def _chosen_action(db: Any, event_id: str) -> str:
    row = db.execute("SELECT i.title_id, e.kind FROM events e JOIN impressions i ON i.event_seq = e.seq "
                     "WHERE e.id = ? AND i.position = 0", [event_id]).fetchone()
    if row is None or row[1] != ACTIONS:
        raise NotFound(f"eventId: no ranking has the event id {event_id!r}")
    return str(row[0])


@bp.post("/events/<event_id>/reward")
def reward(event_id: str) -> ResponseReturnValue:
    """Report the reward of the action the ranking chose (``rewardActionId``)."""
    _event_id(event_id)
    body: RewardRequest = parse(RewardRequest, request)
    config = current_app.config
    db = get_db()
    action_id = _chosen_action(db, event_id)
    policies = serving_state(config["DATABASE"]).current_policies(db, config)
    receipt = record_reward(db, event_id=event_id, title_id=action_id, value=float(body.value),
                            idempotency_key=idempotency_key(), policies=policies)
    metrics.reward(receipt.value, reward_type=None, credited=bool(receipt.credited), replayed=receipt.replayed)
    return Response(status=204)


@bp.post("/events/<event_id>/activate")
def activate_event(event_id: str) -> ResponseReturnValue:
    """Mark a ranking made with ``deferActivation`` as shown: it is learned from then on."""
    _event_id(event_id)
    config = current_app.config
    db = get_db()
    _chosen_action(db, event_id)
    activate(db, event_id=event_id, policies=serving_state(config["DATABASE"]).current_policies(db, config))
    return Response(status=204)

