"""Automatic optimization (``bandits.evaluate.optimize``): start one, list them, read one, roll one back."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from bandits.evaluate import optimize
from bandits.model.policy import POLICY_NAMES
from service import workers
from service.config import deployment
from service.db import get_db
from service.errors import Invalid, NotFound
from service.schemas import json_object

bp = Blueprint("optimizations", __name__)

FIELDS = ("policy", "candidates")


@bp.post("/v1/optimizations")
def create_optimization() -> ResponseReturnValue:
    """Start an optimization of a policy now, with the default search space or the body's candidates (202)."""
    body = json_object(request)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise Invalid(f"{unknown[0]}: not a field (fields: {', '.join(FIELDS)})")
    db = get_db()
    optimization_id = optimize.start(
        db, deployment(), body.get("policy"), trigger="request", candidates=body.get("candidates")
    )
    workers.spawn(current_app.config, "optimization", optimization_id)
    response = jsonify(optimize.get(db, optimization_id))
    response.status_code = 202
    response.headers["Location"] = f"/v1/optimizations/{optimization_id}"
    return response


@bp.get("/v1/optimizations")
def list_optimizations() -> ResponseReturnValue:
    """List the 50 newest optimizations (``?policy=`` for one policy's)."""
    policy = request.args.get("policy")
    if policy is not None and policy not in POLICY_NAMES:
        raise Invalid(f"policy: must be one of {', '.join(POLICY_NAMES)}, got {policy!r}")
    return jsonify({"optimizations": optimize.recent(get_db(), policy=policy)})


@bp.get("/v1/optimizations/<optimization_id>")
def show_optimization(optimization_id: str) -> ResponseReturnValue:
    """Return an optimization: its decision and reason, and its candidates' DR estimates once evaluated."""
    found = optimize.get(get_db(), optimization_id)
    if found is None:
        raise NotFound(f"optimization {optimization_id!r} does not exist")
    return jsonify(found)


@bp.post("/v1/optimizations/<optimization_id>/rollback")
def rollback_optimization(optimization_id: str) -> ResponseReturnValue:
    """Put back the settings and model an applied optimization replaced."""
    return jsonify(optimize.rollback(get_db(), deployment(), optimization_id))
