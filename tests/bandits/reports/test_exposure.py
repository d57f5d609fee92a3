"""Exposure fairness: the report's shares, Gini and new-title follow-up, and the new-title floor."""

from __future__ import annotations

import io
import itertools
import random
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from assets.demo import poster
from bandits.model.diversity import Diversity
from bandits.model.exploration import Exploration
from bandits.reports.exposure import gini, position_weight
from service import create_app
from tests.helpers import table_counts

DAY = 86400.0


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=30))
def test_gini_is_the_mean_absolute_difference_over_twice_the_mean(values):
    n, total = len(values), sum(values)
    expected = sum(abs(a - b) for a, b in itertools.product(values, values)) / (2 * n * total) if total else 0.0
    assert gini([float(v) for v in values]) == pytest.approx(expected)


def test_gini_extremes():
    assert gini([5.0] * 8) == 0.0
    assert gini([0.0] * 7 + [10.0]) == pytest.approx(7 / 8)
    assert gini([]) == 0.0


POSTER_RNG = random.Random(3)  # one stream for the whole module, as the posters were drawn before


def _add(client, title_id, genres, features=None, artworks=1, rng=POSTER_RNG):
    response = client.post(
        "/v1/titles", json={"id": title_id, "name": title_id, "genres": genres, "features": features or {}}
    )
    assert response.status_code == 201, response.get_json()
    for index in range(artworks):
        data = poster(palette="neutral", composition="text", title=title_id, rng=rng)
        response = client.post(
            f"/v1/titles/{title_id}/artworks",
            content_type="multipart/form-data",
            data={"file": (io.BytesIO(data), "p.jpg"), "id": f"{title_id}-a{index}"},
        )
        assert response.status_code == 201


def _backdate(db, days, *, titles=None):
    """Make titles (all, or those given) and their artworks look ``days`` old; the snapshot reloads."""
    when = time.time() - days * DAY
    where, params = ("", []) if titles is None else (f" WHERE id IN ({','.join('?' * len(titles))})", list(titles))
    db.execute(f"UPDATE titles SET created_at = ?{where}", [when, *params])
    art_where = "" if titles is None else f" WHERE title_id IN ({','.join('?' * len(titles))})"
    db.execute(f"UPDATE artworks SET created_at = ?{art_where}", [when, *params])
    db.execute("UPDATE meta SET value = value + 1 WHERE key = 'catalog_version'")


def test_report_shares_by_genre_and_feature(client, db):
    _add(client, "c1", ["comedy"], {"studio": "north"})
    _add(client, "c2", ["comedy"], {"studio": "north"})
    _add(client, "cd", ["comedy", "drama"], {"studio": "south"})
    _add(client, "d1", ["drama"])
    _add(client, "x1", ["documentary"], {"studio": "south"})
    _backdate(db, 30)
    for _ in range(10):
        assert client.post("/v1/rank", json={"slots": 2, "candidates": ["c1", "c2"]}).status_code == 200
    for _ in range(4):
        assert client.post("/v1/rank", json={"slots": 1, "candidates": ["cd"]}).status_code == 200
    report = client.get("/v1/reports/exposure?by=genre,features.studio").get_json()
    assert report["impressions"] == 24 and report["active_titles"] == 5 and report["titles_shown"] == 3
    genre = {row["value"]: row for row in report["by"]["genre"]}
    # cd counts half comedy, half drama: 2.5 comedy titles, 1.5 drama, 1 documentary out of 5.
    assert genre["comedy"]["catalog_share"] == pytest.approx(2.5 / 5)
    assert genre["drama"]["catalog_share"] == pytest.approx(1.5 / 5)
    assert genre["comedy"]["impression_share"] == pytest.approx(22 / 24)
    assert genre["drama"]["impression_share"] == pytest.approx(2 / 24)
    assert genre["documentary"]["impressions"] == 0 and genre["documentary"]["exposure_ratio"] == 0.0
    two_slots = 1 + position_weight(1)
    total_exposure = 10 * two_slots + 4
    assert genre["comedy"]["exposure_share"] == pytest.approx((10 * two_slots + 2) / total_exposure)
    assert genre["comedy"]["exposure_ratio"] == pytest.approx(((10 * two_slots + 2) / total_exposure) / 0.5)
    studio = {row["value"]: row for row in report["by"]["features.studio"]}
    assert studio["north"]["impression_share"] == pytest.approx(20 / 24)
    assert studio["(none)"]["titles"] == 1 and studio["(none)"]["impressions"] == 0
    # Exposure over the five titles: 10, 10, 4, 0, 0 impressions.
    assert report["gini"]["impressions"] == pytest.approx(gini([10, 10, 4, 0, 0]))
    assert report["most_shown"][0]["impressions"] == 10 and report["most_shown"][2] == {
        "title_id": "cd",
        "impressions": 4,
        "impression_share": pytest.approx(4 / 24),
    }
    assert report["new_titles"] == [] and report["new_artworks"] == []


def test_report_window_excludes_older_events(client, db):
    _add(client, "c1", ["comedy"])
    _add(client, "c2", ["comedy"])
    for _ in range(3):
        client.post("/v1/rank", json={"slots": 1, "candidates": ["c1"]})
    db.execute("UPDATE events SET created_at = created_at - ?", [3 * DAY])
    client.post("/v1/rank", json={"slots": 1, "candidates": ["c2"]})
    assert client.get("/v1/reports/exposure?days=1").get_json()["impressions"] == 1
    assert client.get("/v1/reports/exposure?days=7").get_json()["impressions"] == 4


def test_new_titles_and_artworks_are_followed_over_their_first_days(client, db):
    for index in range(4):
        _add(client, f"o{index}", ["drama"], artworks=2)
    _backdate(db, 30)
    _add(client, "n1", ["drama"])
    _add(client, "o0-extra-title", ["drama"])
    _backdate(db, 30, titles=["o0-extra-title"])
    data = poster(palette="bright-cool", composition="face", title="o0", rng=random.Random(1))
    assert (
        client.post(
            "/v1/titles/o0/artworks",
            content_type="multipart/form-data",
            data={"file": (io.BytesIO(data), "p.jpg"), "id": "o0-new"},
        ).status_code
        == 201
    )
    for _ in range(40):
        assert client.post("/v1/rank", json={"slots": 3}).status_code == 200
    report = client.get("/v1/reports/exposure?new_days=3").get_json()
    [new_title] = report["new_titles"]
    events = [client.get(f"/v1/events/{row}").get_json() for row in [r[0] for r in db.execute("SELECT id FROM events")]]
    shown = Counter(slot["title_id"] for event in events for slot in event["slots"])
    assert new_title["title_id"] == "n1" and new_title["impressions"] == shown["n1"]
    assert new_title["impression_share"] == pytest.approx(shown["n1"] / 120)
    assert new_title["equal_share"] == pytest.approx(1 / 6)
    arts = {row["artwork_id"]: row for row in report["new_artworks"]}
    assert set(arts) == {"o0-new", "n1-a0"}  # the new title's only artwork is new too, at its equal share
    assert arts["n1-a0"]["share_of_title"] == 1.0 and arts["n1-a0"]["ratio_to_equal"] == 1.0
    new_art = arts["o0-new"]
    art_shown = sum(1 for event in events for slot in event["slots"] if slot["artwork_id"] == "o0-new")
    assert new_art["artwork_id"] == "o0-new" and new_art["impressions"] == art_shown
    assert new_art["title_impressions"] == shown["o0"] and new_art["equal_share"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "query, message",
    [
        ("by=colour", "by: 'colour'"),
        ("days=0", "days"),
        ("days=week", "days: must be a number"),
        ("new_days=1000", "new_days"),
        ("by=,", "by:"),
        ("by=features.", "features."),
    ],
)
def test_bad_report_parameters_are_a_422(client, db, query, message):
    before = table_counts(db)
    response = client.get(f"/v1/reports/exposure?{query}")
    assert response.status_code == 422 and message in response.get_json()["error"]["message"]
    assert table_counts(db) == before


# ---------------------------------------------------------------- the new-title floor


@pytest.mark.parametrize(
    "exploration",
    [Exploration(epsilon=0.2), Exploration(rule="squarecb", gamma=5.0)],
    ids=["epsilon-greedy", "squarecb"],
)
def test_title_trial_keeps_row_probabilities_exact(exploration):
    genres = [("comedy",), ("comedy",), ("drama",), ("drama",), ("horror",)]
    costs = [-0.9, -0.7, -0.5, 0.0, 0.2]
    rng = np.random.default_rng(21)
    n = 40_000
    rows = [
        exploration.row(
            costs, 3, rng, allowed=Diversity(max_per_genre=1).restriction(genres, 3), trial=[3, 4], trial_share=0.3
        )
        for _ in range(n)
    ]
    counts = Counter(tuple(p.index for p in row) for row in rows)
    logged = {tuple(p.index for p in row): float(np.prod([p.probability for p in row])) for row in rows}
    assert sum(logged.values()) == pytest.approx(1.0)
    for key, probability in logged.items():
        assert counts[key] / n == pytest.approx(probability, abs=4 * np.sqrt(probability / n) + 1e-4)


def test_a_new_title_gets_its_floor_share_of_first_slots(tmp_path):
    app = create_app(
        {
            "DATA_DIR": str(tmp_path / "data"),
            "LEARNER": False,
            "EPSILON": 0.0,
            "TITLE_TRIAL_SHARE": 0.5,
            "TITLE_TRIAL_HOURS": 24.0,
        }
    )
    client = app.test_client()
    from bandits.storage import connect

    db = connect(app.config["DATABASE"])
    for index in range(5):
        _add(client, f"o{index}", ["drama"])
    _backdate(db, 2)
    _add(client, "fresh", ["drama"])
    firsts = Counter()
    for _ in range(600):
        body = client.post("/v1/rank", json={"slots": 2}).get_json()
        first = body["slots"][0]
        firsts[first["title_id"]] += 1
        # An untrained model ties every title: 1/6 each, plus half the draws go to the only new title.
        expected = 0.5 / 6 + 0.5 if first["title_id"] == "fresh" else 0.5 / 6
        assert first["title_probability"] == pytest.approx(expected)
    assert firsts["fresh"] / 600 == pytest.approx(0.5 / 6 + 0.5, abs=0.06)
    db.close()
