"""Fixtures: an app on a temporary store (learner off; tests drive it), its client and database.

The store is a SQLite file unless a test module lists ``BACKENDS = ("sqlite", "postgresql")``: then
each of its tests that opens a store runs once per engine, on PostgreSQL in a schema of its own on the
server ``MARQUEE_TEST_POSTGRES`` names (default ``postgresql://postgres@127.0.0.1:5432/test``), dropped
afterwards. Without a server those runs skip, unless ``MARQUEE_POSTGRES_TESTS=required`` (``.ci/run``).
``MARQUEE_TEST_BACKEND=postgresql`` puts every other test's app on PostgreSQL too.
"""

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
from tests.helpers import add_catalog, deployment, postgres_schema

# The suite runs with key checks off, said explicitly (the default is on); tests/service/test_auth.py turns
# them on. Services started in subprocesses (gunicorn, the CLI) inherit this.
os.environ["MARQUEE_AUTH"] = "off"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    backends = getattr(metafunc.module, "BACKENDS", None)
    if backends and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The engine a test's store runs on: its module's ``BACKENDS``, else ``MARQUEE_TEST_BACKEND`` (default sqlite)."""
    return str(getattr(request, "param", os.environ.get("MARQUEE_TEST_BACKEND", "sqlite")))


@pytest.fixture
def database_url(backend: str) -> Iterator[str]:
    """``""`` on SQLite; on PostgreSQL, a URL whose connections see a fresh schema only (dropped afterwards)."""
    if backend == "sqlite":
        yield ""
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Flask:
    return create_app(
        {
            "DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": database_url,
            "LEARNER": False,
            "REWARD_WAIT_SECONDS": 60.0,
            "EPSILON": 0.2,
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def db(app: Flask) -> Iterator[Any]:
    database = connect(app.config["DATABASE"])
    yield database
    database.close()


@pytest.fixture
def learner(app: Flask, db: Any) -> Learner:
    return Learner(db, deployment(app))


@pytest.fixture
def catalog(client: FlaskClient) -> list[str]:
    return add_catalog(client, titles=6)
