"""Azure Personalizer's REST API on Marquee: rank, multi-slot rank, reward and activate with Personalizer's shapes.

A Personalizer client points its endpoint at Marquee and keeps its requests, responses, status codes
and field names; ``Ocp-Apim-Subscription-Key`` is accepted as an API key (``service.auth``). The
decisions are made by the ``actions`` policy over the request's inline actions (``bandits.decide.inline``)
and share Marquee's log, reward windows, learner and evaluation. Bad input is a 400 with code
``BadArgument``, as Personalizer answered.

The API answers at three places (``register``): ``/personalizer/v1.0/...`` (the v1.0 SDK and REST
calls), ``/personalizer/v1.1-preview.1/...`` (the multi-slot REST calls) and
``/personalizer/...?api-version=2022-09-01-preview`` (the ``azure-ai-personalizer`` SDK, whose
administration calls ``service.views.personalizer_admin`` serves).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from bandits import personalizer
from bandits.decide import inline
from bandits.log.eventlog import activate, record_reward, time_ordered_uuid
from bandits.model.exploration import event_rng
from bandits.model.policy import ACTIONS, APPRENTICE, LOGGING_ONLY, ONLINE, change_overrides, load_policy
from bandits.reports import explain
from service import metrics
from service.config import deployment
from service.db import get_db
from service.errors import Conflict, Invalid, MarqueeError, NotFound, error_body
from service.runtime import ServingState, rank_and_log, serving_state
from service.schemas import (
    PersonalizerMultiSlotRankRequest,
    PersonalizerMultiSlotRewardRequest,
    PersonalizerPolicyConfiguration,
    PersonalizerRankRequest,
    PersonalizerRewardRequest,
    PersonalizerServiceConfiguration,
    check_id,
    parse,
)
from service.views.decisions import idempotency_key

V1_PREFIX = "/personalizer/v1.0"
# Personalizer's multi-slot clients call v1.1-preview.1: the whole API answers there too.
PREVIEW_PREFIX = "/personalizer/v1.1-preview.1"
# The 2022-09-01-preview API (the azure-ai-personalizer SDK) names its version in the query, not the path.
REST_PREFIX = "/personalizer"
API_VERSIONS = ("2022-09-01-preview",)
# (blueprint name suffix, URL prefix) of each place the API answers
PLACES = (("", V1_PREFIX), ("_preview", PREVIEW_PREFIX), ("_rest", REST_PREFIX))


# Personalizer's error codes and statuses for Marquee's errors; others render as everywhere else.
PERSONALIZER_ERRORS: dict[type[MarqueeError], tuple[str, int]] = {
    Invalid: ("BadArgument", 400),
    NotFound: ("NotFound", 404),
    Conflict: ("Conflict", 409),
}


def _personalizer_error(exc: MarqueeError) -> ResponseReturnValue:
    code, status = next(found for kind, found in PERSONALIZER_ERRORS.items() if isinstance(exc, kind))
    return jsonify(error_body(code, exc.message, exc.details)), status


def _refused(exc: personalizer.Refused) -> ResponseReturnValue:
    response = jsonify(error_body(exc.code, str(exc)))
    if exc.status == 429:
        response.headers["Retry-After"] = "5"
    return response, exc.status


def _check_api_version() -> None:
    """Under ``/personalizer/`` itself the query names the API version, as Personalizer required."""
    if not (request.blueprint or "").endswith("_rest"):
        return
    version = request.args.get("api-version")
    if version not in API_VERSIONS:
        raise Invalid(
            f"api-version: {'missing' if version is None else repr(version) + ' is not served'}; "
            f"Marquee serves {', '.join(API_VERSIONS)} here (and v1.0 and v1.1-preview.1 in the path)"
        )


def blueprint(name: str, import_name: str) -> Blueprint:
    """Return a blueprint of Personalizer's API: its error shapes and the api-version check of ``/personalizer/``."""
    made = Blueprint(name, import_name)
    for kind in PERSONALIZER_ERRORS:
        made.register_error_handler(kind, _personalizer_error)
    made.register_error_handler(personalizer.Refused, _refused)
    made.before_request(_check_api_version)
    return made


bp = blueprint("personalizer", __name__)


def register(app: Any, *blueprints: Blueprint) -> None:
    """Register ``bp`` and the other Personalizer blueprints at each of ``PLACES``."""
    for made in (bp, *blueprints):
        for suffix, prefix in PLACES:
            app.register_blueprint(made, url_prefix=prefix, name=f"{made.name}{suffix}")


def _event_id(event_id: str) -> str:
    check_id(event_id, what="eventId")
    return event_id


def _actions(
    body: PersonalizerRankRequest | PersonalizerMultiSlotRankRequest,
) -> tuple[str, dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Check a ranking's actions and features; return its event id, context and actions."""
    ids = [action.id for action in body.actions]
    if len(set(ids)) != len(ids):
        duplicate = next(action_id for action_id in ids if ids.count(action_id) > 1)
        raise Invalid(f"actions: the id {duplicate!r} is given twice; action ids must be unique")
    event_id = _event_id(body.eventId) if body.eventId else str(time_ordered_uuid())
    context = inline.flatten(body.contextFeatures, where="contextFeatures")
    actions = [
        (action.id, inline.flatten(action.features, where=f"actions[{index}].features"))
        for index, action in enumerate(body.actions)
    ]
    return event_id, context, actions


def _unknown(action_ids: list[str], known: list[str], *, where: str) -> None:
    names = set(known)
    unknown = [action_id for action_id in action_ids if action_id not in names]
    if unknown:
        raise Invalid(f"{where}: {unknown[0]!r} is not one of the actions")


def _decide(
    body: PersonalizerRankRequest | PersonalizerMultiSlotRankRequest,
    event_id: str,
    context: dict[str, Any],
    decide: Any,
) -> tuple[Any, ServingState]:
    """Rank with the newest actions model and log it before answering; return the ranking and the state."""

    def ranked_by(state: ServingState) -> Any:
        model, settings = state.models[ACTIONS], state.policies[ACTIONS]
        return decide(
            model=model,
            exploration=settings.explorer(model.examples_learned),
            context=context,
            rng=event_rng(event_id) if body.eventId else state.rng,
        )

    return rank_and_log(
        get_db(),
        deployment(),
        decide=ranked_by,
        decision_of=lambda made: made.decision,
        event_id=event_id,
        user_id=None,
        context=context,
        deferred=body.deferActivation,
        kind=ACTIONS,
        learned_by=(ACTIONS,),
    )


@bp.post("/rank")
def rank() -> ResponseReturnValue:
    """Rank the request's actions for its context; the first is the one to show (``rewardActionId``)."""
    body: PersonalizerRankRequest = parse(PersonalizerRankRequest, request)
    event_id, context, actions = _actions(body)
    _unknown(body.excludedActions, [action_id for action_id, _ in actions], where="excludedActions")
    ranked, state = _decide(
        body, event_id, context, functools.partial(inline.rank, actions=actions, excluded=body.excludedActions)
    )
    answer: dict[str, Any] = {
        "ranking": [{"id": action_id, "probability": probability} for action_id, probability in ranked.ranking],
        "eventId": event_id,
        "rewardActionId": ranked.reward_action_id,
    }
    if state.policies[ACTIONS].explain_ranks:
        answer["inferenceExplanation"] = _explanation(state.models[ACTIONS], context, actions, body.excludedActions)
    return jsonify(answer), 201


EXPLAINED_FEATURES = 10  # the features of each action an inference explanation lists, largest first


def _explanation(
    model: Any, context: dict[str, Any], actions: list[tuple[str, dict[str, Any]]], excluded: list[str]
) -> list[dict[str, Any]]:
    """Each ranked action's features with their contributions to its estimated reward (Personalizer's
    ``inferenceExplanation``), from ``bandits.reports.explain``."""
    explainer = explain.explainer_for(model)
    shared = inline.context_line(context)
    found = []
    for action_id, features in actions:
        if action_id in excluded:
            continue
        explained = explainer.explain(shared, inline.action_line(action_id, features), top=EXPLAINED_FEATURES)
        found.append(
            {
                "id": action_id,
                "features": [
                    {"name": item["feature"], "namespace": item["namespace"], "score": item["contribution"]}
                    for item in explained["features"]
                ],
            }
        )
    return found


@bp.post("/multislot/rank")
def multislot_rank() -> ResponseReturnValue:
    """Choose a different action for each slot, in slot order; each slot's pick is a decision of its own."""
    body: PersonalizerMultiSlotRankRequest = parse(PersonalizerMultiSlotRankRequest, request)
    event_id, context, actions = _actions(body)
    ids = [action_id for action_id, _ in actions]
    slot_ids = [slot.id for slot in body.slots]
    if len(set(slot_ids)) != len(slot_ids):
        raise Invalid(
            f"slots: the id {next(s for s in slot_ids if slot_ids.count(s) > 1)!r} is given twice; "
            "slot ids must be unique"
        )
    baselines = [slot.baselineAction for slot in body.slots]
    if len(set(baselines)) != len(baselines):
        raise Invalid("slots: two slots have the same baselineAction; each slot's baseline is a different action")
    slots = []
    for index, slot in enumerate(body.slots):
        _unknown(slot.excludedActions, ids, where=f"slots[{index}].excludedActions")
        _unknown([slot.baselineAction], ids, where=f"slots[{index}].baselineAction")
        if slot.baselineAction in slot.excludedActions:
            raise Invalid(f"slots[{index}].baselineAction: {slot.baselineAction!r} is excluded from the slot")
        allowed = len(set(ids) - set(slot.excludedActions))
        if allowed <= index:  # the earlier slots could take every action this one may show
            raise Invalid(
                f"slots[{index}].excludedActions: {allowed} actions may fill slot {slot.id!r}, and the "
                f"{index} slots before it may take them all; a slot needs more actions than slots before it"
            )
        found = inline.flatten(slot.features, where=f"slots[{index}].features")
        slots.append(
            inline.Slot(id=slot.id, features=found, excluded=tuple(slot.excludedActions), baseline=slot.baselineAction)
        )
    ranked, _ = _decide(body, event_id, context, functools.partial(inline.rank_slots, actions=actions, slots=slots))
    return jsonify(
        {
            "slots": [{"id": slot_id, "rewardActionId": action_id} for slot_id, action_id in ranked.chosen],
            "eventId": event_id,
        }
    ), 201


def _record(db: Any, event_id: str, rewards: list[tuple[str, float]]) -> None:
    config = current_app.config
    policies = serving_state(config["DATABASE"]).current_policies(db, deployment())
    key = idempotency_key()
    for index, (action_id, value) in enumerate(rewards):
        receipt = record_reward(
            db,
            event_id=event_id,
            title_id=action_id,
            value=value,
            idempotency_key=f"{key}#{index}" if key and len(rewards) > 1 else key,
            policies=policies,
        )
        metrics.reward(receipt.value, reward_type=None, credited=bool(receipt.credited), replayed=receipt.replayed)


@bp.post("/events/<event_id>/reward")
def reward(event_id: str) -> ResponseReturnValue:
    """Report the reward of the action the ranking chose (``rewardActionId``)."""
    _event_id(event_id)
    body: PersonalizerRewardRequest = parse(PersonalizerRewardRequest, request)
    db = get_db()
    _record(db, event_id, [(personalizer.shown(db, event_id, multislot=False)[None], float(body.value))])
    return Response(status=204)


@bp.post("/multislot/events/<event_id>/reward")
def multislot_reward(event_id: str) -> ResponseReturnValue:
    """Report rewards per slot (``{"reward": [{"slotId", "value"}]}``); slots left out get none."""
    _event_id(event_id)
    body: PersonalizerMultiSlotRewardRequest = parse(PersonalizerMultiSlotRewardRequest, request)
    db = get_db()
    shown = personalizer.shown(db, event_id, multislot=True)
    for index, item in enumerate(body.reward):
        if item.slotId not in shown:
            raise Invalid(
                f"reward[{index}].slotId: the ranking has no slot {item.slotId!r} "
                f"(slots: {', '.join(str(slot) for slot in shown)})"
            )
    _record(db, event_id, [(shown[item.slotId], float(item.value)) for item in body.reward])
    return Response(status=204)


def _activate(event_id: str, *, multislot: bool) -> ResponseReturnValue:
    _event_id(event_id)
    config = current_app.config
    db = get_db()
    personalizer.shown(db, event_id, multislot=multislot)
    activate(db, event_id=event_id, policies=serving_state(config["DATABASE"]).current_policies(db, deployment()))
    return Response(status=204)


@bp.post("/events/<event_id>/activate")
def activate_event(event_id: str) -> ResponseReturnValue:
    """Mark a ranking made with ``deferActivation`` as shown: it is learned from then on."""
    return _activate(event_id, multislot=False)


@bp.post("/multislot/events/<event_id>/activate")
def multislot_activate(event_id: str) -> ResponseReturnValue:
    """Mark a multi-slot ranking made with ``deferActivation`` as shown."""
    return _activate(event_id, multislot=True)


# ---------------------------------------------------------------- configurations

DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")
# Personalizer's learning modes and the actions policy's (bandits.model.policy.LEARNING_MODES).
LEARNING_MODES = {"Online": ONLINE, "Apprentice": APPRENTICE, "LoggingOnly": LOGGING_ONLY}
# Fields of Personalizer's service configuration that Marquee accepts and does not apply: they name
# Azure's own machinery (log mirroring, scheduled retraining, model export) or deployment-wide settings
# (MARQUEE_RETENTION_DAYS, MARQUEE_AUTO_OPTIMIZE_HOURS); a PUT lists those it was sent in ``notApplied``.
NOT_APPLIED = (
    "modelExportFrequency",
    "logMirrorEnabled",
    "logMirrorSasUri",
    "logRetentionDays",
    "modelRetrainDays",
    "autoOptimizationFrequency",
    "autoOptimizationStartDate",
    "lastConfigurationEditDate",
    "latestApprenticeModeMetrics",
)


def parse_duration(text: str, *, where: str) -> float:
    """Seconds of an ISO 8601 duration of days, hours, minutes and seconds (``PT10M``, ``P1DT2H``, ``PT10M00S``)."""
    match = DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise Invalid(f"{where}: {text!r} is not an ISO 8601 duration such as PT10M or PT30S")
    days, hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: float) -> str:
    """An ISO 8601 duration for a number of seconds, largest units first (``PT10M``, ``PT0.5S``)."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    fraction = seconds - whole
    text = "P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if secs or fraction or not (days or clock):
        clock += f"{secs + fraction:g}S"
    return text + ("T" + clock if clock else "")


def _service_configuration(db: Any) -> dict[str, Any]:
    config = current_app.config
    settings = load_policy(db, deployment(), ACTIONS)
    return {
        "rewardWaitTime": format_duration(settings.reward_wait),
        "defaultReward": settings.default_reward,
        "rewardAggregation": settings.aggregation,
        "explorationPercentage": settings.epsilon,
        "modelExportFrequency": format_duration(float(config["LEARNER_INTERVAL_SECONDS"])),
        "logRetentionDays": int(float(config["RETENTION_DAYS"])) or -1,
        "modelRetrainDays": 0,
        "learningMode": next(name for name, mode in LEARNING_MODES.items() if mode == settings.learning_mode),
        "isAutoOptimizationEnabled": settings.auto_optimize,
        "autoOptimizationFrequency": format_duration(float(config["AUTO_OPTIMIZE_HOURS"]) * 3600.0),
        "isInferenceExplainabilityEnabled": settings.explain_ranks,
        "logMirrorEnabled": False,
        "lastConfigurationEditDate": personalizer.edited_at(db),
    }


def _policy_configuration(db: Any) -> dict[str, Any]:
    settings = load_policy(db, deployment(), ACTIONS)
    return {"name": ACTIONS, "arguments": personalizer.write_arguments(settings.vw_args, settings.epsilon)}


@bp.get("/configurations/service")
def get_service_configuration() -> ResponseReturnValue:
    """The ``actions`` policy's settings under Personalizer's names (reward wait as an ISO 8601 duration)."""
    return jsonify(_service_configuration(get_db()))


@bp.put("/configurations/service")
def put_service_configuration() -> ResponseReturnValue:
    """Set the reward wait, default reward, aggregation, exploration, learning mode, automatic optimization
    and inference explanations of the ``actions`` policy; list the fields sent that Marquee does not apply."""
    body: PersonalizerServiceConfiguration = parse(PersonalizerServiceConfiguration, request)
    if body.learningMode is not None and body.learningMode not in LEARNING_MODES:
        raise Invalid(f"learningMode: must be one of {', '.join(LEARNING_MODES)}, got {body.learningMode!r}")
    db = get_db()
    changes: dict[str, Any] = {
        "reward_wait": parse_duration(body.rewardWaitTime, where="rewardWaitTime"),
        "default_reward": body.defaultReward,
        "aggregation": body.rewardAggregation.lower(),
        "epsilon": body.explorationPercentage,
    }
    for field_name, setting in (
        ("learningMode", "learning_mode"),
        ("isAutoOptimizationEnabled", "auto_optimize"),
        ("isInferenceExplainabilityEnabled", "explain_ranks"),
    ):
        value = getattr(body, field_name)
        if value is not None:  # left out: left as it is
            changes[setting] = LEARNING_MODES[value] if setting == "learning_mode" else value
    change_overrides(db, deployment(), ACTIONS, changes, merge=True)  # only these settings, in one transaction
    sent = body.model_dump(exclude_none=True)
    return jsonify({**_service_configuration(db), "notApplied": [name for name in NOT_APPLIED if name in sent]})


@bp.get("/configurations/policy")
def get_policy_configuration() -> ResponseReturnValue:
    """The ``actions`` policy's VW options, written as Personalizer's learning-policy arguments."""
    return jsonify(_policy_configuration(get_db()))


@bp.put("/configurations/policy")
def put_policy_configuration() -> ResponseReturnValue:
    """Set the ``actions`` policy's VW options from Personalizer's arguments; new options start a new model."""
    body: PersonalizerPolicyConfiguration = parse(PersonalizerPolicyConfiguration, request)
    try:
        vw_args, epsilon = personalizer.read_arguments(body.arguments)
    except personalizer.Refused as exc:
        raise Invalid(str(exc)) from None
    db = get_db()
    change_overrides(
        db,
        deployment(),
        ACTIONS,
        {"vw_args": vw_args, **({"epsilon": epsilon} if epsilon is not None else {})},
        merge=True,
    )
    return jsonify(_policy_configuration(db))


@bp.delete("/configurations/policy")
def reset_policy_configuration() -> ResponseReturnValue:
    """Put the ``actions`` policy's VW options back to the defaults (a new model if they change); the exploration
    rate stays, as it belongs to the service configuration (``explorationPercentage``)."""
    db = get_db()
    change_overrides(db, deployment(), ACTIONS, {"vw_args": None}, merge=True)
    return jsonify(_policy_configuration(db))
