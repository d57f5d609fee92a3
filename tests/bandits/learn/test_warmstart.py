"""Warm start: a Personalizer DSJson log trains the actions policy, which then prefers the logged winners."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bandits.log import datasets
from bandits.vw import blocks
from bench.coffee_log import DRINKS, TASTE, foreign_log
from tests.helpers import serve_newest_models, table_counts

# The drinks as the application ranks them through the Personalizer API, features as it logged them.
ACTIONS = [
    {"id": drink["_tag"], "features": [{key: value for key, value in drink.items() if not key.startswith("_")}]}
    for drink in DRINKS
]


def _context(tod: str, weather: str = "sun") -> list[dict[str, Any]]:
    return [{"Context": {"tod": tod, "weather": weather}}, {"visits": 3}]


def _import(client: Any, lines: list[str], *, policy: str | None = "actions") -> Any:
    query = "format=dsjson&name=coffee" + (f"&policy={policy}" if policy else "")
    return client.post(f"/v1/datasets?{query}", data="\n".join(lines) + "\n", content_type="application/x-ndjson")


def test_a_personalizer_log_warm_starts_a_policy_that_prefers_the_logged_winners(app, client, db):
    lines, default_truth, _ = foreign_log(3000, seed=21)
    imported = _import(client, lines)
    assert imported.status_code == 201, imported.get_json()
    dataset = imported.get_json()
    assert dataset["policy"] == "actions" and dataset["decisions"] == 3000

    # The imported lines are exactly what the Personalizer-compatible rank logs for the same request.
    ranked = client.post(
        "/personalizer/v1.0/rank",
        json={"contextFeatures": _context("morning"), "actions": ACTIONS, "eventId": "encoding-check"},
    ).get_json()
    event = db.execute("SELECT title_shared, title_block FROM events WHERE id = 'encoding-check'").fetchone()
    rounds = datasets.load(db, dataset["id"])
    first = next(
        i
        for i in range(len(rounds))
        if rounds.contexts[i].get("Context.weather") == "sun" and rounds.contexts[i].get("Context.tod") == "morning"
    )
    assert rounds.shared[first] == event[0]
    assert rounds.actions(first) == blocks.load(db, {event[1]})[event[1]]
    assert ranked["rewardActionId"] in {drink["_tag"] for drink in DRINKS}

    answer = client.post("/v1/policies/actions/warm-start", json={"dataset": dataset["id"]})
    assert answer.status_code == 201, answer.get_json()
    result = answer.get_json()
    assert result["decisions"] == 3000 and result["start"] == "empty"
    model = client.get("/v1/policies/actions").get_json()["model"]
    assert model["version"] == result["version"] and model["origin"] == f"warm start from {dataset['id']}"
    # Progressive validation on the log: the model beats the baseline (the first drink, latte, always),
    # whose estimate covers its true value.
    progressive = result["progressive"]
    assert progressive["baseline"]["ci_low"] < default_truth < progressive["baseline"]["ci_high"]
    assert progressive["greedy_minus_baseline"]["ci_low"] > 0.0
    assert progressive["greedy_model"]["ci_low"] < 0.55 < progressive["greedy_model"]["ci_high"]  # latte / tea

    # Served greedily, the warm-started policy picks each time of day's best drink from the first request.
    assert client.put("/v1/policies/actions", json={"epsilon": 0.0}).status_code == 200
    serve_newest_models(app)
    for tod in ("morning", "evening"):
        best = max(TASTE[tod], key=TASTE[tod].__getitem__)
        for weather in ("sun", "rain"):
            answer = client.post(
                "/personalizer/v1.0/rank", json={"contextFeatures": _context(tod, weather), "actions": ACTIONS}
            ).get_json()
            assert answer["rewardActionId"] == best, (tod, weather, answer)


def test_newest_start_keeps_the_model_and_the_cli_warm_starts_too(app, client, db, tmp_path: Path):
    lines, _, _ = foreign_log(400, seed=22)
    path = tmp_path / "coffee.dsjson"
    path.write_text("\n".join(lines) + "\n")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["import-log", str(path), "--policy", "actions", "--name", "coffee"])
    assert result.exit_code == 0, result.output
    dataset_id = result.output.split()[1]
    result = runner.invoke(args=["warm-start", "--policy", "actions", "--dataset", dataset_id])
    assert result.exit_code == 0, result.output
    assert "learned 400 decisions" in result.output and "greedy - baseline" in result.output
    first = client.get("/v1/policies/actions").get_json()["model"]
    answer = client.post(
        "/v1/policies/actions/warm-start", json={"dataset": dataset_id, "start": "newest", "passes": 2}
    )
    assert answer.status_code == 201
    second = client.get("/v1/policies/actions").get_json()["model"]
    assert second["version"] == first["version"] + 1
    assert (second["events_learned"], second["examples_learned"]) == (800, 400 + 800)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"dataset": "ds-none"}, "dataset: there is no dataset 'ds-none'"),
        (
            {"dataset": "FOREIGN"},
            "holds decisions of no Marquee policy, not in the actions policy's encoding "
            "(import another service's DSJson with policy=actions)",
        ),
        ({"dataset": "OWN", "start": "sideways"}, "start: must be one of empty, newest"),
        ({"dataset": "OWN", "passes": 0}, "passes"),
        ({"dataset": "OWN", "extra": 1}, "extra"),
    ],
)
def test_bad_warm_starts_are_refused_and_publish_nothing(client, db, body, message):
    lines, _, _ = foreign_log(50, seed=23)
    ids = {
        "FOREIGN": _import(client, lines, policy=None).get_json()["id"],
        "OWN": _import(client, lines).get_json()["id"],
    }
    body = {key: ids.get(value, value) if key == "dataset" else value for key, value in body.items()}
    before = table_counts(db)
    response = client.post("/v1/policies/actions/warm-start", json=body)
    assert response.status_code == 422, response.get_json()
    assert message in response.get_json()["error"]["message"]
    assert table_counts(db) == before
    assert client.post("/v1/policies/titles/warm-start", json={"dataset": ids["OWN"]}).status_code == 422


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda record: record["c"]["_multi"][1].pop("_tag"),
            "c._multi[1]._tag: the actions policy needs each action's id",
        ),
        (lambda record: record["c"]["_multi"][1].update(_tag="latte"), "two actions have the same _tag"),
        (lambda record: record["c"].update(deep={"a": {"b": {"c": {"d": {"e": 1}}}}}), "nest"),
    ],
)
def test_a_log_the_actions_policy_cannot_read_is_refused_whole(client, db, change, message):
    lines, _, _ = foreign_log(20, seed=24)
    record = json.loads(lines[7])
    change(record)
    lines[7] = json.dumps(record)
    response = _import(client, lines)
    assert response.status_code == 422 and "line 8: " in response.get_json()["error"]["message"]
    assert message in response.get_json()["error"]["message"], response.get_json()
    assert db.execute("SELECT COUNT(*) FROM datasets").fetchone()[0] == 0
    wrong = client.post("/v1/datasets?format=dsjson&policy=titles", data=lines[0], content_type="application/x-ndjson")
    assert wrong.status_code == 422 and "policy: only 'actions'" in wrong.get_json()["error"]["message"]
