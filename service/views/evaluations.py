"""Offline evaluations: start one in the background, follow it, read its report; export the log."""

from __future__ import annotations

import tempfile

from flask import Blueprint, Response, current_app, jsonify, request, send_file
from flask.typing import ResponseReturnValue

from bandits.evaluate import offline, runs
from bandits.log import logexport
from bandits.model.policy import POLICY_NAMES
from service import workers
from service.config import deployment
from service.db import get_db
from service.errors import Conflict, Invalid, NotFound
from service.schemas import json_object

bp = Blueprint("evaluations", __name__)


@bp.post("/v1/evaluations")
def create_evaluation() -> ResponseReturnValue:
    """Check an evaluation request, store it and start it in a background process (202)."""
    body = json_object(request)
    spec = offline.parse_spec(body)
    db = get_db()
    spec = offline.resolve(db, spec)
    active = runs.active_count(db)
    if active >= runs.MAX_ACTIVE:
        raise Conflict(
            f"{active} evaluations are queued or running (at most {runs.MAX_ACTIVE}); "
            "wait for one to finish and post again"
        )
    run_id = runs.create(db, spec)
    workers.spawn(current_app.config, "evaluation", run_id)
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


@bp.post("/v1/evaluations/<run_id>/apply")
def apply_candidate(run_id: str) -> ResponseReturnValue:
    """Apply a candidate of a finished evaluation to its policy, if the evidence says it beats the logged policy."""
    body = json_object(request)
    unknown = sorted(set(body) - {"candidate"})
    if unknown:
        raise Invalid(f"{unknown[0]}: not a field (fields: candidate)")
    applied = runs.apply(get_db(), deployment(), run_id, body.get("candidate"))
    return jsonify(applied)


def _query_time(name: str) -> float | None:
    return offline.parse_time(request.args.get(name) or None, where=name)


@bp.get("/v1/logs/export")
def export_log() -> ResponseReturnValue:
    """Stream one policy's closed decisions as DSJson or JSON lines (one a decision, oldest first), or Parquet."""
    fmt = request.args.get("format", "dsjson")
    if fmt not in logexport.EXPORT_FORMATS:
        raise Invalid(f"format: must be one of {', '.join(logexport.EXPORT_FORMATS)}, got {fmt!r}")
    policy = request.args.get("policy", "artwork")
    if policy not in POLICY_NAMES:
        raise Invalid(f"policy: must be one of {', '.join(POLICY_NAMES)}, got {policy!r}")
    since, until = _query_time("since"), _query_time("until")
    if since is not None and until is not None and until <= since:
        raise Invalid("until: must be later than since")
    db = get_db()
    if fmt == logexport.PARQUET:  # written to a temporary file first: a Parquet file ends with its index
        spool = tempfile.TemporaryFile()
        written = logexport.write_parquet(
            offline.policy_chunks(db, deployment(), policy, since=since, until=until), spool
        )
        spool.seek(0)
        response = send_file(
            spool, mimetype="application/vnd.apache.parquet", download_name=f"marquee-{policy}.parquet"
        )
        response.headers["X-Marquee-Decisions"] = str(written)
        return response
    rounds = offline.policy_rounds(db, deployment(), policy, since=since, until=until)
    response = Response(logexport.lines(rounds, fmt), mimetype="application/x-ndjson")
    response.headers["Content-Disposition"] = f'attachment; filename="marquee-{policy}.{fmt}"'
    response.headers["X-Marquee-Decisions"] = str(len(rounds))
    return response
