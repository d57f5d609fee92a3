"""Automatic optimization: a search space judged out of sample, applied on evidence only, kept, shown, rolled back."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import pytest

from bandits.evaluate import offline, optimize, runs
from bandits.model.policy import DEFAULT_VW_ARGS, PolicyConfig, latest_model, load_policy
from service import create_app
from service.workers import child_environment, spawn
from tests.helpers import deployment
from tests.worlds import LoggedWorld

# Learns almost nothing and cannot tell segments apart: the defaults do much better on this audience.
MIS_TUNED = {"vw_args": "-l 0.001", "epsilon": 0.2}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> LoggedWorld:
    # A fixed exploration rate, so that no candidate's interval is fragile from a decayed logger's thin tail.
    return LoggedWorld(
        tmp_path_factory.mktemp("optimize"),
        events=600,
        config={"EPSILON_DECAY_AFTER": 0.0},
        policies={"artwork": MIS_TUNED},
    )


def wait(world: LoggedWorld, optimization_id: str, *, deadline_seconds: float = 180.0) -> dict[str, Any]:
    """Poll an optimization until it is decided (the deadline only guards against a hang)."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        body = world.client.get(f"/v1/optimizations/{optimization_id}").get_json()
        if body["status"] != "running":
            return body
        time.sleep(0.2)
    raise AssertionError(f"optimization {optimization_id} was not decided: {body}")


def policy_state(world: LoggedWorld) -> tuple[Any, ...]:
    record = latest_model(world.db, "artwork")
    return world.client.get("/v1/policies/artwork").get_json()["settings"], record.version, record.blob


@pytest.fixture(scope="module")
def applied(world: LoggedWorld) -> dict[str, Any]:
    response = world.client.post("/v1/optimizations", json={"policy": "artwork"})
    assert response.status_code == 202, response.get_json()
    assert response.headers["Location"] == f"/v1/optimizations/{response.get_json()['id']}"
    return wait(world, response.get_json()["id"])


def test_the_search_space_varies_rates_interactions_regularization_and_exploration():
    default = PolicyConfig(
        name="artwork",
        epsilon=0.1,
        vw_args=list(DEFAULT_VW_ARGS["artwork"]),
        reward_wait=10.0,
        default_reward=0.0,
        epsilon_decay_after=100.0,
        epsilon_floor=0.01,
    )
    space = {candidate["name"]: candidate for candidate in optimize.search_space(default)}
    assert "default options" not in space  # it is what serves
    assert set(space) == {
        "learning rate 0.05",
        "learning rate 0.1",
        "learning rate 0.5",
        "L2 1e-06",
        "without -q UA",
        "without -q UG",
        "without -q IA",
        "without -q KA",
        "without -q KG",
        "epsilon 0.05",
        "epsilon 0.2",
        "exploration bonus 2",
    }
    assert space["exploration bonus 2"]["exploration_bonus"] == 2.0
    crosses = ["-q", "UA", "-q", "UG", "-q", "IA", "-q", "KA", "-q", "KG"]
    assert space["learning rate 0.5"]["vw_args"] == [*crosses, "--clip_p", "1", "-l", "0.5"]
    assert space["without -q UG"]["vw_args"] == [
        "-q",
        "UA",
        "-q",
        "IA",
        "-q",
        "KA",
        "-q",
        "KG",
        "-l",
        "0.2",
        "--clip_p",
        "1",
    ]
    # Every candidate explores as the policy does, decay included, so its estimate is of what would serve.
    assert all(c["epsilon_decay_after"] == 100.0 and c["epsilon_floor"] == 0.01 for c in space.values())
    assert {c["epsilon"] for c in space.values()} == {0.1, 0.05, 0.2}
    for candidate in space.values():
        offline.parse_candidate(candidate)  # VW accepts every one
    bonused = {c["name"]: c for c in optimize.search_space(replace(default, exploration_bonus=2.0))}
    assert "exploration bonus 2" not in bonused and "exploration_bonus" not in bonused["without the exploration bonus"]
    assert all(c["exploration_bonus"] == 2.0 for name, c in bonused.items() if name != "without the exploration bonus")
    mis_tuned = PolicyConfig(name="artwork", epsilon=0.3, vw_args=["-l", "0.001"], reward_wait=10.0, default_reward=0.0)
    space = {candidate["name"]: candidate for candidate in optimize.search_space(mis_tuned)}
    assert space["default options"]["vw_args"] == DEFAULT_VW_ARGS["artwork"]
    assert "learning rate 0.2" in space and not any(name.startswith("without") for name in space)
    decaying = space["epsilon decaying after 100"]  # its rate is fixed: a decaying one is tried
    assert (decaying["epsilon"], decaying["epsilon_decay_after"], decaying["epsilon_floor"]) == (0.3, 100.0, 0.01)
    assert space["epsilon 0.5"]["epsilon"] == 0.5 and space["epsilon 0.15"]["epsilon"] == 0.15


def test_a_mis_tuned_policy_is_replaced_by_a_candidate_shown_better_out_of_sample(world, applied):
    assert applied["status"] == "applied", applied
    decision = applied["decision"]
    chosen = next(c for c in applied["candidates"] if c["name"] == decision["chosen"])
    serving = next(c for c in applied["candidates"] if c["name"] == optimize.SERVING)
    assert all(c["scoring"] == "progressive" for c in applied["candidates"])  # none is scored on what it learned
    assert chosen["dr"]["ci_low"] > decision["serving_estimate"] == applied["mean_reward"]
    assert decision["serving_options_dr"] == serving["dr"]  # the serving configuration replayed, for reference
    assert chosen["verdict"] == "beats logged"
    # the best candidate by lower bound among those eligible
    assert chosen["dr"]["ci_low"] == max(
        c["dr"]["ci_low"]
        for c in applied["candidates"]
        if c["verdict"] == "beats logged" and c["name"] != optimize.SERVING
    )
    settings = load_policy(world.db, deployment(world.app), "artwork")
    assert settings.vw_args == chosen["candidate"]["vw_args"] and settings.vw_args != ["-l", "0.001"]
    record = latest_model(world.db, "artwork")
    assert (
        record.version == applied["applied_version"]
        and record.origin == f"evaluation {applied['evaluation']}: {chosen['name']}"
    )
    assert applied["replaced"]["overrides"] == {"epsilon": 0.2, "vw_args": ["-l", "0.001"]}
    listed = world.client.get("/v1/optimizations?policy=artwork").get_json()["optimizations"]
    assert [item["id"] for item in listed] == [applied["id"]] and listed[0]["status"] == "applied"
    assert world.client.get("/v1/optimizations?policy=titles").get_json()["optimizations"] == []


def test_the_page_and_the_dashboard_show_the_candidates_and_the_decision(world, applied):
    page = world.client.get("/optimizations").get_data(as_text=True)
    assert applied["id"] in page and "(applied)" in page and applied["decision"]["chosen"] in page
    assert f"/evaluations/{applied['evaluation']}" in page
    for candidate in applied["candidates"]:
        assert candidate["name"] in page and f"{candidate['dr']['ci_low']:.4f}" in page
    dashboard = world.client.get("/dashboard").get_data(as_text=True)
    assert 'data-table="optimizations"' in dashboard and applied["reason"].replace("'", "&#39;") in dashboard


def test_a_rollback_puts_back_the_settings_and_the_model_it_replaced(world, applied):
    replaced_blob = world.db.execute("SELECT before_blob FROM optimizations WHERE id = ?", [applied["id"]]).fetchone()[
        0
    ]
    after_overrides = world.client.get("/v1/policies/artwork").get_json()["settings"]
    changed = {key: after_overrides[key] for key in after_overrides["overridden"]}
    # settings changed by hand since: the rollback would undo them, so it is refused and changes nothing
    world.client.put("/v1/policies/artwork", json={**changed, "epsilon": 0.15})
    before = policy_state(world)
    response = world.client.post(f"/v1/optimizations/{applied['id']}/rollback")
    assert response.status_code == 409 and "settings changed since" in response.get_json()["error"]["message"]
    assert policy_state(world) == before
    world.client.put("/v1/policies/artwork", json=changed)
    version = latest_model(world.db, "artwork").version
    response = world.client.post(f"/v1/optimizations/{applied['id']}/rollback")
    assert response.status_code == 200, response.get_json()
    rolled = response.get_json()
    assert rolled["status"] == "rolled back" and rolled["rollback_version"] == version + 1
    settings = load_policy(world.db, deployment(world.app), "artwork")
    assert (
        settings.vw_args == ["-l", "0.001"]
        and settings.epsilon == 0.2
        and settings.overridden == ["epsilon", "vw_args"]
    )
    record = latest_model(world.db, "artwork")
    assert record.blob == bytes(replaced_blob) and record.origin.startswith(f"rollback of optimization {applied['id']}")
    again = world.client.post(f"/v1/optimizations/{applied['id']}/rollback")
    assert again.status_code == 409 and "is rolled back" in again.get_json()["error"]["message"]
    assert world.client.post("/v1/optimizations/op-nope/rollback").status_code == 404


def test_no_candidate_shown_better_keeps_the_policy_as_it_is(world, applied):
    before = policy_state(world)
    response = world.client.post(
        "/v1/optimizations",
        json={
            "policy": "artwork",
            "candidates": [{"name": "coin", "kind": "vw", "vw_args": "-l 0.001", "epsilon": 1.0}],
        },
    )
    assert response.status_code == 202, response.get_json()
    kept = wait(world, response.get_json()["id"])
    assert kept["status"] == "kept" and kept["reason"].startswith(
        "kept: no candidate is shown to beat the serving policy"
    ), kept
    assert kept["decision"]["chosen"] is None and kept["replaced"] is None
    assert policy_state(world) == before
    response = world.client.post(f"/v1/optimizations/{kept['id']}/rollback")
    assert response.status_code == 409 and "only an applied optimization" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"policy": "nope"}, "policy: must be one of titles, artwork, actions"),
        ({}, "policy: must be one of"),
        ({"policy": "artwork", "candidates": "-l 0.1"}, "candidates: must be a list of 1 to 19 vw candidates"),
        ({"policy": "artwork", "candidates": []}, "candidates: must be a list of 1 to 19"),
        (
            {"policy": "artwork", "candidates": ["-q UA --bogus 3"]},
            "candidates[0].vw_args: option '--bogus' is not accepted",
        ),
        ({"policy": "artwork", "candidates": ["-q UA", "--cb_type nonsense"]}, "candidates[1].vw_args"),
        ({"policy": "artwork", "candidates": ["uniform"]}, "candidates[0].vw_args"),
        ({"policy": "artwork", "candidates": [{"kind": "uniform"}]}, "candidates[0].kind: an optimization tries"),
        (
            {"policy": "artwork", "candidates": [{"name": "serving options", "kind": "vw", "vw_args": "-q UA"}]},
            "candidates[0].name: 'serving options' is the policy's own configuration",
        ),
        (
            {"policy": "artwork", "candidates": [{"kind": "vw", "vw_args": "-q UA", "epsilon": 2}]},
            "candidates[0].epsilon: must be a number in [0, 1]",
        ),
        ({"policy": "artwork", "force": True}, "force: not a field (fields: policy, candidates)"),
    ],
)
def test_bad_requests_are_refused_by_name_and_start_nothing(world, applied, body, message):
    rows = world.db.execute(
        "SELECT (SELECT COUNT(*) FROM optimizations), (SELECT COUNT(*) FROM evaluations)"
    ).fetchone()
    response = world.client.post("/v1/optimizations", json=body)
    assert response.status_code == 422 and response.get_json()["error"]["message"].startswith(message), (
        response.get_json()
    )
    assert (
        world.db.execute("SELECT (SELECT COUNT(*) FROM optimizations), (SELECT COUNT(*) FROM evaluations)").fetchone()
        == rows
    )


def test_a_policy_with_too_small_a_log_or_one_under_way_is_refused(world, applied, tmp_path):
    empty = create_app({"DATA_DIR": str(tmp_path / "empty"), "LEARNER": False, "AUTH": "off"}).test_client()
    response = empty.post("/v1/optimizations", json={"policy": "titles"})
    assert response.status_code == 409
    assert response.get_json()["error"]["message"].startswith(
        "policy: the titles log holds 0 events whose reward window"
    )
    first = optimize.start(world.db, deployment(world.app), "artwork", trigger="request", candidates=["-q UA -l 0.1"])
    response = world.client.post("/v1/optimizations", json={"policy": "artwork"})
    assert (
        response.status_code == 409
        and "an optimization of artwork is under way" in response.get_json()["error"]["message"]
    )
    assert optimize.run(deployment(world.app), first) in (
        "applied",
        "kept",
    )  # decided in this process; none left running


def test_a_window_without_exploration_fails_the_optimization_and_applies_nothing(tmp_path_factory):
    # An apprentice serves the caller's own choice with probability 1: its log cannot estimate any other policy.
    greedy = LoggedWorld(
        tmp_path_factory.mktemp("greedy"),
        events=250,
        config={"ARTWORK_TRIAL_SHARE": 0.0},
        policies={"artwork": {"learning_mode": "apprentice"}},
    )
    before = latest_model(greedy.db, "artwork").version
    optimization_id = optimize.start(greedy.db, deployment(greedy.app), "artwork", trigger="request")
    assert optimize.run(deployment(greedy.app), optimization_id) == "failed"
    found = optimize.get(greedy.db, optimization_id)
    assert found["reason"].startswith("the window holds 0 explored decisions of 1000")
    assert latest_model(greedy.db, "artwork").version == before


def test_a_killed_optimization_is_reported_failed(world, applied):
    optimization_id = optimize.start(
        world.db, deployment(world.app), "artwork", trigger="request", candidates=["-q UA"], now=time.time() - 3600
    )
    evaluation = world.db.execute("SELECT evaluation FROM optimizations WHERE id = ?", [optimization_id]).fetchone()[0]
    found = world.client.get(f"/v1/optimizations/{optimization_id}").get_json()  # its process never started
    assert found["status"] == "failed" and found["reason"].startswith(
        "the evaluation failed: the evaluation process stopped"
    )
    assert runs.get(world.db, evaluation)["status"] == "failed"


def test_the_learner_schedule_starts_optimizations_of_the_policies_that_ask(world, applied, monkeypatch):
    for name, value in child_environment(world.app.config).items():
        if name.startswith("MARQUEE_") or name == "PYTHONPATH":
            monkeypatch.setenv(name, value)  # the learner process runs with the app's settings
    config, typed = world.app.config, deployment(world.app)
    assert optimize.due(world.db, typed) == []  # auto_optimize is off by default
    settings = world.client.get("/v1/policies/artwork").get_json()["settings"]
    world.client.put(
        "/v1/policies/artwork", json={**{k: settings[k] for k in settings["overridden"]}, "auto_optimize": True}
    )
    assert optimize.due(world.db, typed) == ["artwork"]
    started = optimize.Schedule(start=lambda id: spawn(config, "optimization", id)).run_if_due(world.db, typed)
    assert len(started) == 1
    found = wait(world, started[0])
    assert found["trigger"] == "schedule" and found["status"] in ("applied", "kept"), found
    assert optimize.due(world.db, typed) == []  # not again before AUTO_OPTIMIZE_HOURS
    assert optimize.due(world.db, typed, now=time.time() + typed.auto_optimize_hours * 3600 + 1) == ["artwork"]
    assert os.environ["MARQUEE_DATABASE"] == config["DATABASE"]


def test_search_spaces_the_evaluation_would_refuse_are_a_422_or_never_made(world, applied):
    # the same candidate twice: refused before anything is stored
    response = world.client.post("/v1/optimizations", json={"policy": "artwork", "candidates": ["-l 0.1", "-l 0.1"]})
    assert response.status_code == 422 and "is used twice" in response.get_json()["error"]["message"]
    # options VW accepts but that repeat an interaction, or hold many: the default space stays valid
    repeated = PolicyConfig(
        name="artwork", epsilon=0.1, vw_args=["-q", "UA", "-q", "UA", "-q", "IA"], reward_wait=10.0, default_reward=0.0
    )
    names = [candidate["name"] for candidate in optimize.search_space(repeated)]
    assert len(names) == len(set(names))
    many = PolicyConfig(
        name="titles",
        epsilon=0.1,
        reward_wait=10.0,
        default_reward=0.0,
        vw_args=[
            arg
            for pair in ("UT", "UG", "IG", "IT", "UP", "PT", "PG", "IP", "GT", "TT", "UU", "II", "GG")
            for arg in ("-q", pair)
        ],
    )
    assert len(optimize.search_space(many)) == offline.MAX_CANDIDATES - 1
    # an object that names no exploration explores as the policy does
    found = optimize.check_candidates(
        load_policy(world.db, deployment(world.app), "artwork"), [{"name": "plain", "kind": "vw", "vw_args": "-q UA"}]
    )
    assert found[0]["epsilon"] == load_policy(world.db, deployment(world.app), "artwork").epsilon > 0


def test_an_optimization_whose_process_stopped_after_its_evaluation_is_failed_not_left_running(world, applied):
    optimization_id = optimize.start(
        world.db, deployment(world.app), "artwork", trigger="request", candidates=["-q UA"]
    )
    evaluation = world.db.execute("SELECT evaluation FROM optimizations WHERE id = ?", [optimization_id]).fetchone()[0]
    runs.run(deployment(world.app), evaluation)  # the evaluation ends; the process dies before deciding
    world.db.execute("UPDATE evaluations SET finished_at = finished_at - 60 WHERE id = ?", [evaluation])
    found = world.client.get(f"/v1/optimizations/{optimization_id}").get_json()
    assert found["status"] == "failed" and "stopped after its evaluation" in found["reason"]
    assert (
        optimize.conclude(world.db, deployment(world.app), optimization_id) == "failed"
    )  # a late decision applies nothing
    assert (
        world.client.post("/v1/optimizations", json={"policy": "artwork", "candidates": ["-q UA"]}).status_code == 202
    )
