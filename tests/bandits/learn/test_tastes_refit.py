"""Taste classes in the service: fitted by the learner on the log, kept, sent with a placed viewer's ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bandits.learn import tastes as refits
from bandits.log.responses import viewer_responses
from bandits.model import tastes
from bandits.storage import connect
from service import create_app
from tests.helpers import add_catalog, deployment

BACKENDS = ("sqlite", "postgresql")
SETTINGS = {
    "LEARNER": False,
    "EPSILON": 1.0,  # every artwork drawn uniformly: both kinds are shown both looks
    "TASTE_CLASSES": 2,
    "TASTE_MIN_IMPRESSIONS": 9,
    "TASTE_REFIT_EVENTS": 50,
    "TASTE_REFIT_SECONDS": 0.0,
}
LIKED = {"dark": "dark-warm", "bright": "bright-cool"}  # each kind answers one look, always, and nothing else


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Flask:
    return create_app({"DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url, **SETTINGS})


def show(client: FlaskClient, viewer: str, kind: str | None, *, rows: int) -> list[str]:
    """Rank ``rows`` rows of 3 for the viewer, answering every slot in the kind's look; return the event ids."""
    events = []
    for _ in range(rows):
        answer = client.post("/v1/rank", json={"user": {"id": viewer, "features": {"device": "tv"}}, "slots": 3})
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        events.append(body["event_id"])
        for slot in body["slots"]:
            if kind is not None and slot["artwork_id"].endswith(LIKED[kind]):
                reward = {"title_id": slot["title_id"], "type": "click"}
                assert client.post(f"/v1/events/{body['event_id']}/reward", json=reward).status_code == 201
    return events


def shared_line(event_id: str, db: Any) -> str:
    """Return the title decision's shared line as the log kept it."""
    return str(db.execute("SELECT title_shared FROM events WHERE id = ?", [event_id]).fetchone()[0])


def test_the_learner_places_viewers_by_what_they_answered_and_their_ranks_carry_it(
    app: Flask, client: FlaskClient, db: Any
) -> None:
    add_catalog(client, titles=6)
    kinds = {f"v{n:02d}": ("dark" if n % 2 else "bright") for n in range(20)}
    for viewer, kind in kinds.items():
        show(client, viewer, kind, rows=4)  # 12 impressions each: placed
    show(client, "newcomer", "dark", rows=2)  # 6 impressions: not yet placed
    config = deployment(app)
    assert refits.due(db, config)
    done = refits.refit_if_due(db, config)
    assert done is not None and done.viewers == 21 and done.placed == 20 and done.impressions == 21 * 4 * 3 - 6
    assert not refits.due(db, config)  # no decision since

    placed = {viewer: tastes.of_viewer(db, viewer) for viewer in kinds}
    top = {viewer: max(found, key=found.__getitem__) for viewer, found in placed.items()}
    for kind in LIKED:
        members = {top[v] for v, k in kinds.items() if k == kind}
        assert len(members) == 1, f"the {kind} viewers were split over classes {members}"
    assert top["v00"] != top["v01"]  # the two kinds are two classes
    assert tastes.of_viewer(db, "newcomer") == {}

    # A placed viewer's rank carries their classes in the logged shared line; the newcomer's does not.
    (event,) = show(client, "v01", None, rows=1)
    line = shared_line(event, db)
    assert f" {top['v01']}:" in line.split("|K", 1)[1]
    (event,) = show(client, "newcomer", None, rows=1)
    assert "|K" not in shared_line(event, db)

    kept = tastes.fits(db)
    assert [fit["fit"] for fit in kept] == [done.fit] and kept[0]["viewers_placed"] == 20


def test_a_refit_starts_from_the_last_and_keeps_the_classes(app: Flask, client: FlaskClient, db: Any) -> None:
    add_catalog(client, titles=6)
    kinds = {f"v{n:02d}": ("dark" if n % 2 else "bright") for n in range(20)}
    for viewer, kind in kinds.items():
        show(client, viewer, kind, rows=4)
    config = deployment(app)
    first = refits.refit(db, config)
    before = {v: tastes.of_viewer(db, v) for v in kinds}
    for viewer, kind in list(kinds.items())[:14]:
        show(client, viewer, kind, rows=4)
    assert refits.due(db, config)
    second = refits.refit(db, config)
    assert first is not None and second is not None and second.fit > first.fit
    after = {v: tastes.of_viewer(db, v) for v in kinds}
    for viewer in kinds:
        assert max(before[viewer], key=before[viewer].__getitem__) == max(after[viewer], key=after[viewer].__getitem__)
    assert db.execute("SELECT COUNT(DISTINCT fit) FROM viewer_tastes").fetchone()[0] == 1  # the old fit's rows went


def test_only_answers_count_and_unshown_or_anonymous_decisions_are_left_out(client: FlaskClient, db: Any) -> None:
    add_catalog(client, titles=4)
    answered = client.post("/v1/rank", json={"user": {"id": "a", "features": {}}, "slots": 2}).get_json()
    first = answered["slots"][0]
    zero = answered["slots"][1]
    client.post(f"/v1/events/{answered['event_id']}/reward", json={"title_id": first["title_id"], "value": 1})
    client.post(f"/v1/events/{answered['event_id']}/reward", json={"title_id": zero["title_id"], "value": 0})
    client.post("/v1/rank", json={"user": {"features": {}}, "slots": 2})  # no viewer id
    client.post("/v1/rank", json={"user": {"id": "b", "features": {}}, "slots": 2, "defer_activation": True})
    rows = sorted(viewer_responses(db, after=0, through=10))
    assert rows == sorted([("a", first["artwork_id"], True), ("a", zero["artwork_id"], False)])


def test_with_taste_classes_off_nothing_is_fitted_or_sent(tmp_path: Path, database_url: str) -> None:
    app = create_app({"DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url, **SETTINGS, "TASTE_CLASSES": 0})
    client = app.test_client()
    add_catalog(client, titles=4)
    for n in range(30):
        show(client, f"v{n}", "dark", rows=2)
    db = connect(app.config["DATABASE"])
    try:
        assert not refits.due(db, deployment(app))
        assert db.execute("SELECT COUNT(*) FROM taste_fits").fetchone()[0] == 0
    finally:
        db.close()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("TASTE_CLASSES", 65, "TASTE_CLASSES must be an integer in [0, 64]"),
        ("TASTE_CLASSES", -1, "TASTE_CLASSES must be an integer in [0, 64]"),
        ("TASTE_MIN_IMPRESSIONS", 0, "TASTE_MIN_IMPRESSIONS must be an integer >= 1"),
        ("TASTE_REFIT_EVENTS", 0, "TASTE_REFIT_EVENTS must be an integer >= 1"),
        ("TASTE_WINDOW_EVENTS", 0, "TASTE_WINDOW_EVENTS must be an integer >= 1"),
        ("TASTE_REFIT_SECONDS", -1.0, "TASTE_REFIT_SECONDS must be >= 0"),
    ],
)
def test_bad_settings_are_refused_by_name(tmp_path: Path, setting: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        create_app({"DATA_DIR": str(tmp_path / "data"), "LEARNER": False, setting: value})


def test_the_api_shows_the_fits_and_a_viewers_classes(app: Flask, client: FlaskClient, db: Any) -> None:
    add_catalog(client, titles=6)
    assert client.get("/v1/tastes").get_json() == {"classes": 2, "fits": []}
    for n in range(20):
        show(client, f"v{n:02d}", "dark" if n % 2 else "bright", rows=4)
    done = refits.refit(db, deployment(app))
    assert done is not None
    shown = client.get("/v1/tastes", query_string={"user_id": "v01"}).get_json()
    assert [fit["fit"] for fit in shown["fits"]] == [done.fit] and shown["fits"][0]["viewers_placed"] == 20
    assert shown["viewer"] == {"user_id": "v01", "classes": tastes.of_viewer(db, "v01")} and shown["viewer"]["classes"]
    assert client.get("/v1/tastes", query_string={"user_id": "nobody"}).get_json()["viewer"]["classes"] == {}
    refused = client.get("/v1/tastes", query_string={"user_id": "x" * 129})
    assert refused.status_code == 422 and "user_id" in refused.get_json()["error"]["message"]
