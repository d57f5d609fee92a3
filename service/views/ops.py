"""Operations: health."""

from __future__ import annotations

import os
import time

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from bandits.learn.learner import learner_running
from bandits.log import eventlog
from bandits.model.policy import POLICY_NAMES, newest_stamps
from bandits.storage import readable
from service.config import deployment
from service.db import get_db
from service.runtime import learner_starting, serving_state

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Report the database, the learner, each policy's newest model and the version this process serves.

    The learner is ``starting`` for the first seconds after this process began supervising it, and the
    answer is 503 only when it should run and does not.
    """
    db = get_db()
    state = serving_state(current_app.config["DATABASE"])
    state.refresh(db, deployment(), wait_for_models=False)
    now = time.time()
    database_ok = readable(db)
    learner_up = learner_running(current_app.config["DATABASE"])
    models = {}
    stamps = newest_stamps(db)  # no model read, no count of the log: the same cost on a log of any size
    for name in POLICY_NAMES:
        stamp = stamps.get(name)
        models[name] = {
            "version": stamp.version if stamp else None,
            "age_seconds": round(now - stamp.created_at, 3) if stamp else None,
            "learner_lag_seconds": eventlog.learner_lag(db, name, now=now),
            "serving_version": state.models[name].version if name in state.models else None,
        }
    if not current_app.config["LEARNER"]:
        learner = "disabled"
    elif learner_up:
        learner = "running"
    else:
        learner = "starting" if learner_starting(current_app.config) else "not running"
    healthy = database_ok and learner != "not running"
    body = {
        "status": "ok" if healthy else "degraded",
        "database": "ok" if database_ok else "error",
        "learner": learner,
        "policies": models,
        "process": os.getpid(),
    }
    return jsonify(body), (200 if healthy else 503)


@bp.get("/metrics")
def prometheus_metrics() -> ResponseReturnValue:
    """Prometheus metrics: requests and latency per route, decisions, picks, rewards, models, learner lag."""
    from service import metrics

    return metrics.exposition()


@bp.get("/openapi.json")
def openapi_document() -> ResponseReturnValue:
    """The OpenAPI 3.1 document of this API: every route, its request schema, examples and responses."""
    from service import openapi

    document = current_app.extensions.get("marquee_openapi")
    if document is None:
        document = current_app.extensions["marquee_openapi"] = openapi.document(current_app)
    return jsonify(document)
