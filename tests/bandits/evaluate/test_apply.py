"""Applying an evaluation's winner: only with evidence that it beats the logged policy, and then completely."""

from __future__ import annotations

import time
from typing import Any

import pytest
import vowpal_wabbit_next as vw

from bandits.model.policy import latest_model
from bandits.vw.workspace import TextExamples
from tests.helpers import run_to_the_end, wait_until_finished
from tests.worlds import LoggedWorld

CROSSED = {"name": "crossed", "kind": "vw", "vw_args": "-q UA -q GA -l 0.05", "epsilon": 0.05}
REQUEST = {
    "policy": "artwork",
    "candidates": [
        "logged",
        "uniform",
        "greedy",
        {"name": "greedy explores", "kind": "model", "epsilon": 0.05},
        CROSSED,
        {"name": "coin", "kind": "vw", "vw_args": "-q UA", "epsilon": 1.0},
    ],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> LoggedWorld:
    # A fixed exploration rate: a decayed one leaves a thin weight tail that can make a candidate's interval
    # fragile (tests/bandits/evaluate/test_weight_tail.py), and this module is about the other rules of apply.
    return LoggedWorld(tmp_path_factory.mktemp("apply"), events=600, config={"EPSILON_DECAY_AFTER": 0.0})


@pytest.fixture(scope="module")
def run(world: LoggedWorld) -> dict[str, Any]:
    return run_to_the_end(world.client, REQUEST)


def apply(world: LoggedWorld, run: dict[str, Any], candidate: Any) -> Any:
    return world.client.post(f"/v1/evaluations/{run['id']}/apply", json={"candidate": candidate})


def state(world: LoggedWorld) -> tuple[Any, ...]:
    policy = world.client.get("/v1/policies/artwork").get_json()
    return policy["settings"], policy["model"]["version"], world.db.execute("SELECT COUNT(*) FROM models").fetchone()[0]


@pytest.mark.parametrize(
    ("candidate", "status", "message"),
    [
        ("uniform", 422, "candidate: 'uniform' is a uniform baseline, not a configuration"),
        ("greedy", 422, "candidate: 'greedy' never explores (epsilon 0)"),
        # The newest model learned the decisions it is scored on: its estimate flatters it.
        ("greedy explores", 422, "candidate: 'greedy explores' is model version"),
        ("coin", 409, "refused: 'coin' is not shown to beat the logged policy: its DR estimate"),
        ("nobody", 422, "candidate: 'nobody' is not a candidate of"),
        (7, 422, "candidate: must be the name of one of the evaluation's candidates"),
    ],
)
def test_refusals_say_why_and_change_nothing(world, run, candidate, status, message):
    before = state(world)
    response = apply(world, run, candidate)
    assert response.status_code == status and response.get_json()["error"]["message"].startswith(message), (
        response.get_json()
    )
    assert state(world) == before
    if candidate == "coin":
        coin = next(c for c in run["result"]["candidates"] if c["name"] == "coin")["estimates"]["dr"]
        assert coin["ci_low"] <= run["result"]["mean_reward"]  # the refusal is the evidence's, not a rule of thumb
        assert f"{coin['ci_low']:.4f}" in response.get_json()["error"]["message"]


def test_unknown_and_unfinished_runs(world, run):
    assert world.client.post("/v1/evaluations/ev-nope/apply", json={"candidate": "crossed"}).status_code == 404
    assert (
        world.client.post(
            f"/v1/evaluations/{run['id']}/apply", json={"candidate": "crossed", "force": True}
        ).status_code
        == 422
    )
    queued = world.client.post("/v1/evaluations", json={"policy": "artwork", "candidates": ["uniform"]})
    response = world.client.post(f"/v1/evaluations/{queued.get_json()['id']}/apply", json={"candidate": "uniform"})
    wait_until_finished(world.client, queued.headers["Location"])
    assert response.status_code in (409, 422)  # queued or running: 409; finished this fast: uniform is no config


def test_the_winner_becomes_the_policy_with_the_model_it_was_trained_to(world, run):
    result = {c["name"]: c for c in run["result"]["candidates"]}
    assert result["crossed"]["estimates"]["dr"]["ci_low"] > run["result"]["mean_reward"]
    before_version = latest_model(world.db, "artwork").version
    response = apply(world, run, "crossed")
    assert response.status_code == 200, response.get_json()
    applied = response.get_json()
    assert applied["version"] == before_version + 1 and applied["evidence"]["logged_dr"] == run["result"]["mean_reward"]
    assert (
        applied["settings"]["vw_args"] == ["-q", "UA", "-q", "GA", "-l", "0.05"]
        and applied["settings"]["epsilon"] == 0.05
    )
    assert applied["settings"]["epsilon_decay_after"] == 0.0  # scored at a fixed rate, so it serves at that rate
    record = latest_model(world.db, "artwork")
    assert record.origin == f"evaluation {run['id']}: crossed" and record.vw_args == applied["settings"]["vw_args"]
    stored = world.db.execute(
        "SELECT blob FROM evaluation_models WHERE run_id = ? AND candidate = 'crossed'", [run["id"]]
    ).fetchone()[0]
    assert record.blob == stored
    # The published model is the trained one, not an empty workspace: it scores artworks differently.
    empty = TextExamples(vw.Workspace(["--cb_adf", *record.vw_args]))
    trained = TextExamples(vw.Workspace(["--cb_adf", *record.vw_args], model_data=record.blob))
    example = [
        "shared |U segment=night-owl device=tv |T id=t00 |G comedy",
        "|A id=t00-dark-warm",
        "|A id=t00-bright-cool",
    ]
    assert dict(trained.predict(example)) != dict(empty.predict(example))
    # The service serves it: serving loads new versions in the background, so rows soon use it.
    served = []
    deadline = time.monotonic() + 30  # only guards against a hang
    while applied["version"] not in served and time.monotonic() < deadline:
        ranked = world.client.post(
            "/v1/rank", json={"user": {"id": "u1", "features": {"segment": "family"}}, "slots": 2}
        )
        served.append(
            world.client.get(f"/v1/events/{ranked.get_json()['event_id']}").get_json()["model_versions"]["artwork"]
        )
        time.sleep(0.05)
    assert served[-1] == applied["version"], served
    # The evaluation was made under the old settings: applying from it again is refused.
    again = apply(world, run, "crossed")
    assert again.status_code == 409 and "settings changed since the evaluation" in again.get_json()["error"]["message"]
