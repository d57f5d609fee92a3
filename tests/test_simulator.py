"""The simulated audience: deterministic for a seed, its oracle unbeatable, clickbait and drift where they should be."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from bandits import simulator
from service import create_app
from service.simulate import FlaskTransport, catalog_from_service
from tests.helpers import add_catalog

STYLES = (("dark-warm", "face"), ("bright-cool", "ensemble"), ("neutral", "text"), ("bright-warm", "landscape"))
GENRES = ("thriller", "animation", "drama", "comedy", "action", "documentary")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Twelve titles with four real posters each, their visual features measured by the service."""
    root: Path = tmp_path_factory.mktemp("simulator")
    app = create_app({"DATA_DIR": str(root), "LEARNER": False})
    client = app.test_client()
    add_catalog(client, titles=12, styles=STYLES)
    for index in range(12):  # spread the genres, so segments differ
        title = client.get(f"/v1/titles/t{index:02d}").get_json()
        client.put(f"/v1/titles/t{index:02d}", json={"name": title["name"], "genres": [GENRES[index % len(GENRES)]]})
    return catalog_from_service(FlaskTransport(client))


def test_the_catalog_is_read_with_its_measured_looks(catalog):
    assert len(catalog) == 12 and all(len(title["artworks"]) == 4 for title in catalog)
    looks = {a["id"].split("-", 1)[1]: a["visual"] for a in catalog[0]["artworks"]}
    assert looks["dark-warm"]["brightness"] < 0.35 < looks["bright-cool"]["brightness"]
    assert looks["dark-warm"]["warmth"] > looks["bright-cool"]["warmth"]


def test_a_seed_gives_the_same_world_and_the_same_outcomes(catalog):
    def run(seed: int) -> list:
        world = simulator.World.build(catalog, seed=seed, late_share=0.25, late_artwork_share=0.3, impressions=1000)
        rng = np.random.default_rng(seed)
        seen = []
        for at in range(200):
            viewer = world.draw_viewer(rng)
            row = world.oracle(viewer, slots=3, at=at)
            seen.append((viewer.id, world.respond(viewer, row, rng, at=at)))
        return [world.titles, world.viewers, seen]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_no_row_found_by_search_beats_the_oracle(catalog):
    world = simulator.World.build(catalog, seed=5)
    rng = np.random.default_rng(0)
    titles = list(world.titles)
    for viewer in world.viewers[:12]:
        for reward in simulator.REWARDS:
            best = world.row_value(viewer, world.oracle(viewer, slots=4, reward=reward), reward=reward)
            for _ in range(300):  # random rows: titles, order and artworks
                picks = rng.choice(len(titles), size=4, replace=False)
                row = [(titles[i], world.titles[titles[i]].artworks[int(rng.integers(4))].id) for i in picks]
                assert world.row_value(viewer, row, reward=reward) <= best + 1e-12
    # Exhaustively on a small pool: every ordered pick of two titles among four, with every artwork.
    viewer = world.viewers[0]
    pool = titles[:4]
    best = world.row_value(viewer, world.oracle(viewer, slots=2, candidates=pool))
    everything = max(
        world.row_value(viewer, [(a, art_a), (b, art_b)])
        for a, b in itertools.permutations(pool, 2)
        for art_a in (x.id for x in world.titles[a].artworks) for art_b in (x.id for x in world.titles[b].artworks))
    assert best == pytest.approx(everything)


def test_tastes_differ_by_segment_and_clickbait_wins_clicks_not_plays(catalog):
    world = simulator.World.build(catalog, seed=5)
    by_segment = {v.segment: v for v in world.viewers}
    night, family, casual = by_segment["night-owl"], by_segment["family"], by_segment["casual"]
    titles = list(world.titles)
    style = {t: {world.best_artwork(v, t).split("-", 1)[1] for v in (night,)} for t in titles}
    assert all(style[t] == {"dark-warm"} for t in titles)  # night owls: dark and warm posters
    assert all(world.best_artwork(family, t).split("-", 1)[1].startswith("bright") for t in titles)
    # Casual viewers click the loudest poster, and play something else.
    differ = [t for t in titles if world.best_artwork(casual, t, reward="click") != world.best_artwork(casual, t, reward="play")]
    assert len(differ) == len(titles)
    loudest = {t: max(world.titles[t].artworks, key=lambda a: a.bait).id for t in titles}
    assert all(world.best_artwork(casual, t, reward="click") == loudest[t] for t in titles)
    # Position bias: the same title and artwork lower in the row draws fewer clicks.
    t, a = titles[0], world.titles[titles[0]].artworks[0].id
    assert world.click_probability(night, t, a, position=3) == pytest.approx(
        simulator.POSITION_DECAY ** 3 * world.click_probability(night, t, a, position=0))


def test_tastes_drift_and_titles_arrive(catalog):
    world = simulator.World.build(catalog, seed=5, late_share=0.3, impressions=10_000, drift_impressions=50_000)
    night = next(v for v in world.viewers if v.segment == "night-owl")
    titles = list(world.titles)
    before = {t: world.best_artwork(night, t, at=0) for t in titles}
    after = {t: world.best_artwork(night, t, at=50_000) for t in titles}
    assert world.look_taste(world.segments["night-owl"], 25_000) == pytest.approx(
        {"brightness": -2.75, "warmth": -0.5, "contrast": 1.0})
    assert before != after  # dark and warm gave way to cool and contrasty
    late = [t for t in titles if world.titles[t].arrives_at > 0]
    assert late and all(t not in world.available(0) for t in late)
    assert all(t in world.available(10_000) for t in titles)
    assert not set(late) & {t for t, _ in world.oracle(night, slots=12, at=0)}


def test_artworks_arrive_and_the_oracle_waits_for_them(catalog):
    world = simulator.World.build(catalog, seed=6, late_artwork_share=0.5, impressions=10_000)
    late = [(t.id, a.id) for t in world.titles.values() for a in t.artworks if a.arrives_at > 0]
    assert late and all(world.titles[t].artworks[0].arrives_at == 0 for t in world.titles)  # the first is always there
    for title_id, artwork_id in late:
        assert artwork_id not in {a.id for a in world.artworks(title_id, 0)}
        assert artwork_id in {a.id for a in world.artworks(title_id, 10_000)}
    for viewer in world.viewers[:50]:
        row = world.oracle(viewer, slots=12, at=0)
        assert not set(row) & set(late)
        assert all(artwork_id == world.best_artwork(viewer, title_id, at=0) for title_id, artwork_id in row)
    # Once they arrive, some of them are some viewer's best artwork.
    assert any(world.best_artwork(v, t, at=10_000) == a for v in world.viewers[:200] for t, a in late)


def test_viewers_are_known_by_their_signals_not_their_segment(catalog):
    world = simulator.World.build(catalog, seed=2)
    assert all("segment" not in v.features for v in world.viewers)
    assert all({"device", "hour", "daypart", "history_genres", "top_rated_genres", "recent_searches"} <= set(v.features)
               for v in world.viewers)
    # Each viewer's taste is the segment's plus a personal deviation: two night owls differ.
    owls = [v for v in world.viewers if v.segment == "night-owl"]
    assert owls[0].genre_taste != owls[1].genre_taste
    deviations = [v.genre_taste["thriller"] - world.segments["night-owl"].genre_taste["thriller"] for v in owls]
    assert abs(float(np.mean(deviations))) < 0.15 and 0.45 < float(np.std(deviations)) < 0.75
    # The signals carry the tastes: the history leans to the viewer's favourite genres...
    family = [v for v in world.viewers if v.segment == "family"]
    share = np.mean([("animation" in v.features["history_genres"]) for v in family])
    assert share > 0.6 > np.mean([("animation" in v.features["history_genres"]) for v in owls])
    # ... and the hours to the segment's.
    assert {v.features["daypart"] for v in owls} == {"night"}
    revealed = simulator.World.build(catalog, seed=2, reveal_segment=True)
    assert all(v.features["segment"] == v.segment for v in revealed.viewers)
