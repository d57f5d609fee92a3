"""Imported datasets: Marquee's own export comes back with the same estimates; other services' DSJson evaluates too."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bandits.evaluate import offline
from bandits.log import datasets, logimport
from bench.coffee_log import DRINKS, foreign_log
from tests.helpers import deployment, wait_until_finished
from tests.worlds import LoggedWorld

CANDIDATES = ["logged", "uniform", "default", "greedy", {"name": "crossed", "kind": "vw", "vw_args": "-q UA -q GA"}]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> LoggedWorld:
    return LoggedWorld(tmp_path_factory.mktemp("import"), events=200)


def upload(
    world: LoggedWorld,
    body: str | bytes,
    *,
    fmt: str = "dsjson",
    name: str | None = None,
    content_type: str = "application/x-ndjson",
) -> Any:
    query = f"format={fmt}" + (f"&name={name}" if name else "")
    return world.client.post(f"/v1/datasets?{query}", data=body, content_type=content_type)


def counts(world: LoggedWorld) -> dict[str, int]:
    """Rows of every table an import may touch, and of the native log it must not."""
    return {
        table: world.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("datasets", "dataset_rounds", "events", "impressions", "rewards", "models")
    }


@pytest.mark.parametrize(("policy", "fmt"), [("artwork", "dsjson"), ("titles", "dsjson"), ("artwork", "jsonl")])
def test_the_export_imports_back_with_the_same_estimates(world, policy, fmt):
    exported = world.client.get(f"/v1/logs/export?format={fmt}&policy={policy}").get_data()
    response = upload(world, exported, fmt=fmt, name=f"{policy} round trip")
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    native = offline.from_log(world.db, policy=policy, aggregation="earliest", default_reward=0.0)
    assert dataset["status"] == "ready" and dataset["policy"] == policy and dataset["name"] == f"{policy} round trip"
    assert dataset["decisions"] == len(native) and dataset["events"] == native.n_events and dataset["skipped"] == {}
    assert response.headers["Location"] == f"/v1/datasets/{dataset['id']}"
    imported = datasets.load(world.db, dataset["id"])
    assert imported.shared == native.shared and imported.event_ids == native.event_ids
    assert [imported.actions(i) for i in range(len(imported))] == [native.actions(i) for i in range(len(native))]
    assert imported.action_ids == native.action_ids and imported.contexts == native.contexts
    np.testing.assert_array_equal(imported.event_index, native.event_index)
    np.testing.assert_array_equal(imported.chosen, native.chosen)
    np.testing.assert_array_equal(imported.pscore, native.pscore)
    np.testing.assert_array_equal(imported.reward, native.reward)

    candidates = (
        CANDIDATES if policy == "artwork" else [*CANDIDATES[:4], {"name": "crossed", "kind": "vw", "vw_args": "-q UT"}]
    )
    request = {"policy": policy, "candidates": candidates, "segment_by": "segment"}
    from_log = offline.evaluate(world.db, deployment(world.app), offline.parse_spec(request))
    from_dataset = offline.evaluate(
        world.db, deployment(world.app), offline.parse_spec({**request, "policy": None, "dataset": dataset["id"]})
    )
    assert from_dataset["policy"] == policy and from_dataset["source"]["dataset"]["id"] == dataset["id"]
    assert from_dataset["reward_model"] == from_log["reward_model"]
    for ours, theirs in zip(from_dataset["candidates"], from_log["candidates"]):
        assert ours["estimates"] == theirs["estimates"], ours["name"]
        assert ours["lift_over_logged"] == theirs["lift_over_logged"]
        assert ours["segments"] == theirs["segments"]


# ---------------------------------------------------------------- DSJson from another service (bench/coffee_log.py)


def test_foreign_dsjson_reads_as_vw_would_read_it():
    lines, _, _ = foreign_log(1, seed=1)
    decision = logimport.read_line(lines[0], "dsjson")
    assert isinstance(decision, logimport.Decision)
    record = json.loads(lines[0])
    tod, weather = record["c"]["Context"]["tod"], record["c"]["Context"]["weather"]
    assert decision.shared == f"shared | visits:3 |Context tod={tod} weather={weather}"
    assert decision.actions == (
        "| price:4.5 |drink type=hot milk",
        "| price:5 |drink type=cold",
        "| price:3 |drink type=hot",
    )
    assert decision.action_ids == ("latte", "cold-brew", "tea")
    assert decision.chosen == record["_labelIndex"] and decision.pscore == record["_label_probability"]
    assert decision.reward == -record["_label_cost"] and decision.policy is None
    assert decision.context == {"Context.tod": tod, "Context.weather": weather, "visits": 3}
    assert decision.created_at == datetime(2026, 9, 1, tzinfo=UTC).timestamp()


def test_a_foreign_log_evaluates_and_covers_the_true_values(world):
    lines, default_truth, uniform_truth = foreign_log(3000, seed=3)
    skipped = [
        json.dumps({"_skipLearn": True, "c": {"_multi": DRINKS}}),
        json.dumps({"Timestamp": "2026-09-02T00:00:00Z", "c": {"_multi": DRINKS}, "_labelIndex": 0, "a": [1]}),
        json.dumps({"_outcomes": [], "c": {"_multi": DRINKS, "_slots": [{}]}}),
    ]
    response = upload(world, "\n".join([*lines[:10], *skipped, "", *lines[10:]]) + "\n", name="coffee")
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert dataset["decisions"] == 3000 and dataset["events"] == 3000 and dataset["policy"] is None
    assert sorted(dataset["skipped"].values()) == [1, 1, 1]
    report = offline.evaluate(
        world.db,
        deployment(world.app),
        offline.parse_spec(
            {"dataset": dataset["id"], "candidates": ["logged", "uniform", "default"], "segment_by": "Context.tod"}
        ),
    )
    assert report["policy"] is None and report["reward_model"]["vw_args"][:2] == datasets.FOREIGN_VW_ARGS
    assert report["reward_model"]["r_squared"] > 0.02
    results = {entry["name"]: entry for entry in report["candidates"]}
    for name, truth in (("default", default_truth), ("uniform", uniform_truth)):
        for estimator in ("ips", "snips", "dr"):
            estimate = results[name]["estimates"][estimator]
            assert estimate["ci_low"] <= truth <= estimate["ci_high"], (name, estimator, truth, estimate)
    assert {row["segment"] for row in results["default"]["segments"]} == {"morning", "evening"}
    with pytest.raises(
        offline.SpecError, match=r"candidates\[0\]\.kind: a model candidate runs a policy's stored model"
    ):
        offline.evaluate(
            world.db, deployment(world.app), offline.parse_spec({"dataset": dataset["id"], "candidates": ["greedy"]})
        )


# ---------------------------------------------------------------- refusals


def good_line() -> dict[str, Any]:
    return json.loads(foreign_log(1, seed=9)[0][0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("c"), "c: must be an object"),
        (lambda r: r["c"].update(_multi=[]), "c._multi: must be a list of 1 to"),
        (lambda r: r.update(_label_probability=0), "_label_probability: a probability must be in (0, 1]"),
        (lambda r: r.update(_label_probability="high"), "_label_probability: must be a finite number"),
        (lambda r: r.update(_labelIndex=7), "_labelIndex: must be an action number from 0 to 2"),
        (
            lambda r: r.update(_labelIndex=(r["_labelIndex"] + 1) % 3),
            "_labelIndex, _label_Action, a[0]: name different",
        ),
        (lambda r: r.update(Timestamp="soon"), "Timestamp: 'soon' is not an ISO 8601 time"),
        (lambda r: r.pop("EventId"), "EventId: must be text"),
        (
            lambda r: (
                r["c"].update(Context={"tod": {"deep": [1, {"x": [None, {}]}]}, "n": [1, "x", {"y": "z"}]})
                or r["c"].update(bad={"k": [[1]]})
            ),
            "c.bad.k[0]: a feature must be",
        ),
    ],
)
def test_a_malformed_line_is_refused_by_number_and_field_and_nothing_is_stored(world, change, message, monkeypatch):
    monkeypatch.setattr(datasets, "BATCH", 4)  # earlier lines were already written when the bad one is read
    lines, _, _ = foreign_log(9, seed=4)
    bad = good_line()
    change(bad)
    before = counts(world)
    response = upload(world, "\n".join([*lines, json.dumps(bad), *lines]))
    assert response.status_code == 422
    assert response.get_json()["error"]["message"].startswith(f"line 10: {message}"), response.get_json()
    assert "nothing was stored" in response.get_json()["error"]["message"]
    assert counts(world) == before


@pytest.mark.parametrize(
    ("body", "fmt", "message"),
    [
        ("not json\n", "dsjson", "line 1: line: not valid JSON"),
        ("[1, 2]\n", "dsjson", "line 1: line: must be a JSON object"),
        ("", "dsjson", "body: no line holds a decision that can be evaluated (the file is empty)"),
        (
            json.dumps({"_skipLearn": True}),
            "dsjson",
            "body: no line holds a decision that can be evaluated (1 never activated",
        ),
        (json.dumps({"event_id": "e", "colour": 1}), "jsonl", "line 1: colour: not a field of the JSON lines form"),
        (
            json.dumps(
                {
                    "event_id": "e",
                    "timestamp": 1,
                    "shared": "shared |U a",
                    "chosen": 0,
                    "probability": 1,
                    "reward": 1,
                    "actions": [{"id": "x", "features": "1:0:1 |A a"}],
                }
            ),
            "jsonl",
            "line 1: actions[0].features: features must follow a '|' namespace marker",
        ),
        (
            json.dumps(
                {
                    "event_id": "e",
                    "timestamp": 1,
                    "shared": "shared |U a:b",
                    "chosen": 0,
                    "probability": 1,
                    "reward": 1,
                    "actions": [{"id": "x", "features": "|A a"}],
                }
            ),
            "jsonl",
            "line 1: shared: the value of 'a:b' is not a number",
        ),
        (
            json.dumps(
                {
                    "event_id": "e",
                    "timestamp": 1,
                    "shared": "shared |U a",
                    "chosen": 1,
                    "probability": 1,
                    "reward": 1,
                    "actions": [{"id": "x", "features": "|A a"}],
                }
            ),
            "jsonl",
            "line 1: chosen: must be an action number from 0 to 0",
        ),
    ],
)
def test_files_that_are_not_logs_are_refused(world, body, fmt, message):
    before = counts(world)
    response = upload(world, body, fmt=fmt)
    assert response.status_code == 422 and response.get_json()["error"]["message"].startswith(message), (
        response.get_json()
    )
    assert counts(world) == before


def test_upload_requests_are_checked(world, tmp_path: Path):
    line = foreign_log(1, seed=2)[0][0]
    assert (
        upload(world, line, fmt="csv").get_json()["error"]["message"].startswith("format: must be one of dsjson, jsonl")
    )
    wrong = upload(world, line, content_type="multipart/form-data; boundary=x")
    assert wrong.status_code == 415 and "Content-Type" in wrong.get_json()["error"]["message"]
    assert upload(world, line, name="x" * 101).status_code == 422
    from service import create_app

    small = create_app({"DATA_DIR": str(tmp_path / "d"), "LEARNER": False, "MAX_IMPORT_BYTES": 100})
    response = small.test_client().post("/v1/datasets", data=line, content_type="application/x-ndjson")
    assert response.status_code == 413 and "limit of 100 bytes" in response.get_json()["error"]["message"]


def test_datasets_are_listed_shown_deleted_and_evaluated_from_the_cli(world, tmp_path: Path):
    lines, _, _ = foreign_log(300, seed=6)
    path = tmp_path / "coffee.dsjson"
    path.write_text("\n".join(lines) + "\n")
    runner = world.app.test_cli_runner()
    result = runner.invoke(args=["import-log", str(path), "--name", "coffee from the CLI"])
    assert result.exit_code == 0, result.output
    assert "300 decisions in 300 events, 0 lines skipped" in result.output
    listed = world.client.get("/v1/datasets").get_json()["datasets"]
    dataset = next(d for d in listed if d["name"] == "coffee from the CLI")
    assert world.client.get(f"/v1/datasets/{dataset['id']}").get_json() == dataset

    result = runner.invoke(args=["evaluate", "--dataset", dataset["id"], "--candidate", "uniform"])
    assert result.exit_code == 0, result.output
    assert f"dataset {dataset['id']} (coffee from the CLI): 300 decisions in 300 events" in result.output
    result = runner.invoke(args=["evaluate"])
    assert result.exit_code != 0 and "--policy titles|artwork|actions, or --dataset ID" in result.output
    bad = tmp_path / "bad.dsjson"
    bad.write_text(lines[0] + "\n{\n")
    result = runner.invoke(args=["import-log", str(bad)])
    assert result.exit_code == 1 and "line 2: line: not valid JSON" in result.output

    assert world.client.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
    assert world.client.get(f"/v1/datasets/{dataset['id']}").status_code == 404
    assert world.client.delete(f"/v1/datasets/{dataset['id']}").status_code == 404
    assert (
        world.db.execute("SELECT COUNT(*) FROM dataset_rounds WHERE dataset_id = ?", [dataset["id"]]).fetchone()[0] == 0
    )
    gone = world.client.post("/v1/evaluations", json={"dataset": dataset["id"]})
    assert (
        gone.status_code == 422
        and gone.get_json()["error"]["message"] == f"dataset: there is no dataset {dataset['id']!r}"
    )


def test_a_dataset_evaluates_in_the_background_over_http(world):
    lines, _, _ = foreign_log(400, seed=8)
    dataset = upload(world, "\n".join(lines)).get_json()
    request = {"dataset": dataset["id"], "candidates": ["uniform", "default"]}
    response = world.client.post("/v1/evaluations", json=request)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["policy"] is None and response.get_json()["request"]["dataset"] == dataset["id"]
    finished = wait_until_finished(world.client, response.headers["Location"])
    assert finished["status"] == "done", finished["error"]
    direct = offline.evaluate(world.db, deployment(world.app), offline.parse_spec(request))
    assert [c["estimates"] for c in finished["result"]["candidates"]] == [c["estimates"] for c in direct["candidates"]]
