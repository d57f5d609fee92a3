"""Fixtures: an app on a temporary SQLite file (learner off; tests drive it), its client and database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bandits.learn.learner import Learner
from bandits.storage import connect
from service import create_app
from tests.helpers import add_catalog, deployment

# The suite runs with key checks off, said explicitly (the default is on); tests/service/test_auth.py turns
# them on. Services started in subprocesses (gunicorn, the CLI) inherit this.
os.environ["MARQUEE_AUTH"] = "off"


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(
        {"DATA_DIR": str(tmp_path / "data"), "LEARNER": False, "REWARD_WAIT_SECONDS": 60.0, "EPSILON": 0.2}
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def db(app: Flask) -> Iterator[Any]:
    database = connect(app.config["DATABASE"])
    yield database
    database.conn.close()


@pytest.fixture
def learner(app: Flask, db: Any) -> Learner:
    return Learner(db, deployment(app))


@pytest.fixture
def catalog(client: FlaskClient) -> list[str]:
    return add_catalog(client, titles=6)
