"""Policy settings, model versions, model export/import and reset."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from bandits.evaluate import apprentice, offline
from bandits.learn import warmstart
from bandits.log import eventlog
from bandits.model import policy as policies
from bandits.reports import explain
from bandits.storage import Database, write_transaction
from service.config import deployment
from service.db import get_db
from service.errors import Invalid, NotFound, UnsupportedMedia
from service.runtime import serving_state
from service.schemas import WarmStartBody, json_object, parse

bp = Blueprint("policies", __name__)

MAX_MODEL_BYTES = 256 * 1024 * 1024


def _name(name: str) -> str:
    if name not in policies.POLICY_NAMES:
        raise NotFound(f"policy {name!r} does not exist (policies: {', '.join(policies.POLICY_NAMES)})")
    return name


def _describe(db: Database, name: str) -> dict[str, Any]:
    settings = policies.load_policy(db, deployment(), name)
    model = policies.latest_model(db, name)
    return {
        "name": name,
        "settings": settings.as_dict(),
        "model": model.summary() if model else None,
        "stats": eventlog.policy_stats(db, name),
    }


@bp.get("/v1/policies")
def list_policies() -> ResponseReturnValue:
    """List every policy with its settings, newest model and learning progress."""
    db = get_db()
    return jsonify({"policies": [_describe(db, name) for name in policies.POLICY_NAMES]})


@bp.get("/v1/policies/<name>")
def get_policy(name: str) -> ResponseReturnValue:
    """Return one policy."""
    return jsonify(_describe(get_db(), _name(name)))


@bp.put("/v1/policies/<name>")
def put_policy(name: str) -> ResponseReturnValue:
    """Replace a policy's overrides; settings left out take the deployment defaults (``removed`` lists them).

    Changing ``vw_args`` starts a new, empty model with those options. The body is checked by
    ``bandits.model.policy.PolicyOverrides``.
    """
    name = _name(name)
    db = get_db()
    removed = policies.change_overrides(db, deployment(), name, json_object(request), merge=False)
    return jsonify({**_describe(db, name), "removed": removed})


@bp.patch("/v1/policies/<name>")
def patch_policy(name: str) -> ResponseReturnValue:
    """Change only the settings given (a JSON merge patch): ``null`` puts one back to the deployment default."""
    name = _name(name)
    db = get_db()
    removed = policies.change_overrides(db, deployment(), name, json_object(request), merge=True)
    return jsonify({**_describe(db, name), "removed": removed})


MAX_IMPORTANCE_DECISIONS = 2000


def feature_importance(db: Database, name: str, decisions: int) -> dict[str, Any]:
    """Mean absolute contribution of each feature over the policy's most recent closed decisions."""
    config = current_app.config
    state = serving_state(config["DATABASE"])
    state.refresh(db, deployment(), wait_for_models=True)
    model = state.models[name]
    rounds = offline.policy_rounds(db, deployment(), name, limit=decisions)
    first = max(0, len(rounds) - decisions)
    examples = [(rounds.shared[i], rounds.actions(i)[int(rounds.chosen[i])]) for i in range(first, len(rounds))]
    return {
        "policy": name,
        "model_version": model.version,
        "decisions": len(examples),
        "features": explain.importance(explain.explainer_for(model), examples),
    }


@bp.get("/v1/policies/<name>/importance")
def policy_importance(name: str) -> ResponseReturnValue:
    """Which viewer, title and artwork features move the policy's estimates most, over recent decisions."""
    name = _name(name)
    raw = request.args.get("decisions", "200")
    try:
        decisions = int(raw)
    except ValueError:
        raise Invalid(f"decisions: must be a whole number from 1 to {MAX_IMPORTANCE_DECISIONS}, got {raw!r}") from None
    if not 1 <= decisions <= MAX_IMPORTANCE_DECISIONS:
        raise Invalid(f"decisions: must be a whole number from 1 to {MAX_IMPORTANCE_DECISIONS}, got {decisions}")
    return jsonify(feature_importance(get_db(), name, decisions))


@bp.get("/v1/policies/<name>/apprentice")
def apprentice_report(name: str) -> ResponseReturnValue:
    """How closely the model follows the baseline, the baseline's reward, and the evidence for switching online."""
    name = _name(name)
    raw = request.args.get("events", str(apprentice.REPORT_EVENTS))
    try:
        events = int(raw)
    except ValueError:
        events = 0
    if not 1 <= events <= apprentice.REPORT_EVENTS:
        raise Invalid(f"events: must be a whole number from 1 to {apprentice.REPORT_EVENTS}, got {raw!r}")
    return jsonify(apprentice.report(get_db(), deployment(), name, limit=events))


@bp.post("/v1/policies/<name>/warm-start")
def warm_start(name: str) -> ResponseReturnValue:
    """Learn an imported dataset into a new model version, with progressive estimates of the result (201)."""
    name = _name(name)
    body: WarmStartBody = parse(WarmStartBody, request)
    result = warmstart.warm_start(get_db(), deployment(), name, body.dataset, start=body.start, passes=body.passes)
    return jsonify(result), 201


@bp.get("/v1/policies/<name>/model")
def export_model(name: str) -> ResponseReturnValue:
    """Download the newest model version as VW model bytes."""
    record = policies.latest_model(get_db(), _name(name))
    if record is None:
        raise NotFound(f"policy {name!r} has no model yet")
    response = current_app.response_class(record.blob, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}-v{record.version}.vwmodel"'
    response.headers["X-Marquee-Model-Version"] = str(record.version)
    return response


@bp.put("/v1/policies/<name>/model")
def import_model(name: str) -> ResponseReturnValue:
    """Publish uploaded VW model bytes (``application/octet-stream``) as the policy's newest version."""
    name = _name(name)
    if request.mimetype != "application/octet-stream":
        raise UnsupportedMedia("send the model bytes as application/octet-stream")
    blob = request.get_data(cache=False)
    if not blob:
        raise Invalid("body: the model is empty")
    workspace = policies.load_uploaded_model(blob)
    db = get_db()
    with write_transaction(db):
        version = policies.publish(
            db,
            policy=name,
            blob=workspace.serialize(),
            vw_args=[],
            events_learned=0,
            examples_learned=0,
            origin="import",
            keep=int(current_app.config["MODEL_VERSIONS_KEPT"]),
            tried=None,  # what the uploaded model learned is not known: it explores without a bonus
        )
    return jsonify({"policy": name, "version": version}), 201


@bp.post("/v1/policies/<name>/reset")
def reset_model(name: str) -> ResponseReturnValue:
    """Publish a new, empty model with the policy's current options."""
    name = _name(name)
    db = get_db()
    with write_transaction(db):
        version = policies.publish_empty(db, deployment(), name, origin="reset")
    return jsonify({"policy": name, "version": version}), 201
