"""The simulated audience: deterministic for a seed, its oracle unbeatable, clickbait and drift where they should be."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest

from assets.demo import COMPOSITIONS, PALETTES, poster
from assets.demo import GENRES as DEMO_GENRES
from assets.images import check_image
from bandits import simulator
from service import create_app
from service.simulate import FlaskTransport, catalog_from_service
from tests.helpers import add_catalog
from tests.worlds import GENRES, STYLES


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
        for art_a in (x.id for x in world.titles[a].artworks)
        for art_b in (x.id for x in world.titles[b].artworks)
    )
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
    differ = [
        t
        for t in titles
        if world.best_artwork(casual, t, reward="click") != world.best_artwork(casual, t, reward="play")
    ]
    assert len(differ) == len(titles)
    loudest = {t: max(world.titles[t].artworks, key=lambda a: a.bait).id for t in titles}
    assert all(world.best_artwork(casual, t, reward="click") == loudest[t] for t in titles)
    # Position bias: the same title and artwork lower in the row draws fewer clicks.
    t, a = titles[0], world.titles[titles[0]].artworks[0].id
    assert world.click_probability(night, t, a, position=3) == pytest.approx(
        simulator.POSITION_DECAY**3 * world.click_probability(night, t, a, position=0)
    )


def test_tastes_drift_and_titles_arrive(catalog):
    world = simulator.World.build(catalog, seed=5, late_share=0.3, impressions=10_000, drift_impressions=50_000)
    night = next(v for v in world.viewers if v.segment == "night-owl")
    titles = list(world.titles)
    before = {t: world.best_artwork(night, t, at=0) for t in titles}
    after = {t: world.best_artwork(night, t, at=50_000) for t in titles}
    assert world.look_taste(world.segments["night-owl"], 25_000) == pytest.approx(
        {"brightness": -2.75, "warmth": -0.5, "contrast": 1.0}
    )
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
    assert all(
        {"device", "hour", "daypart", "history_genres", "top_rated_genres", "recent_searches"} <= set(v.features)
        for v in world.viewers
    )
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


# ------------------------------------------------------------ shapes

# The default world of ``shape_catalog(looks, shape="audience")`` and seed 5, as the simulator drew it before shapes.
PINNED_APPEALS = [-1.305688333, -0.45565187, -2.21066815]  # titles t001, t002, t030
PINNED_SEGMENTS = ["cinephile", "night-owl", "night-owl", "family", "night-owl", "casual"]  # the first six viewers
PINNED_FEATURES = {
    "device": "web",
    "hour": 2,
    "daypart": "night",
    "history_genres": ["comedy", "documentary", "thriller"],
    "top_rated_genres": ["crime"],
    "recent_searches": ["thriller"],
}  # the eighth viewer's


@pytest.fixture(scope="module")
def style_looks() -> dict[tuple[str, str], dict]:
    """The visual features of one demo poster of each style (palette, composition), measured as uploads are."""
    rng = random.Random(0)
    return {
        (palette, composition): check_image(
            poster(palette=palette, composition=composition, title="Looks", rng=rng)
        ).visual
        for palette in PALETTES
        for composition in COMPOSITIONS
    }


def shape_catalog(looks: dict[tuple[str, str], dict], *, shape: str, seed: int = 1) -> list[dict]:
    """Return a catalog the size of the shape's demo catalog: demo genres, styles distinct per title, their looks.

    Measuring every poster of the demo catalogs would take seconds per shape; the looks of a style
    vary little from poster to poster.
    """
    spec = simulator.SHAPES[shape]
    rng = random.Random(seed)
    catalog = []
    for index in range(spec.titles):
        title_id = f"t{index + 1:03d}"
        styles = rng.sample(sorted(looks), k=spec.artworks_per_title or rng.randint(3, 6))
        catalog.append(
            {
                "id": title_id,
                "genres": rng.sample(DEMO_GENRES, k=rng.choice((1, 2, 2, 3))),
                "artworks": [{"id": f"{title_id}-a{n + 1}", "visual": looks[style]} for n, style in enumerate(styles)],
            }
        )
    return catalog


@pytest.mark.parametrize("shape", list(simulator.SHAPES))
def test_every_shape_builds_the_same_world_from_a_seed(style_looks, shape):
    catalog = shape_catalog(style_looks, shape=shape)
    spec = simulator.SHAPES[shape]
    world = simulator.World.build(catalog, seed=3, shape=shape)
    again = simulator.World.build(catalog, seed=3, shape=spec)  # by name or by the shape itself
    assert (world.titles, world.viewers) == (again.titles, again.viewers)
    other = simulator.World.build(catalog, seed=4, shape=shape)
    assert world.titles != other.titles and world.viewers != other.viewers
    assert world.shape == shape and len(world.viewers) == spec.viewers and len(world.titles) == spec.titles
    assert set(world.segments) == {s.name for s in spec.segments} == {v.segment for v in world.viewers}
    assert spec.description and "\n" not in spec.description


def test_the_default_world_is_the_audience_drawn_as_before_shapes(style_looks):
    catalog = shape_catalog(style_looks, shape="audience")
    world = simulator.World.build(catalog, seed=5)
    audience = simulator.World.build(catalog, seed=5, shape="audience")
    assert (world.titles, world.viewers) == (audience.titles, audience.viewers)
    # Draws pinned from the simulator before shapes existed: the same catalog and seed give the same world.
    assert [round(world.titles[t].appeal, 9) for t in ("t001", "t002", "t030")] == PINNED_APPEALS
    assert [v.segment for v in world.viewers[:6]] == PINNED_SEGMENTS
    assert world.viewers[7].features == PINNED_FEATURES
    # The keyword arguments of before keep working, and an unknown shape is refused.
    few = simulator.World.build(catalog, seed=5, segments=simulator.SEGMENTS[:2], viewers=50, drift_impressions=10)
    assert len(few.viewers) == 50 and set(few.segments) == {"night-owl", "family"} and few.drift_impressions == 10
    with pytest.raises(ValueError, match="shape: must be one of audience, artwork, long-tail, drift"):
        simulator.World.build(catalog, seed=5, shape="flat")


@pytest.mark.parametrize("shape", list(simulator.SHAPES))
def test_no_row_found_by_search_beats_the_oracle_in_any_shape(style_looks, shape):
    world = simulator.World.build(
        shape_catalog(style_looks, shape=shape),
        seed=7,
        shape=shape,
        late_share=0.1,
        late_artwork_share=0.2,
        impressions=20_000,
    )
    rng = np.random.default_rng(1)
    for at in (0, 40_000):
        titles = world.available(at)
        arms = [(t, a.id) for t in titles for a in world.artworks(t, at)]
        for viewer in world.viewers[:8]:
            for reward in simulator.REWARDS:
                oracle = world.oracle(viewer, slots=4, at=at, reward=reward)
                best = world.row_value(viewer, oracle, at=at, reward=reward)
                rows = []
                for _ in range(100):  # random rows
                    picks = rng.choice(len(titles), size=4, replace=False)
                    offered = [world.artworks(titles[i], at) for i in picks]
                    rows.append([(titles[i], o[int(rng.integers(len(o)))].id) for i, o in zip(picks, offered)])
                for slot in range(4):  # the oracle's row with one slot changed, or two slots swapped
                    rows += [
                        oracle[:slot] + [arm] + oracle[slot + 1 :]
                        for arm in arms
                        if arm[0] not in {t for t, _ in oracle[:slot] + oracle[slot + 1 :]}
                    ]
                    rows += [
                        [oracle[j] if k == slot else oracle[slot] if k == j else oracle[k] for k in range(4)]
                        for j in range(slot + 1, 4)
                    ]
                assert max(world.row_value(viewer, row, at=at, reward=reward) for row in rows) <= best + 1e-12


def test_the_long_tail_world_sends_raw_incomplete_requests_and_has_hits(style_looks):
    world = simulator.World.build(shape_catalog(style_looks, shape="long-tail"), seed=2, shape="long-tail")
    features = [v.features for v in world.viewers]
    assert len(features) == 5000
    assert all(type(f["hour"]) is int and 0 <= f["hour"] <= 23 and "daypart" not in f for f in features)
    minutes = np.array([f["watch_minutes"] for f in features if "watch_minutes" in f])
    assert minutes.dtype == float and 40 < np.median(minutes) < 90 and minutes.max() <= 900 and minutes.max() > 600
    assert all(type(f["app_build"]) is int and 1000 <= f["app_build"] <= 9999 for f in features)
    assert 700 < len({f["zip"] for f in features}) <= 800
    for name, share in (("history_genres", 0.3), ("recent_searches", 0.2), ("watch_minutes", 0.1)):
        assert abs(np.mean([name not in f for f in features]) - share) < 0.03, name
    # Minutes tell the segments apart; the zip does not.
    median = {
        s: np.median(
            [v.features["watch_minutes"] for v in world.viewers if v.segment == s and "watch_minutes" in v.features]
        )
        for s in world.segments
    }
    assert median["binger"] > 5 * median["light"]
    low = [v.segment for v in world.viewers if v.features["zip"] < "55000"]
    for segment in world.segments:
        assert (
            abs(
                low.count(segment) / len(low)
                - simulator.SHAPES["long-tail"].segments[list(world.segments).index(segment)].share
            )
            < 0.05
        )
    # A few hits: shown equally often, the top tenth of the titles draw a good part of the plays.
    plays = np.sort(
        [
            np.mean([world.expected_reward(v, t, world.titles[t].artworks[0].id) for v in world.viewers[:200]])
            for t in world.titles
        ]
    )[::-1]
    assert plays[:12].sum() / plays.sum() > 0.35


def test_the_drift_world_moves_each_segments_best_titles(style_looks):
    catalog = shape_catalog(style_looks, shape="drift")
    drift = simulator.World.build(catalog, seed=3, shape="drift")
    audience = simulator.World.build(catalog, seed=3)
    assert drift.viewers == audience.viewers  # the same viewers and signals: the histories go stale
    night = drift.segments["night-owl"]
    assert audience.genre_taste(audience.segments["night-owl"], 60_000) == dict(night.genre_taste)
    before, halfway, after = (drift.genre_taste(night, at) for at in (30_000, 40_000, 50_000))
    assert before == {**{genre: 0.0 for genre in night.genre_taste_later or {}}, **night.genre_taste}
    assert (before["thriller"], halfway["thriller"], after["thriller"]) == pytest.approx((1.2, 0.6, 0.0))
    assert (before["comedy"], halfway["comedy"], after["comedy"]) == pytest.approx((0.0, 0.6, 1.2))

    def kept(world: simulator.World, segment: str) -> float:
        """Return the share of a segment's viewers' four best titles at 30k that are still among them at 50k."""
        viewers = [v for v in world.viewers if v.segment == segment]
        return float(
            np.mean(
                [
                    len(
                        {t for t, _ in world.oracle(v, slots=4, at=30_000)}
                        & {t for t, _ in world.oracle(v, slots=4, at=50_000)}
                    )
                    / 4
                    for v in viewers
                ]
            )
        )

    for segment in ("night-owl", "family", "cinephile"):
        assert kept(drift, segment) < 0.6 < 0.75 < kept(audience, segment), segment


def test_artwork_matters_most_in_the_artwork_world(style_looks):
    def lift(shape: str) -> float:
        """Return the oracle's lift over its own titles, each in its first artwork."""
        world = simulator.World.build(shape_catalog(style_looks, shape=shape), seed=4, shape=shape)
        best = first = 0.0
        for viewer in world.viewers[:300]:
            row = world.oracle(viewer, slots=4)
            best += world.row_value(viewer, row)
            first += world.row_value(viewer, [(t, world.titles[t].artworks[0].id) for t, _ in row])
        return best / first - 1

    assert lift("artwork") > 1.5 * lift("audience")
    # Its segments are partly told by the request: most of a segment's viewers live in its two home regions.
    world = simulator.World.build(shape_catalog(style_looks, shape="artwork"), seed=4, shape="artwork")
    assert len({v.features["region"] for v in world.viewers}) == 12
    home = [v.features["region"] in world.segments[v.segment].regions for v in world.viewers]
    assert 0.75 < np.mean(home) < 0.85


# ------------------------------------------------------------ hypothetical viewers (bench.bayes_reference)


@pytest.mark.parametrize("shape", ["audience", "artwork", "long-tail", "drift"])
def test_a_viewer_told_as_a_hypothesis_has_the_viewers_values_and_oracle_row(style_looks, shape):
    world = simulator.World.build(shape_catalog(style_looks, shape=shape), seed=3, shape=shape)
    viewers = world.viewers[:5]
    segments = np.array([list(world.segments).index(v.segment) for v in viewers])
    tastes = np.array([[v.genre_taste[genre] for genre in world.genres] for v in viewers])
    at = 40_000  # past the drift world's genre drift and into the look drift
    click, play = world.hypothetical_values(segments, tastes, at=at)
    for n, viewer in enumerate(viewers):
        for title in list(world.titles.values())[:6]:
            for artwork in title.artworks:
                arm = world.arm_of(title.id, artwork.id)
                assert click[n, arm] == pytest.approx(world.click_probability(viewer, title.id, artwork.id, at=at))
                assert play[n, arm] == pytest.approx(world.play_probability(viewer, title.id, artwork.id, at=at))
        assert world.best_row(click[n] * play[n], slots=4, at=at) == world.oracle(viewer, slots=4, at=at)


@pytest.mark.parametrize("shape", ["audience", "artwork", "long-tail"])
def test_a_requests_likelihood_tells_a_viewers_segment_and_rules_out_what_could_not_send_it(style_looks, shape):
    world = simulator.World.build(shape_catalog(style_looks, shape=shape), seed=3, shape=shape)
    rng = np.random.default_rng(8)
    names = list(world.segments)
    hypotheses, tastes = world.draw_hypotheses(20_000, rng)
    shares = np.bincount(hypotheses, minlength=len(names)) / len(hypotheses)
    assert shares == pytest.approx(
        [s.share / sum(x.share for x in world.segments.values()) for s in world.segments.values()], abs=0.02
    )
    # Each hypothesis' tastes spread around its segment's as the world's viewers' do.
    first = world.segments[names[0]]
    deviation = tastes[hypotheses == 0] - [first.genre_taste.get(g, 0.0) for g in world.genres]
    assert float(np.std(deviation)) == pytest.approx(simulator.SHAPES[shape].taste_spread, rel=0.05)
    believed = []
    for viewer in world.viewers[:60]:
        log = world.request_log_likelihood(viewer.features, hypotheses, tastes, rng)
        weights = np.exp(log - log.max())
        believed.append(weights[hypotheses == names.index(viewer.segment)].sum() / weights.sum())
    # The request alone puts most of the belief on the viewer's own segment, far above the prior's share.
    assert float(np.mean(believed)) > 0.6 > float(shares.max())
    if shape == "audience":  # a night owl's hour rules the families out: their viewers keep hours 17 to 20
        owl = next(v for v in world.viewers if v.segment == "night-owl")
        log = world.request_log_likelihood(owl.features, hypotheses, tastes, rng)
        assert np.all(log[hypotheses == names.index("family")] == -np.inf)
        revealed = world.request_log_likelihood({"segment": "family"}, hypotheses, tastes, rng)
        assert np.all((revealed == 0) == (hypotheses == names.index("family")))
