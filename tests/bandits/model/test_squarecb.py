"""SquareCB served end to end: set per policy, probabilities exact and reproducible from the model that made them."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from bandits.evaluate import offline
from bandits.evaluate.runs import verdict
from bandits.learn.learner import Learner
from bandits.storage import connect
from service import config as settings
from service import create_app
from tests.helpers import add_catalog, assert_setting_refused, deployment, serve_newest_models

TITLES = 8


@pytest.fixture()
def served(tmp_path):
    app = create_app(
        {"DATA_DIR": str(tmp_path / "data"), "LEARNER": False, "REWARD_WAIT_SECONDS": 600.0, "EXPLORATION": "squarecb"}
    )
    add_catalog(app.test_client(), titles=TITLES)
    return app


def rank_rows(client, rows: int, rng: np.random.Generator) -> None:
    for _ in range(rows):
        user = {"id": f"u{int(rng.integers(50))}", "features": {"segment": ["a", "b"][int(rng.integers(2))]}}
        body = client.post("/v1/rank", json={"user": user, "slots": 3}).get_json()
        for slot in body["slots"]:
            liked = (int(slot["title_id"][1:]) % 3 == 0) + slot["artwork_id"].endswith("dark-warm")
            if rng.random() < 0.2 * liked:
                client.post(f"/v1/events/{body['event_id']}/reward", json={"title_id": slot["title_id"], "value": 1.0})


def test_an_untrained_model_explores_uniformly(served):
    client = served.test_client()
    policy = client.get("/v1/policies/titles").get_json()
    assert policy["settings"]["exploration"] == "squarecb" and policy["settings"]["gamma_scale"] == 10.0
    for _ in range(5):
        for slot in client.post("/v1/rank", json={"slots": 3}).get_json()["slots"]:
            assert slot["title_probability"] == pytest.approx(1 / (TITLES - slot["position"]))
            assert slot["artwork_probability"] == pytest.approx(1 / 3)


def test_logged_probabilities_are_those_the_model_version_gives(served):
    """The offline ``model`` candidate with SquareCB, at the serving version, reproduces every logged probability.

    The policies also raise little-tried actions by the default exploration bonus, counted by the version.
    """
    client = served.test_client()
    db = connect(served.config["DATABASE"])
    rng = np.random.default_rng(3)
    rank_rows(client, 200, rng)
    learner = Learner(db, deployment(served))
    learner.run_once(now=time.time() + 601)
    serve_newest_models(served)
    serving = {policy: offline.model_blob(db, policy, None) for policy in ("titles", "artwork")}
    since = time.time()
    rank_rows(client, 150, rng)
    learner.run_once(now=time.time() + 601)  # closes the windows (and learns: the rows were ranked before)
    for policy, (version, blob, examples, tried) in serving.items():
        assert examples > 0
        rounds = offline.from_log(db, policy=policy, aggregation="earliest", default_reward=0.0, since=since)
        assert rounds.n_events == 150
        assert tried is not None and sum(json.loads(tried).values()) == examples  # every learned pick counted
        candidate = offline.parse_candidate(
            {"kind": "model", "version": version, "exploration": "squarecb", "exploration_bonus": 2.0}
        )
        pmf = offline.target_distribution(
            rounds, candidate, model_blob=blob, model_examples=examples, model_tried=tried
        )
        assert pmf is not None
        assert pmf[rounds.logged_flat] == pytest.approx(rounds.pscore, rel=1e-5)  # VW scores are float32
        # Learning narrowed the draws: the logged probabilities are no longer the uniform ones.
        uniform = 1.0 / rounds.sizes
        assert np.abs(rounds.pscore - uniform).max() > 0.05


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"exploration": "ucb"}, "exploration: must be one of epsilon-greedy, squarecb"),
        ({"exploration": "squarecb", "gamma_scale": 0}, "gamma_scale: must be a number in (0, 1000000]"),
        ({"gamma_scale": "10"}, "gamma_scale: must be a number"),
        ({"gamma_exponent": 1.5}, "gamma_exponent: must be a number in [0, 1]"),
    ],
)
def test_bad_exploration_settings_are_refused_and_change_nothing(served, body, message):
    assert_setting_refused(served, "artwork", body, message)


def test_switching_rule_per_policy_is_served_at_once(served):
    client = served.test_client()
    body = client.put("/v1/policies/artwork", json={"exploration": "epsilon-greedy", "epsilon": 0.0}).get_json()
    assert body["settings"]["exploration"] == "epsilon-greedy"
    slots = client.post("/v1/rank", json={"slots": 3}).get_json()["slots"]
    # Untrained artwork estimates tie, so epsilon-greedy at 0 shares the greedy mass evenly: still 1/3.
    assert all(s["artwork_probability"] == pytest.approx(1 / 3) for s in slots)
    assert all(s["title_probability"] == pytest.approx(1 / (TITLES - s["position"])) for s in slots)


def test_deployment_setting_is_checked():
    with pytest.raises(ValueError, match="EXPLORATION must be epsilon-greedy or squarecb"):
        settings.load(environ={"MARQUEE_EXPLORATION": "thompson"})
    with pytest.raises(ValueError, match="SQUARECB_GAMMA_EXPONENT"):
        settings.load(environ={"MARQUEE_SQUARECB_GAMMA_EXPONENT": "2"})


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ({"kind": "vw", "exploration": "squarecb", "gamma_scale": 10.0, "gamma_exponent": 0.5}, "beats logged"),
        ({"kind": "vw", "exploration": "epsilon-greedy", "epsilon": 0.0}, "never explores"),
        ({"kind": "vw", "epsilon": 0.0}, "never explores"),  # reports written before SquareCB existed
    ],
)
def test_squarecb_candidates_count_as_exploring(candidate, expected):
    entry = {"candidate": candidate, "estimates": {"dr": {"ci_low": 0.5}}}
    assert verdict(entry, 0.3) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"kind": "uniform", "exploration": "squarecb"}, "exploration: only for candidates of kind model or vw"),
        ({"kind": "model", "gamma_scale": 5}, "gamma_scale: only with exploration squarecb"),
        ({"kind": "model", "exploration": "squarecb", "epsilon": 0.1}, "epsilon: only with exploration epsilon-greedy"),
        (
            {"kind": "model", "exploration": "squarecb", "gamma_exponent": -1},
            "gamma_exponent: must be a number in [0, 1]",
        ),
        ({"kind": "model", "exploration": "softmax"}, "exploration: must be one of epsilon-greedy, squarecb"),
    ],
)
def test_bad_squarecb_candidates_are_named(value, message):
    with pytest.raises(offline.SpecError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        offline.parse_candidate(value)


def test_squarecb_candidate_round_trips():
    candidate = offline.parse_candidate({"kind": "vw", "vw_args": "-q UA", "exploration": "squarecb", "gamma_scale": 5})
    assert candidate.name == "vw -q UA squarecb"
    assert offline.parse_candidate(candidate.as_dict()) == candidate
