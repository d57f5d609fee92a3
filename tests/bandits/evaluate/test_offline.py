"""Offline evaluation on the service's own log: rounds as logged, the reward model, and candidates against the truth."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bandits.evaluate import offline
from tests.helpers import deployment
from tests.worlds import EVENTS, SLOTS, TITLES, LoggedWorld


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> LoggedWorld:
    return LoggedWorld(tmp_path_factory.mktemp("offline"))


def evaluate(world: LoggedWorld, **request: Any) -> dict[str, Any]:
    return offline.evaluate(world.db, deployment(world.app), offline.parse_spec(request))


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in report["candidates"]}


def test_rounds_are_the_logged_decisions(world):
    artwork = offline.from_log(world.db, policy="artwork", aggregation="earliest", default_reward=0.0)
    titles = offline.from_log(world.db, policy="titles", aggregation="earliest", default_reward=0.0)
    assert len(artwork) == len(titles) == EVENTS * SLOTS and artwork.n_events == EVENTS
    clicks = world.db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0]
    assert artwork.reward.sum() == titles.reward.sum() == clicks
    # A title round offers the candidates not placed in earlier slots; an artwork round the title's artworks.
    assert titles.sizes.tolist() == [TITLES - position for position in titles.position.tolist()]
    assert set(artwork.sizes.tolist()) == {3}
    event = world.client.get(f"/v1/events/{titles.event_ids[0]}").get_json()
    for i in range(SLOTS):
        slot = event["slots"][i]
        assert titles.action_ids[int(titles.logged_flat[i])] == slot["title_id"]
        assert titles.pscore[i] == slot["title_probability"]
        assert artwork.action_ids[int(artwork.logged_flat[i])] == slot["artwork_id"]
        assert artwork.pscore[i] == slot["artwork_probability"]
        assert f"|P pos={i}" in titles.shared[i] and f"id={slot['title_id']}" in artwork.shared[i]
    assert np.all(np.diff(titles.created_at) >= 0)


def test_only_closed_windows_count_and_ranges_filter(world):
    before = offline.from_log(world.db, policy="artwork", aggregation="earliest", default_reward=0.0)
    open_event = world.client.post("/v1/rank", json={"user": {"features": {"segment": "family"}}, "slots": 2})
    deferred = world.client.post("/v1/rank", json={"slots": 2, "defer_activation": True})
    assert open_event.status_code == deferred.status_code == 200
    after = offline.from_log(world.db, policy="artwork", aggregation="earliest", default_reward=0.0)
    assert len(after) == len(before)  # neither window has closed
    middle = float(before.created_at[len(before) // 2])
    since = offline.from_log(world.db, policy="artwork", aggregation="earliest", default_reward=0.0, since=middle)
    until = offline.from_log(world.db, policy="artwork", aggregation="earliest", default_reward=0.0, until=middle)
    assert len(since) + len(until) == len(before) and since.created_at.min() >= middle > until.created_at.max()
    recent = offline.from_log(world.db, policy="artwork", aggregation="earliest", default_reward=0.0, limit=10)
    assert recent.n_events == 10 and recent.event_ids[-1] == before.event_ids[-1]


def test_logged_policy_reproduces_its_own_mean_reward(world):
    report = evaluate(world, policy="artwork", candidates=["logged"])
    logged = by_name(report)["logged"]["estimates"]
    mean = report["mean_reward"]
    for name in ("ips", "snips", "dr"):
        assert logged[name]["value"] == pytest.approx(mean)
    assert logged["ips"]["effective_sample_size"] == pytest.approx(report["rounds"])
    assert by_name(report)["logged"]["lift_over_logged"]["value"] == 0.0


def test_artwork_estimates_cover_the_true_values(world):
    learned = {"name": "learned", "kind": "vw", "vw_args": "-q UA -q UG -q IA -l 0.2 --clip_p 1"}
    report = evaluate(
        world, policy="artwork", candidates=["uniform", "default", learned, "greedy"], segment_by="segment"
    )
    rounds = offline.from_log(world.db, policy="artwork", aggregation="earliest", default_reward=0.0)
    assert report["rounds"] == len(rounds)
    model = report["reward_model"]
    assert model["r_squared"] > 0.02, model  # the cross-fitted model predicts better than the mean
    blob = offline.model_blob(world.db, "artwork", None)[1]
    # The newest model learned these very rewards: its estimates flatter it, and it is marked so, not covered.
    assert by_name(report)["greedy"]["in_sample"] and by_name(report)["greedy"]["scoring"] == "stored model"
    for entry in [entry for entry in report["candidates"] if not entry["in_sample"]]:
        candidate = offline.parse_candidate(entry["candidate"])
        pmf = offline.target_distribution(rounds, candidate, model_blob=blob)
        assert pmf is not None
        truth = world.true_artwork_value(rounds, pmf)
        for estimator in ("ips", "dr"):
            # A 95 % interval misses one time in twenty by design, and this log is one draw: the check is
            # that the truth lies within 1.5 half-widths (3 standard errors). How often the intervals
            # themselves cover is measured over hundreds of logs by bench/interval_bench.py.
            estimate = entry["estimates"][estimator]
            half = (estimate["ci_high"] - estimate["ci_low"]) / 2
            assert abs(truth - estimate["value"]) <= 1.5 * half, (entry["name"], estimator, truth, estimate)
    results = by_name(report)
    # The first artwork ("dark-warm") is what night owls like and families do not: the segments see it.
    default = {row["segment"]: row["dr"]["value"] for row in results["default"]["segments"]}
    uniform = {row["segment"]: row["dr"]["value"] for row in results["uniform"]["segments"]}
    assert default["night-owl"] > uniform["night-owl"] and default["family"] < uniform["family"]
    # A model trained on the log, each decision judged before it is learned, beats what was logged (which
    # explored more), and says so with confidence.
    assert results["learned"]["lift_over_logged"]["ci_low"] > 0
    assert results["uniform"]["lift_over_logged"]["ci_high"] < 0
    assert len(results["learned"]["over_time"]) == offline.TIME_BUCKETS


def test_titles_candidates_trained_on_the_log_find_the_popular_titles(world):
    report = evaluate(
        world,
        policy="titles",
        candidates=["logged", "uniform", {"name": "learned", "kind": "vw", "vw_args": "-q UT -l 0.05"}],
    )
    results = by_name(report)
    assert results["logged"]["estimates"]["dr"]["value"] == pytest.approx(report["mean_reward"])
    assert results["uniform"]["lift_over_logged"]["ci_high"] < 0
    learned = results["learned"]
    assert learned["estimates"]["dr"]["ci_low"] > results["uniform"]["estimates"]["dr"]["ci_high"]
    # Progressive validation: the policy trained on the log improves over the run.
    series = [point["dr"]["value"] for point in learned["over_time"]]
    assert np.mean(series[-3:]) > np.mean(series[:2])


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({}, "policy: must be one of titles, artwork"),
        ({"policy": "artwork", "candidates": []}, "candidates: must be a list of 1 to"),
        ({"policy": "artwork", "candidates": ["best"]}, "candidates[0]: 'best' is not a candidate name"),
        ({"policy": "artwork", "candidates": [{"kind": "oracle"}]}, "candidates[0].kind: must be one of"),
        ({"policy": "artwork", "candidates": [{"kind": "vw"}]}, "candidates[0].vw_args: a vw candidate needs"),
        ({"policy": "artwork", "candidates": [{"kind": "vw", "vw_args": "--port 80"}]}, "candidates[0].vw_args:"),
        (
            {"policy": "artwork", "candidates": [{"kind": "model", "epsilon": 2}]},
            "candidates[0].epsilon: must be a number in [0, 1]",
        ),
        ({"policy": "artwork", "candidates": [{"kind": "uniform", "version": 3}]}, "candidates[0].version: only for"),
        (
            {"policy": "artwork", "candidates": ["uniform", {"kind": "uniform"}]},
            "candidates[1].name: 'uniform' is used twice",
        ),
        ({"policy": "artwork", "since": "yesterday"}, "since: 'yesterday' is not an ISO 8601 time"),
        ({"policy": "artwork", "since": 200, "until": 100}, "until: must be later than since"),
        ({"policy": "artwork", "folds": 1}, "folds: must be a whole number from 2 to 10"),
        ({"policy": "artwork", "limit": 0}, "limit: must be a whole number from 2"),
        ({"policy": "artwork", "segment_by": 5}, "segment_by: must be the name of a viewer feature"),
        ({"policy": "artwork", "colour": "red"}, "colour: not an evaluation field"),
    ],
)
def test_bad_requests_name_the_field(request_body, message):
    with pytest.raises(offline.SpecError) as error:
        offline.parse_spec(request_body)
    assert str(error.value).startswith(message.split(":")[0]) and message in str(error.value)


def test_spec_round_trips_and_times_parse():
    spec = offline.parse_spec(
        {
            "policy": "titles",
            "since": "2026-11-24T00:00:00Z",
            "until": 1795600000,
            "candidates": ["greedy", {"kind": "vw", "vw_args": ["-q", "UT"], "epsilon": 0.1}],
        }
    )
    assert spec.since == 1795478400.0 and spec.until == 1795600000.0
    assert offline.parse_spec(spec.as_dict()) == spec
    assert [c.name for c in spec.candidates] == ["greedy", "vw -q UT eps=0.1"]


def test_evaluations_refuse_ranges_without_decisions_and_unkept_versions(world):
    with pytest.raises(offline.SpecError, match="since: the range holds 0 closed decisions"):
        evaluate(world, policy="artwork", since=4102444800)  # 2100
    with pytest.raises(
        offline.SpecError, match=r"candidates\[0\]\.version: model version 999 of artwork is not stored"
    ):
        evaluate(world, policy="artwork", candidates=[{"kind": "model", "version": 999}])


def test_the_reward_model_keeps_the_policy_features_and_drops_its_bandit_options():
    args = offline.regressor_args(["-q", "UA", "-q", "IA", "-l", "0.2", "--clip_p", "1", "--cb_type", "mtr"])
    assert args == ["-q", "UA", "-q", "IA", "-l", str(offline.REGRESSOR_LEARNING_RATE)]


def test_segmenting_by_a_feature_no_decision_has_names_those_they_have(world):
    with pytest.raises(offline.SpecError) as refused:
        evaluate(world, policy="artwork", candidates=["uniform"], segment_by="nosuch")
    assert str(refused.value) == (
        "segment_by: no decision in the range has the viewer feature 'nosuch'; the features there are device, segment"
    )
