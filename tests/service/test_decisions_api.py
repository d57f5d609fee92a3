"""Rank, reward and activate over HTTP: what is returned is logged, windows and rewards are exact."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter

import pytest

from tests.helpers import add_catalog, sqlite_steps, table_counts

USER = {"id": "u-1", "features": {"country": "BR", "device": "tv", "hour": 21, "history_genres": ["comedy"]}}


def rank(client, **body):
    response = client.post("/v1/rank", json={"user": USER, "slots": 3, **body})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_rank_returns_distinct_titles_with_probabilities_and_logs_them(client, db, catalog):
    body = rank(client, slots=4)
    slots = body["slots"]
    assert [s["position"] for s in slots] == [0, 1, 2, 3]
    assert len({s["title_id"] for s in slots}) == 4
    assert body["model_versions"] == {"titles": 0, "artwork": 0}
    for slot in slots:
        assert slot["artwork_id"].startswith(slot["title_id"] + "-")
        assert slot["artwork_url"] == f"/v1/artworks/{slot['artwork_id']}/image?w=342"
        assert 0 < slot["title_probability"] <= 1 and 0 < slot["artwork_probability"] <= 1
    logged = client.get(f"/v1/events/{body['event_id']}").get_json()
    assert logged["context"] == USER["features"]
    assert [
        (s["title_id"], s["artwork_id"], s["title_probability"], s["artwork_probability"]) for s in logged["slots"]
    ] == [(s["title_id"], s["artwork_id"], s["title_probability"], s["artwork_probability"]) for s in slots]
    row = db.execute(
        "SELECT e.title_shared, b.lines FROM events e JOIN feature_blocks b ON b.key = e.title_block"
    ).fetchone()
    assert row[0].startswith("shared |U ") and "country=BR" in row[0] and "hour:21" in row[0]
    assert len(row[1].split("\n")) == len(catalog) and all(line.startswith("|T id=") for line in row[1].split("\n"))


def test_event_ids_the_service_makes_sort_in_the_order_of_the_decisions(client, db, catalog):
    made = []
    for _ in range(3):
        made.append(rank(client)["event_id"])
        time.sleep(0.002)  # ids of one millisecond are ordered by their random bits only
    assert made == sorted(made)
    assert [row[0] for row in db.execute("SELECT id FROM events ORDER BY seq")] == made


def test_untrained_model_ranks_uniformly_and_says_so(client, catalog):
    # An untrained model ties every title: each slot is uniform over the titles left.
    slots = rank(client, slots=3)["slots"]
    for position, slot in enumerate(slots):
        assert slot["title_probability"] == pytest.approx(1 / (len(catalog) - position))
        assert slot["artwork_probability"] == pytest.approx(1 / 3)
    firsts = {rank(client, slots=1)["slots"][0]["title_id"] for _ in range(40)}
    assert len(firsts) >= 4  # not always the catalog's first title


def test_candidates_and_exclude_narrow_the_row(client, catalog):
    body = rank(client, slots=2, candidates=["t01", "t02", "t03", "gone"], exclude=["t03"])
    assert {s["title_id"] for s in body["slots"]} == {"t01", "t02"}
    assert body["unavailable_candidates"] == ["gone"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"slots": 0}, 422, "slots"),
        ({"slots": 51}, 422, "at most 50"),
        ({"slots": 7}, 422, "only 6 candidate titles"),
        ({"slots": "3"}, 422, "slots"),
        ({"candidates": ["t01"], "slots": 2}, 422, "only 1 candidate"),
        ({"candidates": "t01"}, 422, "candidates"),
        ({"candidates": ["bad id"]}, 422, "candidates[0]"),
        ({"user": {"features": {"hour": [1, 2]}}}, 422, "user.features"),
        ({"user": {"features": {"nested": {"a": 1}}}}, 422, "user.features"),
        ({"user": {"features": {"x" * 65: "y"}}}, 422, "user.features"),
        ({"user": {"id": 5}}, 422, "user.id"),
        ({"event_id": "has space"}, 422, "event_id"),
        ({"surprise": True}, 422, "surprise"),
        ({"defer_activation": "yes"}, 422, "defer_activation"),
    ],
)
def test_bad_rank_requests_are_refused_and_log_nothing(client, db, catalog, body, status, message):
    before = table_counts(db)
    response = client.post("/v1/rank", json=body)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert message in error["message"], error
    assert table_counts(db) == before


def test_rank_refusals_outside_the_body(client, db, catalog):
    assert client.post("/v1/rank", data="slots=3").status_code == 415
    assert client.post("/v1/rank", data="[", content_type="application/json").status_code == 422
    assert client.get("/v1/rank").status_code == 405
    rank(client, event_id="e-fixed")
    before = table_counts(db)
    duplicate = client.post("/v1/rank", json={"slots": 1, "event_id": "e-fixed"})
    assert duplicate.status_code == 409
    assert table_counts(db) == before


def test_empty_catalog_and_titles_without_artwork(client, db):
    empty = client.post("/v1/rank", json={"slots": 1})
    assert empty.status_code == 409 and "catalog" in empty.get_json()["error"]["message"]
    client.post("/v1/titles", json={"id": "bare", "name": "No artwork"})
    assert client.post("/v1/rank", json={"slots": 1}).status_code == 409
    add_catalog(client, titles=1)
    refused = client.post("/v1/rank", json={"slots": 1, "candidates": ["bare"]})
    assert refused.status_code == 422 and "bare" in refused.get_json()["error"]["message"]
    assert client.post("/v1/rank", json={"slots": 1}).get_json()["slots"][0]["title_id"] == "t00"


def test_retired_titles_and_artwork_are_not_chosen(client, catalog):
    client.delete("/v1/titles/t00")
    client.delete("/v1/artworks/t01-dark-warm")
    client.delete("/v1/artworks/t01-bright-cool")
    for _ in range(30):
        body = rank(client, slots=5)
        ids = [s["title_id"] for s in body["slots"]]
        assert "t00" not in ids
        for slot in body["slots"]:
            if slot["title_id"] == "t01":
                assert slot["artwork_id"] == "t01-neutral" and slot["artwork_probability"] == 1.0


def test_reward_flow_credits_both_policies_and_is_idempotent(client, db, catalog):
    body = rank(client)
    event, title = body["event_id"], body["slots"][1]["title_id"]
    first = client.post(
        f"/v1/events/{event}/reward", json={"title_id": title, "value": 1}, headers={"Idempotency-Key": "k1"}
    )
    assert first.status_code == 201
    assert first.get_json()["credited_policies"] == ["titles", "artwork"]
    again = client.post(
        f"/v1/events/{event}/reward", json={"title_id": title, "value": 1}, headers={"Idempotency-Key": "k1"}
    )
    assert again.status_code == 200 and again.get_json()["replayed"] is True
    assert db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0] == 1
    reused = client.post(
        f"/v1/events/{event}/reward", json={"title_id": title, "value": 0.5}, headers={"Idempotency-Key": "k1"}
    )
    assert reused.status_code == 409


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/events/nope/reward", {"title_id": "t00", "value": 1}, 404, "nope"),
        (None, {"title_id": "not-shown", "value": 1}, 409, "not shown"),
        (None, {"title_id": "t00", "value": 1.5}, 422, "value"),
        (None, {"title_id": "t00", "value": "1"}, 422, "value"),
        (None, {"title_id": "t00", "value": True}, 422, "value"),
        (None, {"title_id": "t00"}, 422, "value"),
        (None, {"value": 1}, 422, "title_id"),
        ("/v1/events/bad%20id/reward", {"title_id": "t00", "value": 1}, 422, "event_id"),
    ],
)
def test_bad_rewards_are_refused_and_change_nothing(client, db, catalog, path, body, status, message):
    event = rank(client)["event_id"]
    before = table_counts(db)
    response = client.post(path or f"/v1/events/{event}/reward", json=body)
    assert response.status_code == status
    assert message in response.get_json()["error"]["message"]
    assert table_counts(db) == before


def test_idempotency_key_too_long(client, catalog):
    body = rank(client)
    response = client.post(
        f"/v1/events/{body['event_id']}/reward",
        json={"title_id": body["slots"][0]["title_id"], "value": 1},
        headers={"Idempotency-Key": "k" * 201},
    )
    assert response.status_code == 422


def test_reading_an_event_costs_the_same_however_many_events_were_learned(app, client, db, learner, catalog):
    """GET /v1/events/{id} finds what learned the event by the table's key: 20,000 more learned rows add no steps."""
    event = rank(client)["event_id"]
    learner.run_once(now=time.time() + 61)

    def steps() -> int:
        counted, shown = sqlite_steps(app, lambda: client.get(f"/v1/events/{event}"))
        assert shown.status_code == 200 and shown.get_json()["learned_in_versions"] == {"titles": 1, "artwork": 1}
        return counted or 0  # 0 on PostgreSQL, which counts no steps

    few = min(steps() for _ in range(3))
    db.executemany(
        "INSERT INTO learned (policy, event_seq, version, examples) VALUES (?, ?, 1, 1)",
        [(policy, seq) for seq in range(1000, 11000) for policy in ("titles", "artwork")],
    )
    many = min(steps() for _ in range(3))
    assert many <= 1.1 * few, (few, many)  # a scan of the table would add some 20,000 rows' steps


def test_late_rewards_are_stored_but_not_learned(client, db, learner, catalog):
    body = rank(client)
    event, title = body["event_id"], body["slots"][0]["title_id"]
    learner.run_once(now=time.time() + 61)  # window closed: learned with the default reward
    late = client.post(f"/v1/events/{event}/reward", json={"title_id": title, "value": 1})
    assert late.status_code == 201 and late.get_json()["late"] is True
    # The answer says why nothing was credited, policy by policy, so that a slow client cannot miss it.
    why = late.get_json()["not_credited"]
    assert set(why) == {"titles", "artwork"}
    assert why["titles"] == (
        "its reward window had closed (reward_wait 60 s) and the decision was learned, into model "
        "version 1, before this reward arrived"
    )
    logged = client.get(f"/v1/events/{event}").get_json()
    assert logged["rewards"][0]["credited_policies"] == [] and logged["rewards"][0]["late_for"] == ["artwork", "titles"]
    assert logged["learned_in_versions"] == {"titles": 1, "artwork": 1}


def test_a_reward_after_the_window_but_before_learning_says_so(client, db, catalog):
    body = rank(client)
    event, title = body["event_id"], body["slots"][0]["title_id"]
    db.execute(
        "UPDATE pending SET due_at = due_at - 75 WHERE event_seq = (SELECT seq FROM events WHERE id = ?)", [event]
    )
    late = client.post(f"/v1/events/{event}/reward", json={"title_id": title, "value": 1}).get_json()
    assert late["credited_policies"] == [] and late["late"] is True
    assert late["not_credited"]["artwork"].startswith("its reward window closed 15.")
    assert late["not_credited"]["artwork"].endswith(
        "s before this reward arrived (reward_wait 60 s): the decision was learned, or is being learned, without it"
    )
    fresh = rank(client)
    on_time = client.post(
        f"/v1/events/{fresh['event_id']}/reward", json={"title_id": fresh["slots"][0]["title_id"], "value": 1}
    )
    assert on_time.status_code == 201 and on_time.get_json()["credited_policies"] == ["titles", "artwork"]
    assert "not_credited" not in on_time.get_json()


def test_deferred_events_are_learned_only_after_activation(client, db, learner, catalog):
    deferred = rank(client, defer_activation=True)
    assert deferred["deferred"] is True
    never = rank(client, defer_activation=True)["event_id"]
    learner.run_once(now=time.time() + 3600)
    assert db.execute("SELECT COUNT(*) FROM learned").fetchone()[0] == 0
    activated = client.post(f"/v1/events/{deferred['event_id']}/activate")
    assert activated.status_code == 200 and activated.get_json()["already_active"] is False
    assert client.post(f"/v1/events/{deferred['event_id']}/activate").get_json()["already_active"] is True
    assert client.post("/v1/events/nope/activate").status_code == 404
    learner.run_once(now=time.time() + 61)
    learned = {row[0] for row in db.execute("SELECT e.id FROM learned l JOIN events e ON e.seq = l.event_seq")}
    assert learned == {deferred["event_id"]}
    assert never not in learned
    assert client.get("/v1/policies/titles").get_json()["stats"]["events_deferred_not_activated"] == 1


@pytest.mark.parametrize(("aggregation", "expected"), [("earliest", 0.25), ("sum", 1.0)])
def test_aggregation_of_several_rewards(client, db, learner, catalog, aggregation, expected):
    assert client.put("/v1/policies/titles", json={"aggregation": aggregation}).status_code == 200
    body = rank(client)
    title = body["slots"][0]["title_id"]
    for value in (0.25, 0.75):
        client.post(f"/v1/events/{body['event_id']}/reward", json={"title_id": title, "value": value})
    from bandits.learn.learner import _close_due, closed_labels
    from bandits.model.policy import load_policy

    _close_due(db, load_policy(db, learner.config, "titles"), now=time.time() + 61, limit=10)
    # A change of rule after the close does not change the labels the close fixed.
    other = "sum" if aggregation == "earliest" else "earliest"
    assert client.put("/v1/policies/titles", json={"aggregation": other}).status_code == 200
    seq = db.execute("SELECT seq FROM events WHERE id = ?", [body["event_id"]]).fetchone()[0]
    assert closed_labels(db, "titles", [seq]) == {seq: [expected, 0.0, 0.0]}


def test_learn_on_first_reward(client, db, learner, catalog):
    client.put("/v1/policies/artwork", json={"learn_on_first_reward": True})
    body = rank(client)
    client.post(f"/v1/events/{body['event_id']}/reward", json={"title_id": body["slots"][0]["title_id"], "value": 1})
    results = learner.run_once()  # now: the titles window is still open, the artwork one closed on the reward
    assert results["titles"].events == 0 and results["artwork"].events == 1
    second = client.post(
        f"/v1/events/{body['event_id']}/reward", json={"title_id": body["slots"][1]["title_id"], "value": 1}
    )
    assert second.get_json()["credited_policies"] == ["titles"]


def test_a_model_failure_is_a_503_and_logs_nothing(client, db, catalog, monkeypatch):
    from bandits.vw.workspace import TextExamples, VWError

    def refuse(self, lines):
        raise VWError("simulated failure")

    monkeypatch.setattr(TextExamples, "predict", refuse)
    before = table_counts(db)
    response = client.post("/v1/rank", json={"slots": 2})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert "simulated failure" in response.get_json()["error"]["message"]
    assert table_counts(db) == before


def test_each_process_draws_its_own_exploration(app):
    import os

    from service.runtime import serving_state

    parent = serving_state(app.config["DATABASE"])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child, as a gunicorn worker would be after a fork
        child = serving_state(app.config["DATABASE"])
        os.write(write, b"new" if child is not parent else b"same")
        os.write(write, child.rng.bytes(16))
        os._exit(0)
    os.waitpid(pid, 0)
    answer = os.read(read, 100)
    assert answer[:3] == b"new"
    assert answer[3:] != parent.rng.bytes(16)


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/titles", '{"name": "x", "genres": ["\\ud800"]}', "surrogate"),
        ("/v1/titles", '{"name": "x", "features": {"k": "\\udfff"}}', "surrogate"),
        ("/v1/rank", '{"user": {"features": {"q": "\\ud800"}}}', "surrogate"),
        ("/v1/rank", '{"user": {"features": {"n": ' + "9" * 400 + "}}}", "digits"),
        ("/v1/titles", '{"name": "x", "year": ' + "1" * 400 + "}", "digits"),
        ("/v1/rank", "[" * 100_000 + "]" * 100_000, "nested"),
        ("/v1/rank", '{"user": {"features": {"a": ' + "[" * 40 + '"x"' + "]" * 40 + "}}}", "nested"),
        ("/v1/rank", b'{"slots": "\xff\xfe"}', "not valid JSON"),
    ],
)
def test_hostile_json_is_a_422_and_changes_nothing(client, db, catalog, path, body, message):
    before = table_counts(db)
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 422, response.get_json()
    assert message in response.get_json()["error"]["message"]
    assert table_counts(db) == before
    assert client.post("/v1/rank", json={"slots": 2}).status_code == 200  # and serving goes on


def test_rewards_for_a_deferred_event_wait_for_its_activation(client, db, learner, catalog):
    client.put("/v1/policies/titles", json={"learn_on_first_reward": True})
    body = rank(client, defer_activation=True)
    title = body["slots"][0]["title_id"]
    early = client.post(f"/v1/events/{body['event_id']}/reward", json={"title_id": title, "value": 1})
    assert early.status_code == 409 and "activate" in early.get_json()["error"]["message"]
    assert db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0] == 0
    assert learner.run_once()["titles"].events == 0  # nothing learnable before the activation
    client.post(f"/v1/events/{body['event_id']}/activate")
    after = client.post(f"/v1/events/{body['event_id']}/reward", json={"title_id": title, "value": 1})
    assert after.status_code == 201 and after.get_json()["credited_policies"] == ["titles", "artwork"]
    assert learner.run_once()["titles"].events == 1


def test_ids_with_a_trailing_newline_are_refused(client, catalog):
    from tests.helpers import image_bytes

    response = client.post(
        "/v1/titles/t00/artworks",
        data={"file": (io.BytesIO(image_bytes()), "x.png"), "id": "a9\n"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert client.post("/v1/rank", json={"slots": 1, "event_id": "e1\n"}).status_code == 422


def test_background_refresh_survives_a_failure_and_serves_new_models(app, client, db, catalog, monkeypatch):
    import sqlite3

    from service.runtime import ServingState, serving_state

    rank(client)  # starts this process's background thread
    state = serving_state(app.config["DATABASE"])
    real = ServingState._versions
    failures = {"left": 2}

    def flaky(database):
        if threading.current_thread().name == "marquee-background" and failures["left"]:
            failures["left"] -= 1
            raise sqlite3.OperationalError("simulated: database is locked")
        return real(database)

    monkeypatch.setattr(ServingState, "_versions", staticmethod(flaky))
    client.post("/v1/policies/titles/reset")
    deadline = time.monotonic() + 30
    while state.models["titles"].version != 1 and time.monotonic() < deadline:
        client.post("/v1/rank", json={"slots": 1})  # requests wake the background thread
        time.sleep(0.05)
    assert failures["left"] == 0 and state.models["titles"].version == 1


def test_new_artwork_gets_its_trial_share_with_exact_probabilities(app, client, db, learner):
    from tests.helpers import add_catalog, image_bytes, serve_newest_models

    add_catalog(client, titles=2, styles=(("dark-warm", "face"), ("bright-cool", "ensemble")))
    for title in ("t00", "t01"):  # the catalog's artworks are old news
        db.execute("UPDATE artworks SET created_at = created_at - 30 * 86400 WHERE title_id = ?", [title])
    for _ in range(40):  # teach the model that dark-warm wins
        body = rank(client, slots=2)
        for slot in body["slots"]:
            if slot["artwork_id"].endswith("dark-warm"):
                client.post(f"/v1/events/{body['event_id']}/reward", json={"title_id": slot["title_id"], "value": 1})
    learner.run_once(now=time.time() + 61)
    serve_newest_models(app)
    # The trial share alone: no random draws, and no exploration bonus (which would put the new artwork first).
    client.put("/v1/policies/artwork", json={"epsilon": 0.0, "exploration_bonus": 0.0})
    client.post(
        "/v1/titles/t00/artworks",
        data={"file": (io.BytesIO(image_bytes((10, 200, 10))), "n.png"), "id": "t00-new"},
        content_type="multipart/form-data",
    )
    shown = Counter()
    for _ in range(300):
        slot = next(s for s in rank(client, slots=2)["slots"] if s["title_id"] == "t00")
        shown[slot["artwork_id"]] += 1
        expected = {"t00-new": 0.2, "t00-dark-warm": 0.8, "t00-bright-cool": 0.0}[slot["artwork_id"]]
        assert slot["artwork_probability"] == pytest.approx(expected)
    assert shown["t00-bright-cool"] == 0 and 30 <= shown["t00-new"] <= 90  # 60 expected
