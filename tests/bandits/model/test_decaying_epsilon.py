"""Epsilon-greedy whose rate decays as the model learns: the schedule, served probabilities, and refusals."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bandits.learn.learner import Learner
from bandits.model.exploration import Exploration
from bandits.storage import connect
from service import config as settings
from service import create_app
from tests.helpers import add_catalog, assert_setting_refused, deployment, serve_newest_models

TITLES = 8


@pytest.mark.parametrize(
    ("learned", "expected"),
    [
        (0, 0.2),
        (100, 0.2),
        (800, 0.1),
        (6400, 0.05),
        (10**9, 0.02),
    ],
)
def test_the_rate_is_fixed_then_falls_as_the_cube_root_down_to_its_floor(learned, expected):
    explorer = Exploration.decaying(epsilon=0.2, decay_after=100, floor=0.02, examples_learned=learned)
    assert explorer.epsilon == pytest.approx(expected)


def test_no_decay_keeps_the_rate_and_a_floor_never_raises_it():
    assert Exploration.decaying(epsilon=0.2, decay_after=0, floor=0.0, examples_learned=10**6).epsilon == 0.2
    assert Exploration.decaying(epsilon=0.05, decay_after=10, floor=0.3, examples_learned=10**6).epsilon == 0.05


@pytest.fixture()
def served(tmp_path):
    app = create_app(
        {
            "DATA_DIR": str(tmp_path / "data"),
            "LEARNER": False,
            "REWARD_WAIT_SECONDS": 600.0,
            "EPSILON": 0.4,
            "EPSILON_DECAY_AFTER": 50.0,
            "EPSILON_FLOOR": 0.1,
        }
    )
    add_catalog(app.test_client(), titles=TITLES)
    return app


def test_served_probabilities_follow_the_rate_at_the_serving_model(served):
    client = served.test_client()
    rng = np.random.default_rng(5)
    for _ in range(120):
        body = client.post("/v1/rank", json={"user": {"id": f"u{int(rng.integers(20))}"}, "slots": 3}).get_json()
        for slot in body["slots"]:
            if int(slot["title_id"][1:]) % 2 == 0 and rng.random() < 0.5:
                client.post(f"/v1/events/{body['event_id']}/reward", json={"title_id": slot["title_id"], "value": 1.0})
    Learner(connect(served.config["DATABASE"]), deployment(served)).run_once(now=time.time() + 601)
    serve_newest_models(served)
    learned = client.get("/v1/policies/titles").get_json()["model"]["examples_learned"]
    assert learned == 360
    epsilon = max(0.1, 0.4 * (50 / learned) ** (1 / 3))  # 0.207: well above the floor, well below 0.4
    seen = set()
    for _ in range(40):
        slot = client.post("/v1/rank", json={"user": {"id": "u1"}, "slots": 1}).get_json()["slots"][0]
        seen.add(round(slot["title_probability"], 9))
    # Every title's estimate differs after learning: the greedy title has (1 - eps) + eps / k, the others eps / k.
    assert seen <= {round(1 - epsilon + epsilon / TITLES, 9), round(epsilon / TITLES, 9)}
    assert round(1 - epsilon + epsilon / TITLES, 9) in seen


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"epsilon_decay_after": -1}, "epsilon_decay_after: must be a number of learned examples"),
        ({"epsilon_decay_after": "soon"}, "epsilon_decay_after: must be a number"),
        ({"epsilon_floor": 1.5}, "epsilon_floor: must be a number in [0, 1]"),
        ({"epsilon_floor": True}, "epsilon_floor: must be a number in [0, 1]"),
    ],
)
def test_bad_decay_settings_are_refused_and_change_nothing(served, body, message):
    assert_setting_refused(served, "titles", body, message)


def test_deployment_settings_are_checked():
    with pytest.raises(ValueError, match="EPSILON_DECAY_AFTER must be >= 0"):
        settings.load(environ={"MARQUEE_EPSILON_DECAY_AFTER": "-5"})
    with pytest.raises(ValueError, match="EPSILON_FLOOR must be in"):
        settings.load(environ={"MARQUEE_EPSILON_FLOOR": "2"})


def test_an_evaluation_candidate_decays_as_the_policy_would():
    from bandits.evaluate import offline

    candidate = offline.parse_candidate(
        {"kind": "vw", "vw_args": "-q UA", "epsilon": 0.2, "epsilon_decay_after": 100, "epsilon_floor": 0.02}
    )
    assert candidate.name == "vw -q UA eps=0.2 decaying after 100"
    assert offline.parse_candidate(candidate.as_dict()) == candidate
    assert [offline.candidate_exploration(candidate, n).epsilon for n in (50, 800, 10**9)] == pytest.approx(
        [0.2, 0.1, 0.02]
    )
    fixed = offline.parse_candidate({"kind": "vw", "vw_args": "-q UA", "epsilon": 0.2})
    assert offline.candidate_exploration(fixed, 10**9).epsilon == 0.2 and "epsilon_decay_after" not in fixed.as_dict()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"kind": "uniform", "epsilon_decay_after": 100},
            "candidate.epsilon_decay_after: only for epsilon-greedy candidates",
        ),
        (
            {"kind": "vw", "vw_args": "-q UA", "exploration": "squarecb", "epsilon_floor": 0.1},
            "candidate.epsilon_floor: only for epsilon-greedy candidates",
        ),
        (
            {"kind": "vw", "vw_args": "-q UA", "epsilon_decay_after": -1},
            "candidate.epsilon_decay_after: must be a number in",
        ),
        ({"kind": "vw", "vw_args": "-q UA", "epsilon_floor": 2}, "candidate.epsilon_floor: must be a number in [0, 1]"),
    ],
)
def test_bad_candidate_decay_is_refused_by_name(value, message):
    from bandits.evaluate import offline

    with pytest.raises(offline.SpecError) as raised:
        offline.parse_candidate(value)
    assert str(raised.value).startswith(message)
