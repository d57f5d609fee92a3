"""Learning modes: apprentice serves the baseline and learns from it; logging-only serves it and learns nothing."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import pytest

from bandits.evaluate.apprentice import MIN_EVIDENCE, SwitchCheck, wilson
from bandits.learn.learner import Learner, apprentice_examples
from bandits.model.exploration import Exploration
from bandits.model.policy import latest_model
from service.runtime import serving_state
from tests.helpers import add_catalog, deployment, serve_newest_models, table_counts

ACTIONS = [
    {"id": "news-article", "features": [{"type": "News", "length": 3}]},
    {"id": "sports-article", "features": [{"type": "Sports", "length": 1}]},
    {"id": "entertainment-article", "features": [{"type": "Entertainment", "length": 2}]},
]
WANTED = {"AnonymousUser": "entertainment-article", "LoggedIn": "news-article"}


def _context(segment: str) -> list[dict[str, Any]]:
    return [{"user": {"profileType": segment}}, {"device": {"mobile": True}}]


def _baseline_first(baseline: str, rng: random.Random) -> list[dict[str, Any]]:
    """The actions as an application in apprentice mode sends them: its own choice first, the rest in any order."""
    others = [action for action in ACTIONS if action["id"] != baseline]
    rng.shuffle(others)
    return [next(action for action in ACTIONS if action["id"] == baseline), *others]


def test_a_baseline_share_serves_the_first_action_with_exact_probabilities():
    costs = [0.3, -0.5, 0.1, -0.5]
    always = Exploration(epsilon=0.2, baseline=1.0)
    pick = always.pick(costs, np.random.default_rng(1))
    assert (pick.index, pick.probability) == (0, 1.0)
    assert pick.lead == 3  # the model's greedy choice: of the tied lowest costs, the last
    row = always.row(costs, 3, np.random.default_rng(2), allowed=lambda picks, left: [i for i in left if i != 1])
    assert [p.index for p in row] == [0, 2, 3] and all(p.probability == 1.0 for p in row)

    mixed = Exploration(epsilon=0.2, baseline=0.7)
    pmf = mixed.pmf(costs)
    assert pmf.sum() == pytest.approx(1.0) and pmf[0] == pytest.approx(0.7 + 0.3 * 0.05)
    rng = np.random.default_rng(3)
    draws = [mixed.pick(costs, rng) for _ in range(20_000)]
    for index in range(4):
        found = [d for d in draws if d.index == index]
        assert len(found) / len(draws) == pytest.approx(pmf[index], abs=0.01)
        assert all(d.probability == pytest.approx(pmf[index]) for d in found)
    # A model with no preference names no baseline choice: ties never count as agreeing with it.
    assert Exploration(baseline=1.0).pick([0.0, 0.0, 0.0], rng).lead == 2


def test_apprentice_examples_teach_the_baseline_at_its_reward_and_others_at_the_default():
    shared = "shared |C user=a"
    served = [shared, "0:-0.8:1 |X id=a", "|X id=b", "|X id=c"]
    taught = apprentice_examples([served], default_reward=0.0, seed=1)
    assert taught == [
        [shared, "0:-0.8:1 |X id=a", "|X id=b", "|X id=c"],
        [shared, "|X id=a", "0:0:1 |X id=b", "|X id=c"],
        [shared, "|X id=a", "|X id=b", "0:0:1 |X id=c"],
    ]
    explored = [shared, "|X id=a", "0:-1:0.05 |X id=b"]
    assert apprentice_examples([explored], default_reward=0.0, seed=1) == [explored]  # learned as Online
    wide = [shared, "0:-1:1 |X id=0", *(f"|X id={i}" for i in range(1, 40))]
    assert len(apprentice_examples([wide], default_reward=0.0, seed=1)) == 10


def test_wilson_interval_covers_the_proportion():
    found = wilson(45, 50)
    assert found["ci_low"] < 0.9 < found["ci_high"] and 0.0 <= found["ci_low"] and found["ci_high"] <= 1.0
    assert wilson(0, 0)["value"] is None


def test_apprentice_serves_the_baseline_and_comes_to_match_it(app, client, db):
    with app.app_context():
        serving_state(app.config["DATABASE"]).rng = np.random.default_rng(11)
    base = "/personalizer/v1.0/configurations/service"
    configuration = client.get(base).get_json()
    answer = client.put(base, json={**configuration, "learningMode": "Apprentice"})
    assert answer.status_code == 200 and answer.get_json()["learningMode"] == "Apprentice"
    learner = Learner(db, deployment(app))
    rng = random.Random(4)
    early: dict[str, Any] = {}
    for index in range(400):
        segment = rng.choice(list(WANTED))
        actions = _baseline_first(WANTED[segment], rng)
        ranked = client.post(
            "/personalizer/v1.0/rank", json={"contextFeatures": _context(segment), "actions": actions}
        ).get_json()
        # The application's own choice is served, always, and said to be certain.
        assert ranked["rewardActionId"] == actions[0]["id"] and ranked["ranking"][0]["probability"] == 1.0
        value = 1.0 if rng.random() < 0.8 else 0.0
        assert (
            client.post(f"/personalizer/v1.0/events/{ranked['eventId']}/reward", json={"value": value}).status_code
            == 204
        )
        if index % 50 == 49:
            learner.run_once(now=time.time() + 3600)
            serve_newest_models(app)
        if index == 49:
            early = client.get("/v1/policies/actions/apprentice").get_json()
    # Decided by an untrained model, the first decisions did not match the baseline: no preference is no match.
    assert early["match_rate"]["value"] == 0.0 and early["baseline_decisions"] == 50
    report = client.get("/v1/policies/actions/apprentice?events=100").get_json()
    assert report["learning_mode"] == "apprentice" and report["baseline_decisions"] == 100
    assert report["match_rate"]["value"] >= 0.9 and report["match_rate"]["ci_low"] > 0.75, report["match_rate"]
    reward = report["baseline_reward"]
    assert reward["ci_low"] < 0.8 < reward["ci_high"]
    # Deterministic baseline traffic is no evidence about other actions, and the report says so.
    assert report["evidence"]["decisions"] == 0 and not report["switch_ready"] and "no evidence" in report["verdict"]


def _apprentice_run(
    app: Any, client: Any, db: Any, *, baseline_of: Any, decisions: int, seed: int
) -> tuple[int | None, dict[str, Any]]:
    """Serve ``decisions`` rankings in apprentice mode with auto switch; return when it switched, the first report."""
    with app.app_context():
        serving_state(app.config["DATABASE"]).rng = np.random.default_rng(seed)
    answer = client.put(
        "/v1/policies/actions", json={"learning_mode": "apprentice", "apprentice_exploration": 0.3, "auto_switch": True}
    )
    assert answer.status_code == 200, answer.get_json()
    learner, check = Learner(db, deployment(app)), SwitchCheck(every=0.0)
    rng = random.Random(seed)
    first_check: dict[str, Any] = {}
    for index in range(decisions):
        segment = rng.choice(list(WANTED))
        ranked = client.post(
            "/personalizer/v1.0/rank",
            json={"contextFeatures": _context(segment), "actions": _baseline_first(baseline_of(segment), rng)},
        ).get_json()
        chosen = ranked["rewardActionId"]
        value = float(rng.random() < (0.9 if chosen == WANTED[segment] else 0.1))
        client.post(f"/personalizer/v1.0/events/{ranked['eventId']}/reward", json={"value": value})
        if index % 100 == 99:
            learner.run_once(now=time.time() + 3600)
            serve_newest_models(app)
            if not first_check:
                first_check = client.get("/v1/policies/actions/apprentice").get_json()
            if check.run_if_due(db, deployment(app)) == ["actions"]:
                return index + 1, first_check
    return None, first_check


def test_auto_switch_keeps_apprentice_while_the_baseline_is_the_better_policy(app, client, db):
    switched_after, _ = _apprentice_run(app, client, db, baseline_of=WANTED.__getitem__, decisions=1500, seed=8)
    assert switched_after is None
    report = client.get("/v1/policies/actions/apprentice?events=500").get_json()
    assert report["learning_mode"] == "apprentice" and report["evidence"]["decisions"] == 500
    assert report["evidence"]["model_minus_baseline"]["ci_low"] <= 0.0 and not report["switch_ready"]
    assert report["match_rate"]["value"] >= 0.9  # explored rewards confirm the baseline: the model agrees


def test_auto_switch_turns_apprentice_online_once_the_model_beats_the_baseline(app, client, db):
    # The application's own logic always picks sports, which viewers rarely want.
    switched_after, first_check = _apprentice_run(
        app, client, db, baseline_of=lambda segment: "sports-article", decisions=3000, seed=6
    )
    assert first_check["evidence"]["decisions"] == 100 and not first_check["switch_ready"]
    assert switched_after is not None and switched_after >= MIN_EVIDENCE
    settings = client.get("/v1/policies/actions").get_json()["settings"]
    assert settings["learning_mode"] == "online" and settings["apprentice_exploration"] == 0.3  # the rest kept
    serve_newest_models(app)
    rng = random.Random(7)
    served = [
        client.post(
            "/personalizer/v1.0/rank",
            json={"contextFeatures": _context(segment), "actions": _baseline_first("sports-article", rng)},
        ).get_json()["rewardActionId"]
        for segment in WANTED
        for _ in range(20)
    ]
    assert sum(action == "sports-article" for action in served) < 10  # online: the model's choice, not the baseline


def test_catalog_policies_follow_the_request_order_in_apprentice_and_logging_only(app, client, db, learner):
    ids = add_catalog(client, titles=5)
    assert client.put("/v1/policies/titles", json={"learning_mode": "apprentice"}).status_code == 200
    assert client.put("/v1/policies/artwork", json={"learning_mode": "logging-only"}).status_code == 200
    versions = {name: latest_model(db, name).version for name in ("titles", "artwork")}
    for _ in range(5):
        row = client.post("/v1/rank", json={"slots": 3, "candidates": [ids[3], ids[1], ids[4], ids[0]]}).get_json()
        assert [slot["title_id"] for slot in row["slots"]] == [ids[3], ids[1], ids[4]]
        for slot in row["slots"]:
            artworks = client.get(f"/v1/titles/{slot['title_id']}/artworks").get_json()["artworks"]
            assert slot["artwork_id"] == artworks[0]["id"]
            assert slot["title_probability"] == slot["artwork_probability"] == 1.0
    event = client.get(f"/v1/events/{row['event_id']}").get_json()
    assert event["learning_modes"] == {"titles": "apprentice", "artwork": "logging-only"}
    learner.run_once(now=time.time() + 3600)
    assert latest_model(db, "titles").version == versions["titles"] + 1  # apprentice learns
    assert latest_model(db, "artwork").version == versions["artwork"]  # logging-only does not
    learned = dict(db.execute("SELECT policy, SUM(examples) FROM learned GROUP BY policy").fetchall())
    assert learned["artwork"] == 0 and learned["titles"] == 5 * (4 + 3 + 2)  # each slot: every title it drew from
    report = client.get("/v1/policies/artwork/apprentice").get_json()
    assert report["learning_mode"] == "logging-only" and report["baseline_decisions"] == 15
    page = client.get("/dashboard").get_data(as_text=True)
    assert '<a href="/v1/policies/titles/apprentice">apprentice</a>: baseline served' in page


@pytest.mark.parametrize(
    "body, message",
    [
        ({"learning_mode": "sometimes"}, "learning_mode: must be one of online, apprentice, logging-only"),
        ({"apprentice_exploration": 0.9}, "apprentice_exploration"),
        ({"auto_switch": "yes"}, "auto_switch"),
    ],
)
def test_bad_learning_mode_settings_are_refused_and_change_nothing(client, db, body, message):
    before = table_counts(db)
    response = client.put("/v1/policies/actions", json=body)
    assert response.status_code == 422, response.get_json()
    assert message in response.get_json()["error"]["message"]
    assert table_counts(db) == before


def test_the_report_refuses_a_bad_window(client):
    response = client.get("/v1/policies/actions/apprentice?events=0")
    assert response.status_code == 422 and "events" in response.get_json()["error"]["message"]
    assert client.get("/v1/policies/nope/apprentice").status_code == 404
