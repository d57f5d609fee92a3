"""Marquee's web service: ``create_app()`` builds the Flask app."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask, Response

from bandits.model.policy import ensure_models
from bandits.storage import connect
from service import auth, errors
from service import config as settings
from service.jsonprovider import FastJSONProvider


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings (defaults, ``MARQUEE_*`` environment, ``test_config``), schema, blueprints."""
    app = Flask(__name__)
    app.config.from_mapping(settings.load(test_config))
    # The factory itself, for code below this package that builds a scratch app (``service.simulate``),
    # and the settings handed down to bandits/, typed once (``service.config.deployment``).
    deployment = settings.typed(app.config)
    app.extensions["marquee"] = {"create_app": create_app, "deployment": deployment}
    # VW logs its option banner for every workspace it makes (each model a worker loads); the server log
    # keeps VW's warnings and errors only.
    logging.getLogger("vowpal_wabbit_next").setLevel(logging.WARNING)
    app.json = FastJSONProvider(app)
    app.json.sort_keys = False  # answers keep the order the code writes their keys in
    Path(app.config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)

    try:
        db = connect(app.config["DATABASE"], synchronous=app.config["SQLITE_SYNCHRONOUS"])  # creates the schema
    except ConnectionError as exc:
        raise RuntimeError(f"MARQUEE_DATABASE_URL: {exc}") from None
    ensure_models(db, deployment)
    db.close()

    # Imported here, not above: gunicorn.conf.py reads the settings (this package) before it tells
    # prometheus-client, on its first import, to share metrics between workers.
    from service import metrics, runtime

    errors.register(app)
    metrics.register(app)  # before auth, so refused requests are timed and counted too
    auth.register(app)
    runtime.after_response(app)  # a new model version is built after a response, not during one

    @app.errorhandler(sqlite3.OperationalError)
    def _storage(exc: sqlite3.OperationalError) -> Response:
        message = str(exc)
        if any(word in message for word in ("locked", "busy", "disk", "full", "readonly", "read-only")):
            app.logger.error("storage unavailable: %s", message)
            return errors.render(errors.Unavailable(f"storage is unavailable ({message}); nothing was changed"))
        raise exc

    @app.errorhandler(psycopg.DataError)
    def _value(exc: psycopg.DataError) -> Response:  # a value the server cannot store; the transaction rolled back
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return errors.render(errors.Invalid(f"a value cannot be stored ({first}); nothing was changed"))

    @app.errorhandler(psycopg.OperationalError)
    def _server(exc: psycopg.OperationalError) -> Response:
        app.logger.error("database server unavailable: %s", exc)
        return errors.render(errors.Unavailable(f"the database server is unavailable ({exc}); nothing was changed"))

    from service.views import (
        catalog,
        dashboard,
        datasets,
        decisions,
        evaluations,
        live,
        ops,
        optimizations,
        personalizer,
        personalizer_admin,
        policies,
        reports,
    )

    for blueprint in (
        decisions.bp,
        catalog.bp,
        policies.bp,
        evaluations.bp,
        optimizations.bp,
        datasets.bp,
        reports.bp,
        live.bp,
        dashboard.bp,
        ops.bp,
    ):
        app.register_blueprint(blueprint)
    personalizer.register(app, personalizer_admin.bp)

    from service import cli

    cli.register(app)

    if app.config["LEARNER"]:
        from service.runtime import ensure_learner

        @app.before_request
        def _learner() -> None:
            ensure_learner(app.config)

    return app
