"""The exploration bonus: little-tried actions raised by the standard error of their rate, counted per model version."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from bandits.learn.learner import Learner
from bandits.model import exploration
from bandits.model.exploration import BONUS_FLOOR, Exploration, Pick, epsilon_greedy_row, judged_by, optimistic
from bandits.model.policy import latest_model
from bandits.model.tried import Tried, action_key
from bandits.storage import connect
from bandits.vw import features
from service import config as settings
from service import create_app
from tests.helpers import add_catalog, assert_setting_refused, deployment, serve_newest_models

TITLES = 8


def test_the_bonus_is_the_standard_error_of_the_estimated_rate():
    costs = [features.cost_of(0.3), features.cost_of(0.0), features.cost_of(0.3), features.cost_of(1.5)]
    raised = optimistic(costs, [0, 0, 99, 0], 2.0)
    expected = [
        0.3 + 2.0 * math.sqrt(0.3 * 0.7),
        0.0 + 2.0 * math.sqrt(BONUS_FLOOR * (1 - BONUS_FLOOR)),  # an estimate of nothing still gets a little
        0.3 + 2.0 * math.sqrt(0.3 * 0.7 / 100),
        1.5 + 2.0 * math.sqrt(BONUS_FLOOR * (1 - BONUS_FLOOR)),  # rates are held to [floor, 1 - floor]
    ]
    assert [features.reward_of(cost) for cost in raised] == pytest.approx(expected)
    with pytest.raises(ValueError, match="one count per action"):
        optimistic(costs, [0, 0], 2.0)


def test_few_actions_and_many_get_the_same_bonus_to_the_last_bit(monkeypatch):
    """A few actions are raised on Python floats, many on arrays: the served and the replayed probabilities
    must not depend on which, so both give identical numbers, ties and out-of-range estimates included."""
    rng = np.random.default_rng(3)
    for k in (1, 2, 5, 15, 16, 40, 120):
        costs = [float(c) for c in np.round(rng.normal(-0.2, 0.5, k), 2)]
        tried = [int(n) for n in rng.integers(0, 500, k)]
        monkeypatch.setattr(exploration, "ARRAY_FROM", 10**9)
        on_floats = optimistic(costs, tried, 2.0)
        monkeypatch.setattr(exploration, "ARRAY_FROM", 0)
        on_arrays = optimistic(costs, tried, 2.0)
        assert on_floats == on_arrays
        assert all(type(cost) is float for cost in on_floats + on_arrays)


def test_a_rows_picks_are_judged_as_slot_by_slot_over_the_titles_left():
    """The row's judgement walks the titles once; each slot's greedy choice and lead must be what the
    lowest estimates among the titles left give, ties included."""
    rng = np.random.default_rng(4)
    for _ in range(300):
        k = int(rng.integers(2, 50))
        costs = [float(c) for c in np.round(-rng.random(k) * 0.3, 1)]  # rounded: many ties
        picks = epsilon_greedy_row(optimistic(costs, [0] * k, 2.0), int(rng.integers(1, k + 1)), 0.3, rng)
        left = list(range(k))
        for pick, judged in zip(picks, judged_by(picks, costs)):
            low = min(costs[i] for i in left)
            best = [i for i in left if costs[i] == low]
            assert (judged.index, judged.probability) == (pick.index, pick.probability)
            assert judged.greedy_index == (pick.index if pick.index in best else best[0])
            assert judged.lead == best[-1] and judged.explored == (pick.index not in best)
            left.remove(pick.index)
        # One pick (an artwork's) is judged without the walk: the same answer as the row's first slot.
        assert judged_by(picks[:1], costs) == judged_by(picks, costs)[:1]


def test_an_untried_action_leads_until_it_has_been_tried_enough():
    explorer = Exploration(epsilon=0.0, bonus=2.0)
    costs = [features.cost_of(0.20), features.cost_of(0.15)]  # the second looks a little worse
    rng = np.random.default_rng(0)
    assert explorer.pick(explorer.scored(costs, [1000, 0]), rng).index == 1  # never tried: tried first
    assert explorer.pick(explorer.scored(costs, [1000, 1000]), rng).index == 0  # both well known: the better
    # An action estimated at almost nothing is ruled out after few tries; one that may pay keeps its bonus longer.
    nothing = features.reward_of(optimistic([features.cost_of(0.001)], [30], 2.0)[0]) - 0.001
    maybe = features.reward_of(optimistic([features.cost_of(0.2)], [30], 2.0)[0]) - 0.2
    assert nothing < maybe / 3


def test_a_pick_the_bonus_made_is_judged_by_the_model_own_estimates():
    estimates = [-0.5, -0.4, -0.1, -0.5]  # the model's: 0 and 3 tie for best
    row = [
        Pick(index=2, probability=0.9, greedy_index=2, lead=2),  # raised by its bonus over the others
        Pick(index=3, probability=0.8, greedy_index=3, lead=3),
        Pick(index=1, probability=0.7, greedy_index=1, lead=1, offered=(0, 1)),  # a restricted slot
    ]
    judged = judged_by(row, estimates)
    assert [(p.explored, p.greedy_index, p.lead) for p in judged] == [(True, 0, 3), (False, 3, 3), (True, 0, 0)]
    assert [p.probability for p in judged] == [0.9, 0.8, 0.7]  # what was drawn is unchanged


def test_without_a_bonus_or_without_counts_the_costs_are_left_alone():
    costs = [-0.2, -0.1, 0.0]
    assert Exploration(bonus=0.0).scored(costs, [0, 5, 9]) == costs
    assert Exploration(bonus=2.0).scored(costs, None) == costs  # a version that keeps no counts
    squarecb = Exploration.squarecb(gamma_scale=10.0, gamma_exponent=0.5, examples_learned=100)
    assert squarecb.bonus == 0.0


def test_counts_are_of_the_labelled_lines_only_and_survive_storage():
    tried = Tried()
    shared = "shared |U device=tv"
    assert tried.of(["|T id=a"]) == [0]  # looked up (and kept) before anything was learned
    tried.learn([shared, features.labeled("|T id=a", cost=-1.0, probability=0.5), "|T id=b"])
    assert tried.of(["|T id=a"]) == [1]  # what was looked up before is not stale
    tried.learn([shared, "|T id=a", features.labeled("|T id=b", cost=0.0, probability=0.25)])
    tried.learn([shared, features.labeled("|T id=a", cost=0.0, probability=0.9), "|T id=b"])
    assert tried.of(["|T id=a", "|T id=b", "|T id=c"]) == [2, 1, 0]
    assert tried.counts == {action_key("|T id=a"): 2, action_key("|T id=b"): 1}
    again = Tried.loads(tried.dumps())
    assert again is not None and again.of(["|T id=b", "|T id=a"]) == [1, 2]
    assert Tried.loads(None) is None
    with pytest.raises(ValueError, match="counts of 0 or more"):
        Tried.loads(json.dumps({"abc": -1}))


@pytest.fixture()
def served(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path / "data"), "LEARNER": False, "REWARD_WAIT_SECONDS": 600.0})
    add_catalog(app.test_client(), titles=TITLES)
    return app


def rank_and_learn(app, rows: int, rng: np.random.Generator) -> None:
    client = app.test_client()
    for _ in range(rows):
        body = client.post("/v1/rank", json={"user": {"id": f"u{int(rng.integers(20))}"}, "slots": 3}).get_json()
        for slot in body["slots"]:
            if slot["title_id"] in ("t00", "t01") and rng.random() < 0.5:
                client.post(f"/v1/events/{body['event_id']}/reward", json={"title_id": slot["title_id"], "value": 1.0})
    Learner(connect(app.config["DATABASE"]), deployment(app)).run_once(now=time.time() + 601)
    serve_newest_models(app)


def test_the_learner_counts_every_learned_pick_and_a_new_title_is_tried_first(served):
    client = served.test_client()
    assert client.get("/v1/policies/titles").get_json()["settings"]["exploration_bonus"] == 2.0  # the default
    rank_and_learn(served, 150, np.random.default_rng(1))
    db = connect(served.config["DATABASE"])
    for policy in ("titles", "artwork"):
        record = latest_model(db, policy)
        assert record is not None and record.tried is not None
        assert sum(json.loads(record.tried).values()) == record.examples_learned == 450
        assert client.get(f"/v1/policies/{policy}").get_json()["model"]["actions_tried"] == len(
            json.loads(record.tried)
        )
    # Greedy rows (no epsilon): the learned favourites lead; a title added now, never tried, is raised above them.
    client.put("/v1/policies/titles", json={"epsilon": 0.0, "epsilon_decay_after": 0})
    first = {client.post("/v1/rank", json={"slots": 1}).get_json()["slots"][0]["title_id"] for _ in range(10)}
    assert first <= {"t00", "t01"}
    add_catalog(client, titles=1, prefix="n")
    first = {client.post("/v1/rank", json={"slots": 1}).get_json()["slots"][0]["title_id"] for _ in range(10)}
    assert first == {"n00"}
    # Said as it is: the bonus chose it, not the model's estimate, and the model never learned it.
    slot = client.post("/v1/rank", json={"slots": 2, "explain": True}).get_json()["slots"][0]
    why = slot["explanation"]["title"]
    assert slot["title_id"] == "n00" and why["explored"] is True and why["times_learned"] == 0
    assert why["greedy_title_id"] in ("t00", "t01")
    client.put("/v1/policies/titles", json={"epsilon": 0.0, "epsilon_decay_after": 0, "exploration_bonus": 0.0})
    first = {client.post("/v1/rank", json={"slots": 1}).get_json()["slots"][0]["title_id"] for _ in range(10)}
    assert "n00" not in first


def test_a_vw_candidate_counts_what_it_learned_so_that_applied_it_keeps_a_bonus(served):
    from bandits.evaluate import offline

    rank_and_learn(served, 40, np.random.default_rng(3))
    db = connect(served.config["DATABASE"])
    rounds = offline.from_log(db, policy="titles", aggregation="earliest", default_reward=0.0)
    assert len(rounds) == 120
    for spec in (
        {"kind": "vw", "vw_args": "-q UT", "epsilon": 0.1},
        {"kind": "vw", "vw_args": "-q UT", "epsilon": 0.1, "exploration_bonus": 2},
    ):
        candidate = offline.parse_candidate(spec)
        trained: dict = {}
        offline.target_distribution(rounds, candidate, trained=trained)
        counts = Tried.loads(trained[candidate.name].tried)
        assert counts is not None and sum(counts.counts.values()) == len(rounds)


def test_an_uploaded_model_explores_without_a_bonus_until_reset(served):
    client = served.test_client()
    rank_and_learn(served, 60, np.random.default_rng(2))
    blob = client.get("/v1/policies/titles/model").data
    response = client.put("/v1/policies/titles/model", data=blob, content_type="application/octet-stream")
    assert response.status_code == 201
    assert client.get("/v1/policies/titles").get_json()["model"]["actions_tried"] is None  # not known
    serve_newest_models(served)
    client.put("/v1/policies/titles", json={"epsilon": 0.0, "epsilon_decay_after": 0})
    add_catalog(client, titles=1, prefix="n")
    first = {client.post("/v1/rank", json={"slots": 1}).get_json()["slots"][0]["title_id"] for _ in range(10)}
    assert "n00" not in first  # no counts, no bonus: the untried title is not raised
    assert client.post("/v1/policies/titles/reset").status_code == 201
    assert client.get("/v1/policies/titles").get_json()["model"]["actions_tried"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"exploration_bonus": -1}, "exploration_bonus: must be a number in [0, 100]"),
        ({"exploration_bonus": "lots"}, "exploration_bonus: must be a number in [0, 100]"),
        ({"exploration_bonus": True}, "exploration_bonus: must be a number in [0, 100]"),
    ],
)
def test_a_bad_bonus_is_refused_and_changes_nothing(served, body, message):
    assert_setting_refused(served, "titles", body, message)


def test_the_deployment_default_is_checked():
    with pytest.raises(ValueError, match="EXPLORATION_BONUS must be in"):
        settings.load(environ={"MARQUEE_EXPLORATION_BONUS": "-1"})


def test_an_evaluation_candidate_carries_its_bonus():
    from bandits.evaluate import offline

    candidate = offline.parse_candidate({"kind": "vw", "vw_args": "-q UT", "epsilon": 0.1, "exploration_bonus": 2})
    assert candidate.name == "vw -q UT eps=0.1 bonus=2"
    assert offline.parse_candidate(candidate.as_dict()) == candidate
    assert offline.candidate_exploration(candidate, 10).bonus == 2.0
    with pytest.raises(
        offline.SpecError, match=r"^candidate.exploration_bonus: only for candidates of kind model or vw"
    ):
        offline.parse_candidate({"kind": "uniform", "exploration_bonus": 1})
    with pytest.raises(offline.SpecError, match=r"^candidate.exploration_bonus: must be a number in \[0, 100\]"):
        offline.parse_candidate({"kind": "vw", "vw_args": "-q UT", "exploration_bonus": -2})
