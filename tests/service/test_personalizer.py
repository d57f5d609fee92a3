"""A client written to Azure Personalizer's REST API runs unchanged against Marquee."""

from __future__ import annotations

import http.client
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bandits.evaluate.offline import from_log
from bandits.learn.learner import Learner
from bandits.model.exploration import Exploration
from service.runtime import serving_state
from tests.gunicorn_harness import Service
from tests.helpers import add_catalog, deployment, serve_newest_models, table_counts

KEY = "pz-client-key-0123456789"


class PersonalizerClient:
    """Plain HTTP against Personalizer's documented v1.0 shapes: no Azure SDK, nothing Marquee-specific."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port, self.key = host, port, key

    def _post(self, path: str, body: Any | None, *, version: str = "v1.0") -> tuple[int, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            headers = {"Ocp-Apim-Subscription-Key": self.key, "Content-Type": "application/json"}
            conn.request(
                "POST",
                f"/personalizer/{version}{path}",
                body=None if body is None else json.dumps(body),
                headers=headers,
            )
            response = conn.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data else None
        finally:
            conn.close()

    def rank(self, request: dict[str, Any]) -> dict[str, Any]:
        status, body = self._post("/rank", request)
        assert status == 201, body
        return body

    def reward(self, event_id: str, value: float) -> None:
        status, body = self._post(f"/events/{event_id}/reward", {"value": value})
        assert status == 204, body

    def activate(self, event_id: str) -> None:
        status, body = self._post(f"/events/{event_id}/activate", None)
        assert status == 204, body

    # Multi-slot, at the path Personalizer's multi-slot clients call.
    def multislot_rank(self, request: dict[str, Any]) -> dict[str, Any]:
        status, body = self._post("/multislot/rank", request, version=MULTISLOT_VERSION)
        assert status == 201, body
        return body

    def multislot_reward(self, event_id: str, rewards: list[dict[str, Any]]) -> None:
        status, body = self._post(
            f"/multislot/events/{event_id}/reward", {"reward": rewards}, version=MULTISLOT_VERSION
        )
        assert status == 204, body

    def multislot_activate(self, event_id: str) -> None:
        status, body = self._post(f"/multislot/events/{event_id}/activate", None, version=MULTISLOT_VERSION)
        assert status == 204, body


MULTISLOT_VERSION = "v1.1-preview.1"


ACTIONS = [
    {"id": "news-article", "features": [{"type": "News", "length": 3}, {"topic": {"tags": ["politics"]}}]},
    {"id": "sports-article", "features": [{"type": "Sports", "length": 1}]},
    {"id": "entertainment-article", "features": [{"type": "Entertainment", "length": 2}]},
]


SLOTS = [
    {"id": "Main", "features": [{"size": "large", "position": "top"}], "baselineAction": "news-article"},
    {
        "id": "Side",
        "features": [{"size": "small", "position": "right"}],
        "excludedActions": ["news-article"],
        "baselineAction": "sports-article",
    },
]


def _context(segment: str) -> list[dict[str, Any]]:
    return [
        {"user": {"profileType": segment, "latLong": "47.6,-122.1"}},
        {"environment": {"dayOfMonth": "28", "weather": "Sunny"}},
        {"device": {"mobile": True}},
    ]


@pytest.mark.slow
def test_a_personalizer_client_runs_unchanged_against_real_workers(tmp_path: Path):
    service = Service(
        tmp_path / "data",
        env={
            "MARQUEE_AUTH": "keys",
            "MARQUEE_API_KEYS": KEY,
            "MARQUEE_REWARD_WAIT_SECONDS": "1",
            "MARQUEE_LEARNER_INTERVAL_SECONDS": "0.2",
        },
    )
    service.start()
    try:
        client = PersonalizerClient("127.0.0.1", service.port, KEY)
        answer = client.rank(
            {
                "contextFeatures": _context("AnonymousUser"),
                "actions": ACTIONS,
                "excludedActions": ["sports-article"],
                "eventId": "75269AD0-BFEE-4598-8196-C57383D38E10",
                "deferActivation": False,
            }
        )
        assert answer["eventId"] == "75269AD0-BFEE-4598-8196-C57383D38E10"
        ranking = answer["ranking"]
        assert [item["id"] for item in ranking][-1] == "sports-article" and ranking[-1]["probability"] == 0.0
        assert answer["rewardActionId"] == ranking[0]["id"]
        assert sum(item["probability"] for item in ranking) == pytest.approx(1.0)
        assert {item["id"] for item in ranking} == {action["id"] for action in ACTIONS}
        client.reward(answer["eventId"], 1.0)

        # Without an event id the service makes one; a deferred ranking is learned once activated.
        deferred = client.rank({"contextFeatures": _context("LoggedIn"), "actions": ACTIONS, "deferActivation": True})
        assert deferred["eventId"] and deferred["rewardActionId"] in {action["id"] for action in ACTIONS}
        client.activate(deferred["eventId"])
        client.reward(deferred["eventId"], 0.5)
        # Marquee's own key header works too, and a wrong key is refused as Personalizer would.
        assert PersonalizerClient("127.0.0.1", service.port, "wrong")._post("/rank", {"actions": ACTIONS})[0] == 401

        # Multi-slot: a different action per slot, rewards per slot, deferred until activated.
        page = client.multislot_rank(
            {
                "contextFeatures": _context("LoggedIn"),
                "actions": ACTIONS,
                "slots": SLOTS,
                "eventId": "page-1",
                "deferActivation": True,
            }
        )
        assert page["eventId"] == "page-1" and [slot["id"] for slot in page["slots"]] == ["Main", "Side"]
        shown = [slot["rewardActionId"] for slot in page["slots"]]
        assert len(set(shown)) == 2 and shown[1] != "news-article"  # excluded from the side slot
        client.multislot_activate("page-1")
        client.multislot_reward("page-1", [{"slotId": "Side", "value": 1.0}])
        # The single-slot calls answer under the preview path too.
        assert client._post("/rank", {"actions": ACTIONS}, version=MULTISLOT_VERSION)[0] == 201

        service.wait_learned(deferred["eventId"], policy="actions", key=KEY)
        body = service.wait_learned("page-1", policy="actions", key=KEY)
        assert body["rewards"] == [
            {
                "title_id": shown[1],
                "value": 1.0,
                "type": None,
                "received_at": body["rewards"][0]["received_at"],
                "credited_policies": ["actions"],
                "late_for": [],
            }
        ]
        assert [slot["slot_id"] for slot in body["slots"]] == ["Main", "Side"]
        status, body = service.request("GET", f"/v1/events/{deferred['eventId']}", headers={"X-API-Key": KEY})
        assert body["rewards"][0]["title_id"] == deferred["rewardActionId"]
        assert body["rewards"][0]["credited_policies"] == ["actions"]
    finally:
        service.stop()


def test_the_actions_policy_learns_which_action_each_context_wants(app, client, db):
    with app.app_context():
        serving_state(app.config["DATABASE"]).rng = np.random.default_rng(7)
    wanted = {"AnonymousUser": "entertainment-article", "LoggedIn": "news-article"}
    rng = random.Random(5)
    learner = Learner(db, deployment(app))
    for index in range(600):
        segment = rng.choice(list(wanted))
        answer = client.post(
            "/personalizer/v1.0/rank", json={"contextFeatures": _context(segment), "actions": ACTIONS}
        ).get_json()
        chosen = answer["rewardActionId"]
        value = 1.0 if chosen == wanted[segment] and rng.random() < 0.8 else 0.0
        assert (
            client.post(f"/personalizer/v1.0/events/{answer['eventId']}/reward", json={"value": value}).status_code
            == 204
        )
        if index % 100 == 99:
            learner.run_once(now=time.time() + 3600)
    serve_newest_models(app)
    settings = deployment(app)
    # Every event was rewarded and learned, one example each: the serving version's epsilon has decayed from 0.2.
    epsilon = Exploration.decaying(
        epsilon=0.2,
        decay_after=settings.epsilon_decay_after,
        floor=settings.epsilon_floor,
        examples_learned=600,
    ).epsilon
    assert 0.01 <= epsilon < 0.2
    for segment, action in wanted.items():
        answer = client.post(
            "/personalizer/v1.0/rank",
            json={"contextFeatures": _context(segment), "actions": ACTIONS, "eventId": f"check-{segment}"},
        ).get_json()
        best = max(answer["ranking"], key=lambda item: item["probability"])
        assert best["id"] == action, answer["ranking"]
        assert best["probability"] == pytest.approx(1.0 - epsilon + epsilon / 3)  # the greedy share
    # Offline evaluation sees the actions policy's decisions, and the catalog policies none of them.
    rounds = from_log(db, policy="actions", aggregation="earliest", default_reward=0.0)
    assert len(rounds) == 600
    assert len(from_log(db, policy="titles", aggregation="earliest", default_reward=0.0)) == 0
    assert db.execute("SELECT COUNT(*) FROM learned WHERE policy != 'actions'").fetchone()[0] == 0


def test_inline_decisions_stay_out_of_catalog_reports(client, db):
    add_catalog(client, titles=3)
    client.post("/v1/rank", json={"slots": 2})
    client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS})
    report = client.get("/v1/reports/exposure").get_json()
    assert report["impressions"] == 2 and {row["title_id"] for row in report["most_shown"]} <= {"t00", "t01", "t02"}


@pytest.mark.parametrize(
    "path, body, message",
    [
        ("/rank", {"actions": []}, "actions"),
        ("/rank", {"actions": [{"id": "a"}, {"id": "a"}]}, "given twice"),
        ("/rank", {"actions": [{"id": "a"}], "excludedActions": ["b"]}, "excludedActions: 'b'"),
        ("/rank", {"actions": [{"id": "a"}], "excludedActions": ["a"]}, "every action is excluded"),
        ("/rank", {"actions": [{"id": "a", "features": [{"x": [{"deep": 1}]}]}]}, "actions[0].features[0].x"),
        ("/rank", {"actions": [{"id": "a"}], "contextFeatures": [{"a": {"b": {"c": {"d": {"e": 1}}}}}]}, "nest"),
        ("/rank", {"actions": [{"id": "a"}], "contextFeatures": ["mobile"]}, "contextFeatures"),
        ("/rank", {"actions": [{"id": "a"}], "eventId": "has spaces"}, "eventId"),
        ("/rank", {"actions": [{"id": "a"}], "rankingMode": "fast"}, "rankingMode"),
        ("/rank", {"actions": [{"id": f"a{i}"} for i in range(51)]}, "actions"),
    ],
)
def test_bad_rankings_are_a_400_bad_argument_and_store_nothing(client, db, path, body, message):
    before = table_counts(db)
    response = client.post(f"/personalizer/v1.0{path}", json=body)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "BadArgument" and message in error["message"], error
    assert table_counts(db) == before


def test_bad_rewards_and_unknown_events(client, db):
    answer = client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}).get_json()
    url = f"/personalizer/v1.0/events/{answer['eventId']}/reward"
    before = table_counts(db)
    for body in ({"value": 2.0}, {"value": "1"}, {}, {"value": 1, "extra": 1}):
        response = client.post(url, json=body)
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "BadArgument"
    assert client.post("/personalizer/v1.0/events/unknown-event/reward", json={"value": 1}).status_code == 404
    assert client.post("/personalizer/v1.0/events/unknown-event/activate").status_code == 404
    assert table_counts(db) == before
    # A catalog row's event is not a ranking of this API.
    add_catalog(client, titles=2)
    row = client.post("/v1/rank", json={"slots": 1}).get_json()
    assert client.post(f"/personalizer/v1.0/events/{row['event_id']}/reward", json={"value": 1}).status_code == 404


def test_service_and_policy_configurations_read_and_set_the_actions_policy(client, db):
    base = "/personalizer/v1.0/configurations"
    service = client.get(f"{base}/service").get_json()
    assert service["rewardWaitTime"] == "PT1M" and service["learningMode"] == "Online"  # the suite's 60 s wait
    assert service["explorationPercentage"] == 0.2 and service["rewardAggregation"] == "earliest"
    # A configuration as a Personalizer client keeps it, Azure-only fields included (accepted, listed as not applied).
    answer = client.put(
        f"{base}/service",
        json={
            "rewardWaitTime": "PT10M",
            "defaultReward": -0.5,
            "rewardAggregation": "Sum",
            "explorationPercentage": 0.05,
            "modelExportFrequency": "PT5M",
            "logMirrorEnabled": False,
            "logRetentionDays": 90,
            "learningMode": "Online",
            "isAutoOptimizationEnabled": True,
            "autoOptimizationFrequency": "P7D",
            "modelRetrainDays": 0,
            "isInferenceExplainabilityEnabled": True,
        },
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["rewardWaitTime"] == "PT10M" and answer.get_json()["isAutoOptimizationEnabled"] is True
    assert answer.get_json()["notApplied"] == [
        "modelExportFrequency",
        "logMirrorEnabled",
        "logRetentionDays",
        "modelRetrainDays",
        "autoOptimizationFrequency",
    ]
    settings = client.get("/v1/policies/actions").get_json()["settings"]
    assert (settings["reward_wait"], settings["default_reward"], settings["aggregation"], settings["epsilon"]) == (
        600.0,
        -0.5,
        "sum",
        0.05,
    )
    assert settings["auto_optimize"] is True and settings["explain_ranks"] is True
    explained = client.post("/personalizer/v1.0/rank", json={"contextFeatures": _context("Anon"), "actions": ACTIONS})
    assert [item["id"] for item in explained.get_json()["inferenceExplanation"]] == [a["id"] for a in ACTIONS]
    assert client.get("/v1/policies/titles").get_json()["settings"]["reward_wait"] == 60.0  # only the actions policy

    version = client.get("/v1/policies/actions").get_json()["model"]["version"]
    answer = client.put(
        f"{base}/policy",
        json={
            "name": "my-policy",
            "arguments": "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::",
        },
    )
    assert answer.status_code == 200
    assert answer.get_json()["arguments"] == "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"
    policy = client.get("/v1/policies/actions").get_json()
    assert policy["settings"]["vw_args"] == ["--power_t", "0", "-l", "0.001", "--cb_type", "mtr", "-q", "::"]
    assert policy["settings"]["epsilon"] == 0.2 and policy["settings"]["reward_wait"] == 600.0
    assert policy["model"]["version"] == version + 1 and policy["model"]["origin"] == "vw_args changed"
    ranked = client.post("/personalizer/v1.0/rank", json={"contextFeatures": _context("Anon"), "actions": ACTIONS})
    assert ranked.status_code == 201


@pytest.mark.parametrize(
    "path, body, message",
    [
        (
            "service",
            {
                "rewardWaitTime": "10 minutes",
                "defaultReward": 0,
                "rewardAggregation": "earliest",
                "explorationPercentage": 0.2,
            },
            "rewardWaitTime",
        ),
        (
            "service",
            {
                "rewardWaitTime": "PT10M",
                "defaultReward": 0,
                "rewardAggregation": "average",
                "explorationPercentage": 0.2,
            },
            "aggregation",
        ),
        (
            "service",
            {
                "rewardWaitTime": "PT10M",
                "defaultReward": 0,
                "rewardAggregation": "earliest",
                "explorationPercentage": 1.5,
            },
            "explorationPercentage",
        ),
        (
            "service",
            {
                "rewardWaitTime": "PT10M",
                "defaultReward": 0,
                "rewardAggregation": "earliest",
                "explorationPercentage": 0.2,
                "learningMode": "Supervised",
            },
            "learningMode",
        ),
        (
            "service",
            {
                "rewardWaitTime": "P30D",
                "defaultReward": 0,
                "rewardAggregation": "earliest",
                "explorationPercentage": 0.2,
            },
            "reward_wait",
        ),
        ("policy", {"arguments": "--cb_explore_adf --port 26542"}, "arguments: option '--port'"),
        ("policy", {"arguments": "--epsilon lots"}, "--epsilon"),
        ("policy", {"arguments": "-q 'unclosed"}, "arguments"),
    ],
)
def test_bad_configurations_are_a_400_and_change_nothing(client, db, path, body, message):
    before = table_counts(db)
    response = client.put(f"/personalizer/v1.0/configurations/{path}", json=body)
    assert response.status_code == 400, response.get_json()
    assert message in response.get_json()["error"]["message"]
    assert table_counts(db) == before


PAGE_ACTIONS = [*ACTIONS, {"id": "weather-article", "features": [{"type": "Weather", "length": 1}]}]
PAGE_SLOTS = [
    {"id": "Hero", "features": [{"size": "large"}], "baselineAction": "sports-article"},
    {"id": "Sidebar", "features": [{"size": "small"}], "baselineAction": "entertainment-article"},
]
SLOT_WANTS = {"Hero": "news-article", "Sidebar": "weather-article"}  # what viewers take in each slot


def test_multi_slot_learns_per_slot_from_per_slot_rewards(app, client, db):
    with app.app_context():
        serving_state(app.config["DATABASE"]).rng = np.random.default_rng(9)
    rng = random.Random(8)
    learner = Learner(db, deployment(app))
    for index in range(500):
        slots = PAGE_SLOTS if index % 2 else PAGE_SLOTS[::-1]  # the page lists its slots in either order
        page = client.post(
            "/personalizer/v1.0/multislot/rank",
            json={
                "contextFeatures": _context(rng.choice(["AnonymousUser", "LoggedIn"])),
                "actions": PAGE_ACTIONS,
                "slots": slots,
            },
        ).get_json()
        rewards = [
            {
                "slotId": slot["id"],
                "value": float(rng.random() < (0.8 if slot["rewardActionId"] == SLOT_WANTS[slot["id"]] else 0.1)),
            }
            for slot in page["slots"]
        ]
        response = client.post(
            f"/personalizer/v1.0/multislot/events/{page['eventId']}/reward", json={"reward": rewards}
        )
        assert response.status_code == 204, response.get_json()
        if index % 100 == 99:
            learner.run_once(now=time.time() + 3600)
    serve_newest_models(app)
    assert client.put("/v1/policies/actions", json={"epsilon": 0.0}).status_code == 200
    for slots in (PAGE_SLOTS, PAGE_SLOTS[::-1]):
        page = client.post(
            "/personalizer/v1.0/multislot/rank",
            json={"contextFeatures": _context("LoggedIn"), "actions": PAGE_ACTIONS, "slots": slots},
        ).get_json()
        assert {slot["id"]: slot["rewardActionId"] for slot in page["slots"]} == SLOT_WANTS, page
    # Each slot is a decision of its own in the log: its own shared line, its baseline first.
    rounds = from_log(db, policy="actions", aggregation="earliest", default_reward=0.0)
    assert len(rounds) == 2 * 500 and rounds.n_events == 500  # the two checks' windows are still open
    first = rounds.actions(0)
    assert "slot=" in rounds.shared[0] and "slot.size=" in rounds.shared[0] and len(first) == 4
    baseline = next(slot for slot in PAGE_SLOTS if f"slot={slot['id']}" in rounds.shared[0])["baselineAction"]
    assert f"id={baseline}" in first[0]


def test_multi_slot_in_apprentice_serves_each_slots_baseline(client):
    configuration = client.get("/personalizer/v1.0/configurations/service").get_json()
    client.put("/personalizer/v1.0/configurations/service", json={**configuration, "learningMode": "Apprentice"})
    page = client.post(
        "/personalizer/v1.1-preview.1/multislot/rank",
        json={"contextFeatures": _context("LoggedIn"), "actions": PAGE_ACTIONS, "slots": PAGE_SLOTS},
    ).get_json()
    assert [slot["rewardActionId"] for slot in page["slots"]] == ["sports-article", "entertainment-article"]
    event = client.get(f"/v1/events/{page['eventId']}").get_json()
    assert [slot["title_probability"] for slot in event["slots"]] == [1.0, 1.0]


def _page(**changes: Any) -> dict[str, Any]:
    return {
        "contextFeatures": _context("LoggedIn"),
        "actions": PAGE_ACTIONS,
        "slots": [dict(slot) for slot in PAGE_SLOTS],
        **changes,
    }


@pytest.mark.parametrize(
    "body, message",
    [
        (_page(slots=[PAGE_SLOTS[0], {**PAGE_SLOTS[1], "id": "Hero"}]), "slots: the id 'Hero' is given twice"),
        (_page(slots=[PAGE_SLOTS[0], {**PAGE_SLOTS[1], "baselineAction": "sports-article"}]), "same baselineAction"),
        (_page(slots=[{**PAGE_SLOTS[0], "baselineAction": "nope"}]), "slots[0].baselineAction: 'nope' is not one"),
        (_page(slots=[{**PAGE_SLOTS[0], "excludedActions": ["sports-article"]}]), "is excluded from the slot"),
        (_page(slots=[{**PAGE_SLOTS[0], "excludedActions": ["nope"]}]), "slots[0].excludedActions: 'nope'"),
        (_page(slots=[{"id": f"s{i}", "baselineAction": PAGE_ACTIONS[0]["id"]} for i in range(11)]), "slots"),
        (_page(slots=[]), "slots"),
        (_page(slots=[{"id": "Hero"}]), "baselineAction"),
        (_page(slots=[{**PAGE_SLOTS[0], "features": [{"a": {"b": {"c": {"d": {"e": 1}}}}}]}]), "slots[0].features"),
    ],
)
def test_bad_multi_slot_rankings_are_a_400_and_store_nothing(client, db, body, message):
    before = table_counts(db)
    response = client.post("/personalizer/v1.0/multislot/rank", json=body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == "BadArgument" and message in response.get_json()["error"]["message"]
    assert table_counts(db) == before


def test_a_slot_that_earlier_slots_could_leave_empty_is_a_400_whatever_the_draw(client, db):
    before = table_counts(db)
    body = _page(
        actions=PAGE_ACTIONS[:3],
        slots=[
            {"id": "A", "baselineAction": "news-article"},
            {"id": "B", "baselineAction": "sports-article"},
            {"id": "C", "baselineAction": "entertainment-article", "excludedActions": ["news-article"]},
        ],
    )
    for _ in range(5):  # C may show 2 actions and A and B could take both: refused every time, not by chance
        response = client.post("/personalizer/v1.0/multislot/rank", json=body)
        assert response.status_code == 400
        assert "slots[2].excludedActions: 2 actions may fill slot 'C'" in response.get_json()["error"]["message"]
    assert table_counts(db) == before
    body["slots"][2]["excludedActions"] = []
    assert client.post("/personalizer/v1.0/multislot/rank", json=body).status_code == 201


def test_multi_slot_rewards_are_checked_before_anything_is_stored(client, db):
    page = client.post("/personalizer/v1.0/multislot/rank", json=_page()).get_json()
    single = client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}).get_json()
    before = table_counts(db)
    url = f"/personalizer/v1.0/multislot/events/{page['eventId']}/reward"
    for body, status, message in (
        (
            {"reward": [{"slotId": "Hero", "value": 1.0}, {"slotId": "Footer", "value": 1.0}]},
            400,
            "reward[1].slotId: the ranking has no slot 'Footer' (slots: Hero, Sidebar)",
        ),
        ({"reward": [{"slotId": "Hero", "value": 3.0}]}, 400, "value"),
        ({"reward": []}, 400, "reward"),
        ({"value": 1.0}, 400, "reward"),
    ):
        response = client.post(url, json=body)
        assert response.status_code == status and message in response.get_json()["error"]["message"], (
            response.get_json()
        )
    wrong = client.post(
        f"/personalizer/v1.0/multislot/events/{single['eventId']}/reward",
        json={"reward": [{"slotId": "Hero", "value": 1.0}]},
    )
    assert wrong.status_code == 409 and "single-slot ranking" in wrong.get_json()["error"]["message"]
    wrong = client.post(f"/personalizer/v1.0/events/{page['eventId']}/reward", json={"value": 1.0})
    assert (
        wrong.status_code == 409
        and f"/multislot/events/{page['eventId']}/reward" in wrong.get_json()["error"]["message"]
    )
    assert client.post("/personalizer/v1.0/multislot/events/nope/activate").status_code == 404
    assert table_counts(db) == before
    both = client.post(url, json={"reward": [{"slotId": "Hero", "value": 1.0}, {"slotId": "Sidebar", "value": 0.5}]})
    assert both.status_code == 204
    event = client.get(f"/v1/events/{page['eventId']}").get_json()
    assert [(r["title_id"], r["value"]) for r in event["rewards"]] == [
        (page["slots"][0]["rewardActionId"], 1.0),
        (page["slots"][1]["rewardActionId"], 0.5),
    ]


def test_the_api_version_path_answers_and_names_what_it_serves(client, db):
    answer = client.post("/personalizer/rank?api-version=2022-09-01-preview", json={"actions": ACTIONS})
    assert answer.status_code == 201 and answer.get_json()["rewardActionId"]
    for query, said in (
        ("", "api-version: missing"),
        ("?api-version=2019-01-01", "api-version: '2019-01-01' is not served"),
    ):
        refused = client.post(f"/personalizer/rank{query}", json={"actions": ACTIONS})
        assert refused.status_code == 400 and refused.get_json()["error"]["message"].startswith(said)
        assert "2022-09-01-preview" in refused.get_json()["error"]["message"]
    unknown = client.get("/personalizer/nothing-here?api-version=2022-09-01-preview")
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "ResourceNotFound"
    assert "/personalizer/{operation}?api-version=2022-09-01-preview" in unknown.get_json()["error"]["message"]
    wrong = client.patch("/personalizer/v1.0/model")
    assert wrong.status_code == 405 and wrong.get_json()["error"]["code"] == "OperationNotAllowed"


ADMIN = "/personalizer/v1.0"
RANGE = {"startTime": "2020-01-01T00:00:00Z", "endTime": "2100-01-01T00:00:00.0000000Z"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "message"),
    [
        (
            "PUT",
            "/evaluations/e1",
            {"name": "x", **RANGE, "color": "red"},
            400,
            "InvalidEvaluationContract",
            "color: not a field of an evaluation",
        ),
        ("PUT", "/evaluations/e1", {"name": "", **RANGE}, 400, "BadRequest", "name: must be text"),
        (
            "PUT",
            "/evaluations/e1",
            {"name": "x", "startTime": "yesterday", "endTime": RANGE["endTime"]},
            400,
            "BadRequest",
            "startTime: 'yesterday' is not an ISO 8601",
        ),
        (
            "PUT",
            "/evaluations/e1",
            {"name": "x", "startTime": RANGE["endTime"], "endTime": RANGE["startTime"]},
            400,
            "BadRequest",
            "endTime: must be later than startTime",
        ),
        (
            "PUT",
            "/evaluations/e1",
            {"name": "x", **RANGE, "policies": [{"name": "p", "arguments": "--port 1"}]},
            400,
            "InvalidPolicyConfiguration",
            "policies[0].arguments: option '--port' is not accepted",
        ),
        (
            "PUT",
            "/evaluations/e1",
            {"name": "x", **RANGE, "policies": [{"name": "p", "arguments": "-q CX"}] * 2},
            400,
            "DuplicateCustomPolicyNames",
            "policies[1].name: 'p' is used twice",
        ),
        (
            "PUT",
            "/evaluations/e1",
            {"name": "x", **RANGE, "policies": "all"},
            400,
            "InvalidEvaluationContract",
            "policies: must be a list",
        ),
        (
            "PUT",
            "/evaluations/e1",
            {"name": "x", "startTime": "2020-01-01T00:00:00Z", "endTime": "2020-01-02T00:00:00Z"},
            400,
            "NoLogsExistInDateRange",
            "startTime: no closed decisions of the actions policy",
        ),
        ("PUT", "/evaluations/e1", ["not", "an", "object"], 400, "BadArgument", "body: must be a JSON object"),
        ("GET", "/evaluations/missing", None, 404, "EvaluationNotFound", "Evaluation 'missing' does not exist"),
        ("DELETE", "/evaluations/missing", None, 404, "EvaluationNotFound", "Evaluation 'missing' does not exist"),
        (
            "POST",
            "/configurations/applyFromEvaluation",
            {"evaluationId": "missing", "policyName": "p"},
            404,
            "EvaluationNotFound",
            "Evaluation 'missing'",
        ),
        (
            "POST",
            "/configurations/applyFromEvaluation",
            {"evaluationId": 7},
            400,
            "BadRequest",
            "evaluationId and policyName",
        ),
        (
            "PUT",
            "/featureImportances/f1",
            {"name": "x", "startTime": "2020-01-01T00:00:00Z", "endTime": "2020-01-02T00:00:00Z"},
            400,
            "NoLogsExistInDateRange",
            "startTime",
        ),
        (
            "PUT",
            "/featureImportances/f1",
            {"name": "x", **RANGE, "policies": []},
            400,
            "InvalidContract",
            "policies: not a",
        ),
        ("GET", "/featureImportances/missing", None, 404, "FeatureImportanceNotFound", "FeatureImportance 'missing'"),
        ("GET", "/evaluations?top=-1", None, 400, "BadArgument", "top: must be a whole number from 0"),
        (
            "GET",
            "/featureImportances?skip=99999999999999999999",
            None,
            400,
            "BadArgument",
            "skip: must be a whole number from 0 to 1000000",
        ),
        ("POST", "/logs/interactions", None, 400, "OperationNotAllowed", "Marquee logs its own decisions"),
        ("GET", "/model?signed=true", None, 400, "OperationNotAllowed", "signed: Marquee exports the VW model itself"),
    ],
)
def test_bad_administration_calls_say_why_in_personalizers_shape_and_store_nothing(
    client, db, method, path, body, status, code, message
):
    answer = client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}).get_json()
    client.post(f"/personalizer/v1.0/events/{answer['eventId']}/reward", json={"value": 1})
    before = table_counts(db)
    response = client.open(f"{ADMIN}{path}", method=method, json=body)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"].startswith(message), error
    assert table_counts(db) == before


def test_deleting_the_logs_keeps_what_is_still_to_be_shown_or_learned(client, db):
    done = client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}).get_json()["eventId"]
    waiting = client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS, "deferActivation": True}).get_json()
    newest = client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}).get_json()["eventId"]
    db.execute("DELETE FROM pending WHERE event_seq = (SELECT seq FROM events WHERE id = ?)", [done])  # learned
    assert client.delete("/personalizer/v1.0/logs").status_code == 204
    assert client.post(f"/personalizer/v1.0/events/{done}/activate").status_code == 404  # deleted
    assert client.post(f"/personalizer/v1.0/events/{waiting['eventId']}/activate").status_code == 204  # kept
    assert client.post(f"/personalizer/v1.0/events/{newest}/reward", json={"value": 1}).status_code == 204  # kept
