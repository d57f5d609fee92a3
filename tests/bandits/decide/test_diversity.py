"""Row diversity: genre caps and minimums hold, and logged propensities stay exact under them."""

from __future__ import annotations

import io
import json
import random
from collections import Counter

import numpy as np
import pytest

from assets.demo import poster
from bandits.evaluate.offline import from_log
from bandits.learn.learner import title_decisions
from bandits.model.diversity import Diversity, DiversityError
from bandits.model.exploration import Exploration
from bandits.storage import connect
from tests.helpers import table_counts

# Six candidates: three comedies (one also a drama), two dramas, one documentary.
GENRES = [("comedy",), ("comedy",), ("comedy", "drama"), ("drama",), ("drama",), ("documentary",)]


def _rows(exploration: Exploration, costs: list[float], diversity: Diversity, slots: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    rows, reports = [], []
    for _ in range(n):
        restriction = diversity.restriction(GENRES, slots)
        rows.append(exploration.row(costs, slots, rng, allowed=restriction))
        reports.append(restriction.report([pick.index for pick in rows[-1]]))
    return rows, reports


def _genre_counts(indices):
    return Counter(genre for index in indices for genre in GENRES[index])


def test_cap_keeps_every_genre_at_most_n():
    restriction = Diversity(max_per_genre=1).restriction(GENRES, 3)
    # Comedy placed: every other comedy (the comedy-drama too) is out of the offer.
    assert restriction([0], [1, 2, 3, 4, 5]) == [3, 4, 5]
    # Comedy and drama placed: only the documentary is left to offer.
    assert restriction([0, 3], [1, 2, 4, 5]) == [5]
    assert restriction.unmet == set()


def test_minimum_genres_forces_new_genres_only_when_it_must():
    restriction = Diversity(min_genres=3).restriction(GENRES, 3)
    assert restriction([], [0, 1, 2, 3, 4, 5]) == [0, 1, 2, 3, 4, 5]  # three slots for three genres: any start
    # One comedy placed, two slots for two missing genres: only titles that add a genre.
    assert restriction([0], [1, 2, 3, 4, 5]) == [2, 3, 4, 5]
    assert restriction([0, 3], [1, 2, 4, 5]) == [5]


def test_unsatisfiable_parts_are_dropped_and_reported():
    restriction = Diversity(max_per_genre=1, min_genres=4).restriction(GENRES, 4)
    picks = [0, 3, 5]  # comedy, drama, documentary: every genre is at its cap
    assert restriction(picks, [1, 2, 4]) == [1, 2, 4]
    report = restriction.report([*picks, 1])
    assert report["met"] is False and report["unmet"] == ["max_per_genre", "min_genres"]
    assert report["genres_in_row"] == 3


def test_settings_are_checked():
    assert not Diversity().active and Diversity(max_per_genre=2).active
    with pytest.raises(DiversityError, match="max_per_genre"):
        Diversity.of(-1, 0)
    with pytest.raises(DiversityError, match="min_genres"):
        Diversity.of(0, True)
    with pytest.raises(DiversityError, match="diversity.colour"):
        Diversity().override({"colour": 1})
    assert Diversity(max_per_genre=2, min_genres=3).override({"min_genres": 0}) == Diversity(max_per_genre=2)


@pytest.mark.parametrize(
    "exploration",
    [Exploration(epsilon=0.3), Exploration(rule="squarecb", gamma=3.0)],
    ids=["epsilon-greedy", "squarecb"],
)
@pytest.mark.parametrize(
    "diversity", [Diversity(max_per_genre=1), Diversity(max_per_genre=2, min_genres=3)], ids=["cap", "cap-and-minimum"]
)
def test_logged_probabilities_are_the_true_row_probabilities(exploration, diversity):
    # The comedies look best, so without the constraint the row would be all comedy.
    costs = [-0.9, -0.8, -0.7, -0.2, 0.1, 0.3]
    n = 40_000
    rows, reports = _rows(exploration, costs, diversity, 3, n, seed=11)
    counts = Counter(tuple(p.index for p in row) for row in rows)
    logged = {tuple(p.index for p in row): float(np.prod([p.probability for p in row])) for row in rows}
    # Every row that can occur was seen, and the logged probabilities of those rows sum to one.
    assert sum(logged.values()) == pytest.approx(1.0)
    for key, probability in logged.items():
        assert counts[key] / n == pytest.approx(probability, abs=4 * np.sqrt(probability / n) + 1e-4)
    for row, report in zip(rows[:5000], reports):
        indices = [p.index for p in row]
        counts_by_genre = _genre_counts(indices)
        # A row only breaks the constraint where the catalog left no choice, and then says so.
        assert (max(counts_by_genre.values()) <= diversity.max_per_genre) == ("max_per_genre" not in report["unmet"])
        assert (len(counts_by_genre) >= diversity.min_genres) == ("min_genres" not in report["unmet"])
        if indices[0] == 2 and diversity.max_per_genre == 1:  # comedy-drama first: only the documentary is left
            assert indices[1] == 5 and report["unmet"] == ["max_per_genre"]
        for pick in row:
            if pick.offered is not None:
                assert pick.index in pick.offered


def test_unconstrained_rows_log_no_offered_set():
    rows, _ = _rows(Exploration(epsilon=0.3), [0.0] * 6, Diversity(max_per_genre=3), 2, 200, seed=2)
    assert all(pick.offered is None for row in rows for pick in row)


# ---------------------------------------------------------------- over HTTP, through the log


def _mixed_catalog(client) -> list[str]:
    rng = random.Random(4)
    ids = []
    for index, genres in enumerate([["comedy"]] * 5 + [["drama"]] * 3 + [["documentary"]] * 2 + [["horror"]]):
        title_id = f"m{index:02d}"
        assert (
            client.post("/v1/titles", json={"id": title_id, "name": f"Mixed {index}", "genres": genres}).status_code
            == 201
        )
        data = poster(palette="neutral", composition="text", title=title_id, rng=rng)
        response = client.post(
            f"/v1/titles/{title_id}/artworks",
            data={"file": (io.BytesIO(data), "p.jpg")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 201
        ids.append(title_id)
    return ids


def _genres_of(client, title_ids):
    return [client.get(f"/v1/titles/{tid}").get_json()["genres"][0] for tid in title_ids]


def test_request_diversity_caps_the_row_and_is_reported(client):
    _mixed_catalog(client)
    for _ in range(30):
        body = client.post("/v1/rank", json={"slots": 8, "diversity": {"max_per_genre": 2, "min_genres": 4}}).get_json()
        genres = Counter(_genres_of(client, [slot["title_id"] for slot in body["slots"]]))
        # 2 comedy + 2 drama + 2 documentary + 1 horror = 7: the eighth slot cannot honour the cap.
        assert body["diversity"]["met"] is False and body["diversity"]["unmet"] == ["max_per_genre"]
        assert len(genres) == 4
        assert sorted(genres.values())[:-1] == [1, 2, 2]
    body = client.post("/v1/rank", json={"slots": 4, "diversity": {"max_per_genre": 1}}).get_json()
    assert body["diversity"] == {"max_per_genre": 1, "min_genres": 0, "genres_in_row": 4, "met": True, "unmet": []}
    assert len(set(_genres_of(client, [slot["title_id"] for slot in body["slots"]]))) == 4


def test_policy_setting_applies_and_a_request_can_turn_it_off(client):
    _mixed_catalog(client)
    response = client.put("/v1/policies/titles", json={"max_per_genre": 1})
    assert response.status_code == 200 and response.get_json()["settings"]["max_per_genre"] == 1
    body = client.post("/v1/rank", json={"slots": 4}).get_json()
    assert body["diversity"]["max_per_genre"] == 1 and body["diversity"]["met"]
    assert len(set(_genres_of(client, [slot["title_id"] for slot in body["slots"]]))) == 4
    body = client.post("/v1/rank", json={"slots": 4, "diversity": {"max_per_genre": 0}}).get_json()
    assert "diversity" not in body


def test_restricted_slots_are_logged_and_replayed_against_their_offer(app, client, db):
    titles = _mixed_catalog(client)
    body = client.post("/v1/rank", json={"slots": 4, "diversity": {"max_per_genre": 1}}).get_json()
    event = client.get(f"/v1/events/{body['event_id']}").get_json()
    genres = dict(zip(titles, _genres_of(client, titles)))
    placed: list[str] = []
    for slot in event["slots"]:
        offered = slot.get("offered_title_ids")
        left = [t for t in titles if t not in placed]
        allowed = [t for t in left if genres[t] not in {genres[p] for p in placed}]
        if allowed == left:  # nothing capped yet (the first slot, or only the one horror title placed)
            assert offered is None
        else:
            assert offered == allowed and slot["title_id"] in offered
        placed.append(slot["title_id"])
    # The learner's examples and the offline rounds offer each slot exactly what the rank offered.
    stored = db.execute("SELECT * FROM events WHERE id = ?", [body["event_id"]]).fetchone()
    columns = [d[0] for d in db.execute("SELECT * FROM events LIMIT 0").description]
    event_row = dict(zip(columns, stored))
    impressions = [
        dict(zip([d[0] for d in db.execute("SELECT * FROM impressions LIMIT 0").description], row))
        for row in db.execute("SELECT * FROM impressions WHERE event_seq = ? ORDER BY position", [event_row["seq"]])
    ]
    from bandits.vw import blocks

    lines_of = blocks.load(db, {event_row["title_block"]})
    examples = [decision.example() for decision in title_decisions(event_row, impressions, [0.0] * 4, lines_of)]
    for example, slot in zip(examples, event["slots"]):
        assert len(example) - 1 == len(slot.get("offered_title_ids") or titles[: len(titles) - slot["position"]])
    db.execute(
        "UPDATE pending SET closed_at = ?, labels = ? WHERE event_seq = ?",
        [1.0, json.dumps({"aggregation": "earliest", "default_reward": 0.0}), event_row["seq"]],
    )
    rounds = from_log(db, policy="titles", aggregation="earliest", default_reward=0.0)
    for i, slot in enumerate(event["slots"]):
        ids = rounds.action_ids[int(rounds.offsets[i]) : int(rounds.offsets[i + 1])]
        assert ids == (slot.get("offered_title_ids") or [t for t in titles if t not in placed[: slot["position"]]])
        assert ids[int(rounds.chosen[i])] == slot["title_id"]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"diversity": {"max_per_genre": -1}}, "diversity.max_per_genre"),
        ({"diversity": {"min_genres": "three"}}, "diversity.min_genres"),
        ({"diversity": {"max_per_genre": 101}}, "diversity.max_per_genre"),
        ({"diversity": {"genre_cap": 2}}, "diversity.genre_cap"),
        ({"diversity": [2, 3]}, "diversity"),
    ],
)
def test_bad_request_diversity_is_a_422_naming_it(client, db, body, message):
    _mixed_catalog(client)
    before = table_counts(db)
    response = client.post("/v1/rank", json={"slots": 3, **body})
    assert response.status_code == 422 and message in response.get_json()["error"]["message"]
    assert table_counts(db) == before


@pytest.mark.parametrize(
    "policy, body, message",
    [
        ("artwork", {"max_per_genre": 2}, "titles policy only"),
        ("titles", {"max_per_genre": 1.5}, "max_per_genre"),
        ("titles", {"min_genres": -2}, "min_genres"),
    ],
)
def test_bad_policy_diversity_is_a_422(client, db, policy, body, message):
    before = table_counts(db)
    response = client.put(f"/v1/policies/{policy}", json=body)
    assert response.status_code == 422 and message in response.get_json()["error"]["message"]
    assert table_counts(db) == before


def test_an_older_database_gains_the_offered_column(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = connect(path)
    db.execute("ALTER TABLE impressions DROP COLUMN offered")
    db.close()
    db = connect(path)
    assert "offered" in {row[1] for row in db.execute("PRAGMA table_info(impressions)")}
    db.close()
