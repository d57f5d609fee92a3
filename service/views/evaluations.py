"""Offline evaluations: start one in the background, follow it, read its report."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from bandits import offline, runs
from service.db import get_db
from service.errors import Conflict, Invalid, NotFound
from service.runtime import spawn_evaluation
from service.schemas import json_object

bp = Blueprint("evaluations", __name__)

MAX_ACTIVE = 2  # evaluations queued or running at once; each takes a core while it runs


@bp.post("/v1/evaluations")
def create_evaluation() -> ResponseReturnValue:
    """Check an evaluation request, store it and start it in a background process (202)."""
    body = json_object(request)
    try:
        spec = offline.parse_spec(body)
    except offline.SpecError as exc:
        raise Invalid(str(exc)) from None
    db = get_db()
    for index, candidate in enumerate(spec.candidates):
        if candidate.kind == "model":
            try:
                offline.model_blob(db, spec.policy, candidate.version)
            except offline.SpecError as exc:
                raise Invalid(f"candidates[{index}].{exc}") from None
    active = runs.active_count(db)
    if active >= MAX_ACTIVE:
        raise Conflict(f"{active} evaluations are queued or running (at most {MAX_ACTIVE}); "
                       "wait for one to finish and post again")
    run_id = runs.create(db, spec)
    spawn_evaluation(current_app.config, run_id)
    response = jsonify(runs.get(db, run_id))
    response.status_code = 202
    response.headers["Location"] = f"/v1/evaluations/{run_id}"
    return response


@bp.get("/v1/evaluations")
def list_evaluations() -> ResponseReturnValue:
    """List the 50 newest evaluations, without their reports."""
    return jsonify({"evaluations": runs.recent(get_db())})


@bp.get("/v1/evaluations/<run_id>")
def show_evaluation(run_id: str) -> ResponseReturnValue:
    """Return an evaluation: status, progress, and the report once done."""
    found = runs.get(get_db(), run_id)
    if found is None:
        raise NotFound(f"evaluation {run_id!r} does not exist")
    return jsonify(found)
