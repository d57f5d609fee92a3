"""Evaluations over HTTP (a real background process per run) and from the command line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bandits.evaluate import offline, runs
from bandits.storage import write_transaction
from tests.helpers import deployment, wait_until_finished
from tests.worlds import LoggedWorld

REQUEST = {
    "policy": "artwork",
    "segment_by": "segment",
    "candidates": ["logged", "uniform", "greedy", {"name": "interactions", "kind": "vw", "vw_args": "-q UA"}],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> LoggedWorld:
    return LoggedWorld(tmp_path_factory.mktemp("evaluations"), events=300)


def evaluation_rows(world: LoggedWorld) -> int:
    return world.db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]


def test_an_evaluation_runs_in_the_background_and_reports_what_the_library_computes(world):
    response = world.client.post("/v1/evaluations", json=REQUEST)
    assert response.status_code == 202, response.get_json()
    accepted = response.get_json()
    assert (
        accepted["status"] in ("queued", "running")
        and response.headers["Location"] == f"/v1/evaluations/{accepted['id']}"
    )
    finished = wait_until_finished(world.client, response.headers["Location"])
    assert finished["status"] == "done", finished["error"]
    assert finished["progress"] == 1.0 and finished["started_at"] >= finished["created_at"]
    report = finished["result"]
    direct = offline.evaluate(world.db, deployment(world.app), offline.parse_spec(REQUEST))
    assert [c["name"] for c in report["candidates"]] == ["logged", "uniform", "greedy", "interactions"]
    for ours, theirs in zip(report["candidates"], direct["candidates"]):
        assert ours["estimates"] == theirs["estimates"]  # the same log, the same deterministic computation
    listed = world.client.get("/v1/evaluations").get_json()["evaluations"]
    assert listed[0]["id"] == accepted["id"] and "result" not in listed[0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"policy": "posters"}, "policy: must be one of titles, artwork"),
        ({"policy": "artwork", "candidates": [{"kind": "vw", "vw_args": "-p /etc/passwd"}]}, "candidates[0].vw_args"),
        (
            {"policy": "artwork", "candidates": [{"kind": "model", "version": 12345}]},
            "candidates[0].version: model version 12345 of artwork is not stored",
        ),
        ({"policy": "artwork", "folds": "two"}, "folds: must be a whole number"),
    ],
)
def test_bad_requests_are_refused_and_store_nothing(world, body, message):
    before = evaluation_rows(world)
    response = world.client.post("/v1/evaluations", json=body)
    assert response.status_code == 422
    assert message in response.get_json()["error"]["message"]
    assert evaluation_rows(world) == before
    assert world.client.post("/v1/evaluations", data="policy=artwork").status_code == 415
    assert world.client.get("/v1/evaluations/ev-nope").status_code == 404


def test_a_request_the_log_cannot_answer_fails_with_the_reason(world):
    response = world.client.post("/v1/evaluations", json={"policy": "titles", "since": "2100-01-01T00:00:00Z"})
    assert response.status_code == 202
    finished = wait_until_finished(world.client, response.headers["Location"])
    assert finished["status"] == "failed" and finished["result"] is None
    assert "the range holds 0 closed decisions of titles" in finished["error"]


def test_runs_whose_process_died_are_reported_failed_and_active_runs_are_capped(world):
    spec = offline.parse_spec({"policy": "artwork"})
    dead = runs.create(world.db, spec, now=time.time() - 3600)  # queued an hour ago, never heard of since
    body = world.client.get(f"/v1/evaluations/{dead}").get_json()
    assert body["status"] == "failed" and "stopped without finishing" in body["error"]
    busy = [runs.create(world.db, spec) for _ in range(2)]
    refused = world.client.post("/v1/evaluations", json={"policy": "artwork"})
    assert (
        refused.status_code == 409 and "2 evaluations are queued or running" in refused.get_json()["error"]["message"]
    )
    with write_transaction(world.db):
        world.db.execute(f"UPDATE evaluations SET status = 'failed' WHERE id IN ({','.join('?' * len(busy))})", busy)


def test_cli_prints_a_table_and_writes_the_report(world, tmp_path: Path):
    runner = world.app.test_cli_runner()
    out = tmp_path / "report.json"
    result = runner.invoke(
        args=[
            "evaluate",
            "--policy",
            "artwork",
            "--candidate",
            "logged",
            "--candidate",
            "uniform",
            "--candidate",
            "vw:-q UA -q GA",
            "--segment-by",
            "segment",
            "--json",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.output
    assert "artwork: 1200 decisions in 300 events" in result.output
    for name in ("logged", "uniform", "vw -q UA -q GA"):
        assert f"\n{name} " in result.output
    assert "by segment" in result.output and "night-owl" in result.output
    report = json.loads(out.read_text())
    assert report["rounds"] == 1200 and len(report["candidates"]) == 3
    refused = runner.invoke(args=["evaluate", "--policy", "artwork", "--candidate", "best"])
    assert refused.exit_code == 2 and "'best' is not a candidate name" in refused.output


def test_a_database_from_before_evaluations_gets_the_tables(tmp_path: Path):
    from bandits.storage import TABLES, connect

    path = tmp_path / "old.sqlite3"
    db = connect(path)
    assert set(TABLES) == set(db.table_names()) - {"sqlite_sequence"}
    for table in ("evaluations", "dataset_rounds", "datasets"):
        db.execute(f"DROP TABLE {table}")
    db.close()
    reopened = connect(path)
    for table in ("evaluations", "datasets", "dataset_rounds"):
        assert reopened.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0
