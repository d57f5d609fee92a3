"""Shared test helpers: real images and small catalogs built through the HTTP API."""

from __future__ import annotations

import contextlib
import io
import os
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import vowpal_wabbit_next as vw
from PIL import Image

from assets.demo import poster
from bandits.deployment import Deployment
from bench.walmeter import fresh_schema

# The checkout's root, wherever in tests/ a module sits.
ROOT = Path(__file__).resolve().parent.parent

# The PostgreSQL server the tests of both engines use; .ci/run makes sure one runs and requires them.
TEST_POSTGRES = os.environ.get("MARQUEE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """Make a fresh schema on the test server; yield a URL whose connections see only it; drop it afterwards.

    Skips the test when no server answers, unless ``MARQUEE_POSTGRES_TESTS=required``.
    """
    try:
        psycopg.connect(TEST_POSTGRES, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("MARQUEE_POSTGRES_TESTS") == "required":
            raise
        pytest.skip(f"no PostgreSQL server at {TEST_POSTGRES} ({exc})")
    with fresh_schema(TEST_POSTGRES, prefix="marquee_test") as url:
        yield url


@contextlib.contextmanager
def copy_of_store(target: str, folder: Path) -> Iterator[str]:
    """Copy a store as it stands (a SQLite file, or a test schema on PostgreSQL); yield the copy's target."""
    from bandits.postgres import is_url
    from bandits.storage import TABLES, connect

    if not is_url(target):
        copy = folder / f"copy-{uuid.uuid4().hex[:8]}.sqlite3"
        source = connect(target)
        source.execute(f"VACUUM INTO '{copy}'")
        source.close()
        yield str(copy)
        return
    source_schema = target.rsplit("search_path%3D", 1)[1]
    with postgres_schema() as url:
        schema = url.rsplit("search_path%3D", 1)[1]
        with psycopg.connect(TEST_POSTGRES, autocommit=True) as admin:
            for table in TABLES:
                admin.execute(f"CREATE TABLE {schema}.{table} (LIKE {source_schema}.{table} INCLUDING ALL)")
                admin.execute(f"INSERT INTO {schema}.{table} SELECT * FROM {source_schema}.{table}")
        yield url


def image_bytes(
    color: tuple[int, int, int] = (200, 40, 40),
    *,
    size: tuple[int, int] = (64, 96),
    fmt: str = "PNG",
    mode: str = "RGB",
) -> bytes:
    """Return a solid image encoded with Pillow."""
    out = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else 128).save(out, fmt)
    return out.getvalue()


STYLES = (("dark-warm", "face"), ("bright-cool", "ensemble"), ("neutral", "text"))


def add_catalog(
    client: Any, *, titles: int = 12, styles: tuple[tuple[str, str], ...] = STYLES, seed: int = 1, prefix: str = "t"
) -> list[str]:
    """Create ``titles`` titles (ids ``<prefix>00`` on) with one poster per style (artwork ids ``<title>-<palette>``);
    return title ids."""
    rng = random.Random(seed)
    ids = []
    for index in range(titles):
        title_id = f"{prefix}{index:02d}"
        response = client.post(
            "/v1/titles",
            json={
                "id": title_id,
                "name": f"Title {index}",
                "genres": ["drama" if index % 2 else "comedy"],
                "year": 2000 + index,
            },
        )
        assert response.status_code == 201, response.get_json()
        for palette, composition in styles:
            data = poster(palette=palette, composition=composition, title=f"Title {index}", rng=rng)
            response = client.post(
                f"/v1/titles/{title_id}/artworks",
                data={
                    "file": (io.BytesIO(data), "poster.jpg"),
                    "id": f"{title_id}-{palette}",
                    "tags": f"{palette},{composition}",
                },
                content_type="multipart/form-data",
            )
            assert response.status_code == 201, response.get_json()
        ids.append(title_id)
    return ids


def table_counts(db: Any) -> dict[str, int]:
    """Return the row count of every table that holds user data (to prove a refusal changed nothing)."""
    tables = (
        "titles",
        "artworks",
        "events",
        "impressions",
        "rewards",
        "reward_credits",
        "pending",
        "learned",
        "models",
        "policies",
    )
    counts = {name: db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0] for name in tables}
    counts["meta"] = sum(row[0] for row in db.execute("SELECT value FROM meta").fetchall())
    return counts


def assert_setting_refused(app: Any, policy: str, body: dict[str, Any], message: str) -> None:
    """PUT a bad policy setting: a 422 whose message holds ``message``, and no table or setting changed."""
    from bandits.storage import connect

    client = app.test_client()
    db = connect(app.config["DATABASE"])
    before = table_counts(db), client.get(f"/v1/policies/{policy}").get_json()["settings"]
    response = client.put(f"/v1/policies/{policy}", json=body)
    assert response.status_code == 422 and message in response.get_json()["error"]["message"], response.get_json()
    assert (table_counts(db), client.get(f"/v1/policies/{policy}").get_json()["settings"]) == before


def serve_newest_models(app: Any) -> None:
    """Make this process serve the newest model versions now (requests load them in the background)."""
    from service.db import get_db
    from service.runtime import serving_state

    with app.app_context():
        serving_state(app.config["DATABASE"]).refresh(get_db(), deployment(app), wait_for_models=True)


def wait_until_finished(client: Any, location: str, *, deadline_seconds: float = 120.0) -> dict[str, Any]:
    """Poll an evaluation until it is done or failed (the deadline only guards against a hang)."""
    deadline = time.monotonic() + deadline_seconds
    seen = []
    while time.monotonic() < deadline:
        body = client.get(location).get_json()
        seen.append((body["status"], body["progress"]))
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"the evaluation did not finish; statuses seen: {seen[-5:]}")


def run_to_the_end(client: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Post an evaluation, wait for its background process, and return the finished run."""
    response = client.post("/v1/evaluations", json=request)
    assert response.status_code == 202, response.get_json()
    finished = wait_until_finished(client, response.headers["Location"])
    assert finished["status"] == "done", finished["error"]
    return finished


def deployment(app: Any) -> Deployment:
    """The typed settings ``app`` hands down to ``bandits/`` (``service.config.deployment``)."""
    found: Deployment = app.extensions["marquee"]["deployment"]
    return found


# Lines of VW's readable model that are its running report (progressive loss, features seen), not what it learned.
VW_REPORT_LINES = ("sum_loss ", "sum_loss_since_last_dump ", "total_features ")


def learned_state(model: vw.Workspace | bytes) -> list[str]:
    """Everything a model learned (weights, counts, settings) as VW's readable model writes it, less its report."""
    workspace = model if isinstance(model, vw.Workspace) else vw.Workspace([], model_data=model)
    return [line for line in workspace.readable_model().splitlines() if not line.startswith(VW_REPORT_LINES)]


def sqlite_steps(app: Any, action: Any) -> tuple[int | None, Any]:
    """Call ``action()`` and count, in tens, the SQLite steps it ran on the connection this thread's requests use.

    The count is None on PostgreSQL. What a statement costs in steps does not vary with the machine's
    speed, so a test can compare two counts where it may not compare two times.
    """
    from bandits.storage import SQLiteDatabase
    from service.db import get_db

    with app.app_context():
        serving = get_db()
    if not isinstance(serving, SQLiteDatabase):
        return None, action()
    counted = [0]

    def tick() -> int:
        counted[0] += 1
        return 0

    serving.conn.set_progress_handler(tick, 10)
    try:
        result = action()
    finally:
        serving.conn.set_progress_handler(None, 10)
    return counted[0], result
