"""Typed rewards (click, play, ...): each policy values them, so it can optimise plays instead of clicks."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bandits.evaluate.offline import from_log
from bandits.learn.learner import Learner, _close_due, closed_labels
from bandits.model.policy import load_policy
from bandits.storage import connect
from bandits.vw import features
from service import create_app
from service.runtime import serving_state
from tests.helpers import add_catalog, deployment, table_counts

# Clickbait: the dark-warm poster is clicked most, but the bright-cool one is what viewers go on to play.
CLICK = {"dark-warm": 0.6, "bright-cool": 0.35, "neutral": 0.2}
PLAY_AFTER_CLICK = {"dark-warm": 0.15, "bright-cool": 0.8, "neutral": 0.3}


def _rank_and_click(client, title_id="t00"):
    body = client.post("/v1/rank", json={"slots": 1, "candidates": [title_id]}).get_json()
    return body["event_id"], body["slots"][0]["title_id"]


def test_a_typed_reward_is_stored_with_its_type_and_the_default_value(client, catalog):
    event_id, title_id = _rank_and_click(client)
    response = client.post(f"/v1/events/{event_id}/reward", json={"title_id": title_id, "type": "thumbs_down"})
    assert response.status_code == 201
    receipt = response.get_json()
    assert receipt["type"] == "thumbs_down" and receipt["value"] == -1.0
    assert client.get(f"/v1/events/{event_id}").get_json()["rewards"][0]["type"] == "thumbs_down"


def test_each_policy_values_types_by_its_own_settings_fixed_at_the_close(app, client, db, catalog):
    assert (
        client.put(
            "/v1/policies/titles", json={"reward_values": {"click": 0.0, "play": 1.0}, "aggregation": "max"}
        ).status_code
        == 200
    )
    clicked_then_played, _ = _rank_and_click(client)
    clicked_only, _ = _rank_and_click(client)
    for event_id, kinds in ((clicked_then_played, ["click", "play"]), (clicked_only, ["click"])):
        for kind in kinds:
            assert (
                client.post(f"/v1/events/{event_id}/reward", json={"title_id": "t00", "type": kind}).status_code == 201
            )
    seqs = [
        db.execute("SELECT seq FROM events WHERE id = ?", [e]).fetchone()[0]
        for e in (clicked_then_played, clicked_only)
    ]
    now = time.time() + 3600
    for name in ("titles", "artwork"):
        _close_due(db, load_policy(db, deployment(app), name), now=now, limit=10)
    # The titles policy values a play 1 and a bare click 0 (max of the two); the artwork policy, on the
    # deployment defaults (every type 1, earliest), values both 1.
    assert closed_labels(db, "titles", seqs) == {seqs[0]: [1.0], seqs[1]: [0.0]}
    assert closed_labels(db, "artwork", seqs) == {seqs[0]: [1.0], seqs[1]: [1.0]}
    # The values in force at the close are the ones learned: changing the settings now moves nothing.
    client.put("/v1/policies/titles", json={"reward_values": {"click": 1.0}})
    assert closed_labels(db, "titles", seqs) == {seqs[0]: [1.0], seqs[1]: [0.0]}
    # Offline evaluation values the log by the policy's current settings.
    rounds = from_log(
        db, policy="titles", aggregation="max", default_reward=0.0, reward_values={"click": 0.5, "play": 0.25}
    )
    assert sorted(rounds.reward.tolist()) == [0.5, 0.5]


def _train(tmp_path, name: str, reward_values: str, aggregation: str) -> dict[str, str]:
    """Serve a clickbait audience on a fresh service; return the greedy artwork of every title."""
    app = create_app(
        {
            "DATA_DIR": str(tmp_path / name),
            "LEARNER": False,
            "REWARD_WAIT_SECONDS": 60.0,
            "EPSILON": 0.3,
            "EPSILON_DECAY_AFTER": 0.0,
            "REWARD_VALUES": reward_values,
            "ARTWORK_TRIAL_SHARE": 0.0,
            "TITLE_TRIAL_SHARE": 0.0,
        }
    )
    client = app.test_client()
    titles = add_catalog(client, titles=4)
    assert client.put("/v1/policies/artwork", json={"aggregation": aggregation}).status_code == 200
    db = connect(app.config["DATABASE"])
    learner = Learner(db, deployment(app))
    with app.app_context():
        serving_state(app.config["DATABASE"]).rng = np.random.default_rng(3)
    audience = np.random.default_rng(7)
    for event in range(1500):
        body = client.post("/v1/rank", json={"user": {"features": {"device": "tv"}}, "slots": 2}).get_json()
        for slot in body["slots"]:
            style = slot["artwork_id"].split("-", 1)[1]
            if audience.random() < CLICK[style]:
                url = f"/v1/events/{body['event_id']}/reward"
                assert client.post(url, json={"title_id": slot["title_id"], "type": "click"}).status_code == 201
                if audience.random() < PLAY_AFTER_CLICK[style]:
                    assert client.post(url, json={"title_id": slot["title_id"], "type": "play"}).status_code == 201
        if event % 150 == 149:
            learner.run_once(now=time.time() + 61)
    learner.run_once(now=time.time() + 61)
    greedy = {}
    with app.app_context():
        state = serving_state(app.config["DATABASE"])
        state.refresh(db, deployment(app))
        shared = features.viewer_shared(user_id=None, features={"device": "tv"})
        for title_id in titles:
            title = state.snapshot.titles[title_id]
            costs = state.models["artwork"].costs(
                features.artwork_shared(shared, title.action_line), title.artwork_lines
            )
            greedy[title_id] = title.artwork_ids[int(np.argmin(costs))].split("-", 1)[1]
    db.close()
    return greedy


@pytest.mark.slow
def test_valuing_plays_over_clicks_moves_the_policy_off_clickbait(tmp_path):
    clicks = _train(tmp_path, "clicks", "click=1,play=1,completed=1,thumbs_up=1,thumbs_down=-1", "earliest")
    plays = _train(tmp_path, "plays", "click=0,play=1,completed=1,thumbs_up=1,thumbs_down=-1", "max")
    # Valued by clicks the policy wears the most-clicked poster; valued by plays, the one that gets played.
    assert sum(style == "dark-warm" for style in clicks.values()) >= 3, clicks
    assert sum(style == "bright-cool" for style in plays.values()) >= 3, plays


@pytest.mark.parametrize(
    "body, message",
    [
        ({"title_id": "t00", "value": 1.0, "type": "click"}, "not both"),
        ({"title_id": "t00"}, "give either value"),
        ({"title_id": "t00", "type": "purchase"}, "type"),
        ({"title_id": "t00", "type": 3}, "type"),
    ],
)
def test_bad_typed_rewards_are_a_422(client, db, catalog, body, message):
    event_id, _ = _rank_and_click(client)
    before = table_counts(db)
    response = client.post(f"/v1/events/{event_id}/reward", json=body)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert table_counts(db) == before


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"reward_values": {"purchase": 1.0}}, "reward_values.purchase"),
        ({"reward_values": {"play": 2.0}}, "reward_values.play"),
        ({"reward_values": [1, 2]}, "reward_values"),
        ({"aggregation": "median"}, "aggregation"),
    ],
)
def test_bad_reward_settings_are_a_422(client, db, settings, message):
    before = table_counts(db)
    response = client.put("/v1/policies/artwork", json=settings)
    assert response.status_code == 422 and message in response.get_json()["error"]["message"]
    assert table_counts(db) == before


def test_a_bad_deployment_value_stops_the_service_at_start(tmp_path):
    with pytest.raises(ValueError, match="REWARD_VALUES"):
        create_app({"DATA_DIR": str(tmp_path), "LEARNER": False, "REWARD_VALUES": "click=1,play=lots"})
    with pytest.raises(ValueError, match="missing: completed"):
        create_app({"DATA_DIR": str(tmp_path), "LEARNER": False, "REWARD_VALUES": "click=1,play=1"})


def test_a_retried_typed_reward_is_stored_once(client, db, catalog):
    event_id, title_id = _rank_and_click(client)
    url = f"/v1/events/{event_id}/reward"
    first = client.post(url, json={"title_id": title_id, "type": "play"}, headers={"Idempotency-Key": "r-1"})
    again = client.post(url, json={"title_id": title_id, "type": "play"}, headers={"Idempotency-Key": "r-1"})
    assert (first.status_code, again.status_code) == (201, 200) and again.get_json()["replayed"]
    other = client.post(url, json={"title_id": title_id, "type": "click"}, headers={"Idempotency-Key": "r-1"})
    assert other.status_code == 409
    assert db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0] == 1
