"""A simulated audience: viewers in segments with tastes, a catalog's artworks, clicks, plays, drift, the oracle.

Every probability is known to the world, so the best row for a viewer (the oracle's) and the
expected value of any row are exact. A viewer of a segment looks at slot ``p`` of a row with
probability ``POSITION_DECAY ** p`` and, having looked, clicks a title with probability

    sigmoid(title appeal + viewer's genre taste + segment's taste for the artwork's look
            + bait pull * BAIT_PULL * the artwork's bait)

where the artwork's look is its stored visual features (brightness, warmth, saturation, contrast,
colorfulness, skin and text shares, as ``assets.images.visual_features`` measured them; a look an
artwork lacks counts as 0.5), the taste for it is a weight per unit above 0.5, and the artwork's
*bait* is its colorfulness. The viewer's genre taste for a title is the best of its genres (0 for
a title without genres). A click becomes a play with probability

    sigmoid(title quality + viewer's genre taste) * exp(-BAIT_LETDOWN * bait pull * bait)

so for a segment with a bait pull, loud artwork earns clicks that do not become plays: the click
odds grow like exp(2 * bait) and plays fall like exp(-4 * bait), so the loudest artwork is the best
for clicks and the quietest the best for plays. Tastes for looks drift: a segment's weights move in a
straight line from their start to a second set over ``drift_impressions`` impressions. A segment's
genre tastes may drift too (``Segment.genre_taste_later``), in a straight line over the impressions
of ``World.genre_drift``; a viewer keeps their personal deviation from the segment's tastes.
Titles and artworks may arrive late (``arrives_at``): before that they are not offered and the
oracle does not use them.

A viewer's genre taste is the segment's plus a personal deviation (normal, ``TASTE_SPREAD`` by
default), and what a rank request says about the viewer is what a catalog would know, not the
segment: the device, the hour they usually watch at and its part of the day (segments keep
different hours), the genres of their viewing history and of their highest-rated titles (drawn from
their own tastes), and a recent search (a genre word, from their tastes most of the time). These
signals are drawn once, when the world is made, from the tastes at that time: when genre tastes
drift, they go stale as real histories do. ``reveal_segment`` adds the segment itself, for tests
that want an audience a model can read directly, and ``reveal_tastes`` each genre taste at the start
(``taste_<genre>``, a number), for measuring what a learner makes of perfect knowledge of a viewer.

Shapes (``SHAPES``, the ``shape`` of ``World.build``) are the kinds of world the benchmarks run on;
each also names the demo catalog to build for it (titles, artworks per title):

* ``audience`` (the default): four segments the service is not told (night-owl, family, cinephile,
  casual), personal genre tastes, position bias, a clickbait segment (casual), look tastes drifting
  over 200,000 impressions; 1,000 viewers; a demo catalog of 30 titles with 3 to 6 artworks each.
* ``artwork``: where the artwork decides. 8 titles with 6 artworks each; 8 equal segments
  (``ARTWORK_SEGMENTS``) whose genre tastes are weak (0.3 at most, a personal spread of 0.3) and
  whose look tastes are strong and distinct (weights of 3 to 5 on two or three looks each; no
  drift, no clickbait). The segment is partly readable from the request: besides the hour and its
  part of the day (most segments keep hours of their own), a ``region`` (one of 12, ``r01`` to
  ``r12``; each segment draws 80 % of its viewers from its two home regions, the rest from the
  other ten) and a device mix of its own.
* ``long-tail``: many titles, few of them hits. 120 titles with 2 artworks each; a title's appeal
  is ``normal(-5.0, 0.3) + exponential(1.6)``, so that, every title shown as often, the top 10 % of
  titles draw about 45 % of the plays; 5,000 viewers, so a viewer id comes back rarely. Four
  segments (``LONG_TAIL_SEGMENTS``, moderate look tastes that do not drift): binger (watches a
  lot; drama, crime, sci-fi), light (watches little; comedy; pulled by clickbait), late-night
  (horror, thriller, around midnight) and kids (animation, at hours 15 to 19). The request is what
  real clients send, unscaled and incomplete: ``hour`` as an integer 0 to 23 and no ``daypart``;
  ``watch_minutes``, the minutes watched in the past week (lognormal around the segment's median of
  25 to 300, about 60 over everyone, at most 900), which tells the segments apart; ``zip`` (800
  values) and ``app_build`` (1000 to 9999), drawn uniformly and unrelated to taste; and about 30 %
  of viewers send no ``history_genres``, 20 % no ``recent_searches``, 10 % no ``watch_minutes``.
* ``drift``: the ``audience`` world (for a seed, the same titles, viewers and signals, and the same
  drift of look tastes) whose segments' genre tastes move, in a straight line between impressions
  30,000 and 50,000, to a second set (``DRIFT_SEGMENTS``): night owls from thriller and horror to
  comedy and sci-fi, families from animation to documentary and action, cinephiles from drama to
  sci-fi and thriller, casual viewers from action and comedy to horror and crime.

Everything is drawn from ``seed``: the same seed gives the same world, viewers and outcomes.
``World.build(catalog, seed=s)`` draws the world it drew before shapes existed, draw for draw.

The world is computed on arrays made once from its catalog and audience: for one viewer at one
impression, the click and play probabilities of every (title, artwork) pair come from a few NumPy
operations, and the last viewer's are kept, so that the oracle and the values of the rows shown to
that viewer at that impression reuse them. A world's titles, segments and viewers are not to be
changed once it is made.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

POSITION_DECAY = 0.85  # probability of looking at slot p is POSITION_DECAY ** p
BAIT_PULL = 2.0  # click logit a fully bait-pulled viewer adds for pure bait
BAIT_LETDOWN = 4.0  # plays after a click by a fully bait-pulled viewer fall as exp(-BAIT_LETDOWN * bait)
LOOKS = ("brightness", "warmth", "saturation", "contrast", "colorfulness", "skin_share", "text_like_share")
REWARDS = ("play", "click")
TASTE_SPREAD = 0.6  # standard deviation of a viewer's genre taste around the segment's
HISTORY_GENRES = 3  # genres in a viewer's viewing history
HISTORY_SHARPNESS = 1.5  # a history's genres are drawn by exp(HISTORY_SHARPNESS * taste), without replacement
RATING_NOISE = 0.3  # the top-rated genre is the best taste after normal noise of this spread
SEARCH_LIKED_SHARE = 0.6  # share of searches for the top-rated genre; the rest are for any genre
DEVICES = ("tv", "phone", "web")
DAYPARTS = ["night"] * 6 + ["morning"] * 6 + ["afternoon"] * 5 + ["evening"] * 5 + ["night"] * 2  # by hour
HOME_REGION_SHARE = 0.8  # share of a segment's viewers who live in one of its home regions
WATCH_MINUTES_SPREAD = 0.7  # standard deviation of the log of a viewer's weekly minutes around the segment's median
MAX_WATCH_MINUTES = 900.0
ZIPS = tuple(f"{10_000 + 111 * n:05d}" for n in range(800))  # the zip codes of a shape with irrelevant fields


def sigmoid(x: float) -> float:
    """Return the logistic function of ``x``."""
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True)
class Segment:
    """A kind of viewer: its share of the audience, genre tastes, taste for artwork looks, bait pull and habits."""

    name: str
    share: float
    genre_taste: Mapping[str, float]  # logit added for a title of the genre (the best genre of a title counts)
    look_taste: Mapping[str, float]  # logit per unit of a look feature above 0.5, at the start
    look_taste_later: Mapping[str, float]  # the same once drift is complete
    bait_pull: float = 0.0  # 0: loud artwork neither helps nor hurts; 1: it pulls clicks and disappoints
    genre_taste_later: Mapping[str, float] | None = None  # genre tastes once genre drift is complete; None: no drift
    hours: tuple[int, ...] = ()  # the hours its viewers usually watch at (each keeps one); (): any hour
    devices: tuple[float, float, float] = (0.5, 0.3, 0.2)  # shares of its viewers on each of DEVICES
    regions: tuple[str, ...] = ()  # home regions, of HOME_REGION_SHARE of its viewers (in a shape with regions)
    watch_minutes: float | None = None  # median weekly watch minutes of its viewers; None: requests do not say


SEGMENTS: tuple[Segment, ...] = (
    Segment(
        "night-owl",
        0.3,
        {"thriller": 1.2, "horror": 1.0, "crime": 0.8, "animation": -1.0},
        {"brightness": -4.0, "warmth": 2.0},
        {"brightness": -1.5, "warmth": -3.0, "contrast": 2.0},
        hours=(22, 23, 0, 1, 2),
    ),
    Segment(
        "family",
        0.3,
        {"animation": 1.4, "comedy": 0.8, "documentary": 0.4, "horror": -1.5, "thriller": -0.8},
        {"brightness": 4.0, "saturation": 1.5},
        {"brightness": 3.0, "warmth": -2.0},
        hours=(17, 18, 19, 20),
    ),
    Segment(
        "cinephile",
        0.2,
        {"drama": 1.0, "documentary": 0.8, "crime": 0.6, "action": -0.6},
        {"contrast": 2.5, "text_like_share": -2.0},
        {"contrast": 2.5, "skin_share": 2.0},
        hours=(19, 20, 21, 22, 23),
    ),
    Segment(
        "casual",
        0.2,
        {"action": 0.8, "comedy": 0.6, "romance": 0.4},
        {"colorfulness": 1.0},
        {"colorfulness": 1.0},
        bait_pull=1.0,
    ),
)
# The hours each segment of the audience usually watches at; the rest watch at any hour.
HOURS = {segment.name: segment.hours for segment in SEGMENTS if segment.hours}

# The audience's segments, their genre tastes moving to a second set (the ``drift`` shape).
DRIFT_SEGMENTS: tuple[Segment, ...] = tuple(
    dataclasses.replace(segment, genre_taste_later=later)
    for segment, later in zip(
        SEGMENTS,
        (
            {"comedy": 1.2, "sci-fi": 1.0, "romance": 0.6, "horror": -0.8},  # night-owl
            {"documentary": 1.4, "action": 0.8, "sci-fi": 0.4, "animation": -0.5, "horror": -1.5},  # family
            {"sci-fi": 1.0, "thriller": 0.8, "romance": 0.6, "drama": -0.4},  # cinephile
            {"horror": 0.8, "crime": 0.6, "drama": 0.4, "comedy": -0.4},  # casual
        ),
    )
)

REGIONS = tuple(f"r{n:02d}" for n in range(1, 13))


def _artwork_segment(
    index: int,
    name: str,
    genre_taste: Mapping[str, float],
    look_taste: Mapping[str, float],
    *,
    hours: tuple[int, ...],
    devices: tuple[float, float, float],
) -> Segment:
    """Return a segment of the ``artwork`` shape: an eighth of the audience, home regions by index, no drift."""
    return Segment(
        name,
        0.125,
        genre_taste,
        look_taste,
        look_taste,
        hours=hours,
        devices=devices,
        regions=(REGIONS[index], REGIONS[(index + 5) % len(REGIONS)]),
    )


ARTWORK_SEGMENTS: tuple[Segment, ...] = (
    _artwork_segment(
        0,
        "noir",
        {"thriller": 0.3, "crime": 0.2},
        {"brightness": -5.0, "contrast": 4.0},
        hours=(22, 23, 0, 1),
        devices=(0.6, 0.2, 0.2),
    ),
    _artwork_segment(
        1,
        "sunny",
        {"comedy": 0.3, "animation": 0.2},
        {"brightness": 4.0, "warmth": 3.0},
        hours=(9, 10, 11, 12, 13),
        devices=(0.3, 0.5, 0.2),
    ),
    _artwork_segment(
        2,
        "faces",
        {"romance": 0.3, "drama": 0.2},
        {"skin_share": 5.0, "text_like_share": -4.0},
        hours=(19, 20, 21),
        devices=(0.5, 0.3, 0.2),
    ),
    _artwork_segment(
        3,
        "typography",
        {"documentary": 0.3},
        {"text_like_share": 5.0, "saturation": -3.0, "skin_share": -3.0},
        hours=(),
        devices=(0.2, 0.3, 0.5),
    ),
    _artwork_segment(
        4,
        "vivid",
        {"action": 0.3, "sci-fi": 0.2},
        {"saturation": 4.0, "colorfulness": 3.0},
        hours=(15, 16, 17, 18),
        devices=(0.2, 0.7, 0.1),
    ),
    _artwork_segment(
        5,
        "cool",
        {"sci-fi": 0.3, "thriller": 0.2},
        {"warmth": -4.0, "brightness": 3.0},
        hours=(),
        devices=(0.4, 0.4, 0.2),
    ),
    _artwork_segment(
        6,
        "muted",
        {"drama": 0.3, "documentary": 0.2},
        {"saturation": -4.0, "colorfulness": -3.0},
        hours=(20, 21, 22, 23),
        devices=(0.7, 0.1, 0.2),
    ),
    _artwork_segment(
        7,
        "warm-dark",
        {"horror": 0.3, "crime": 0.2},
        {"warmth": 4.0, "brightness": -3.0, "skin_share": 3.0},
        hours=(23, 0, 1, 2),
        devices=(0.3, 0.6, 0.1),
    ),
)

LONG_TAIL_SEGMENTS: tuple[Segment, ...] = (
    Segment(
        "binger",
        0.2,
        {"drama": 1.2, "crime": 1.0, "sci-fi": 0.8, "comedy": -0.4},
        {"contrast": 2.5, "brightness": -1.5},
        {"contrast": 2.5, "brightness": -1.5},
        hours=(20, 21, 22, 23),
        watch_minutes=300.0,
    ),
    Segment(
        "light",
        0.35,
        {"comedy": 1.2, "romance": 0.6, "animation": 0.3, "horror": -0.8, "documentary": -0.5},
        {"brightness": 2.5, "warmth": 1.0},
        {"brightness": 2.5, "warmth": 1.0},
        bait_pull=1.0,
        devices=(0.3, 0.5, 0.2),
        watch_minutes=25.0,
    ),
    Segment(
        "late-night",
        0.25,
        {"horror": 1.3, "thriller": 1.1, "crime": 0.4, "animation": -1.0},
        {"brightness": -3.0, "warmth": 1.5},
        {"brightness": -3.0, "warmth": 1.5},
        hours=(23, 0, 1, 2, 3),
        watch_minutes=90.0,
    ),
    Segment(
        "kids",
        0.2,
        {"animation": 1.6, "comedy": 0.6, "horror": -2.0, "thriller": -1.2, "crime": -1.0},
        {"saturation": 2.5, "colorfulness": 1.5},
        {"saturation": 2.5, "colorfulness": 1.5},
        hours=(15, 16, 17, 18, 19),
        devices=(0.6, 0.2, 0.2),
        watch_minutes=60.0,
    ),
)


@dataclass(frozen=True)
class Shape:
    """A kind of world: its audience, what a request says about a viewer, and the demo catalog to build for it."""

    name: str
    description: str  # one line, for benchmark tables
    segments: tuple[Segment, ...]
    titles: int  # titles of the demo catalog the benchmarks build for the shape
    artworks_per_title: int | None  # artworks per demo title; None: the demo catalog's 3 to 6
    viewers: int = 1000
    appeal: tuple[float, float] = (-1.6, 0.7)  # mean and standard deviation of a title's appeal (normal)
    appeal_tail: float = 0.0  # scale of an exponential term added to every title's appeal; 0: none
    taste_spread: float = TASTE_SPREAD  # standard deviation of a viewer's genre taste around the segment's
    drift_impressions: int = 200_000  # look tastes drift from impression 0 to this one
    genre_drift: tuple[int, int] = (0, 0)  # first and last impression of the genre drift
    daypart: bool = True  # whether requests carry the part of the day of the hour
    regions: tuple[str, ...] = ()  # the regions a request names (none: no ``region`` field)
    irrelevant: bool = False  # whether requests carry ``zip`` and ``app_build``, unrelated to taste
    missing: tuple[tuple[str, float], ...] = ()  # (field, share of viewers whose requests lack it)


SHAPES: dict[str, Shape] = {
    shape.name: shape
    for shape in (
        Shape(
            "audience",
            "4 hidden segments, personal genre tastes, position bias, clickbait, look tastes drifting "
            "over 200k impressions",
            SEGMENTS,
            titles=30,
            artworks_per_title=None,
        ),
        Shape(
            "artwork",
            "8 titles x 6 artworks; 8 segments with strong, distinct look tastes and weak genre tastes, "
            "partly told by region, device and hour",
            ARTWORK_SEGMENTS,
            titles=8,
            artworks_per_title=6,
            taste_spread=0.3,
            regions=REGIONS,
        ),
        Shape(
            "long-tail",
            "120 titles with a few hits, 5,000 viewers; unscaled hour and watch minutes, irrelevant "
            "zip and app build, missing fields",
            LONG_TAIL_SEGMENTS,
            titles=120,
            artworks_per_title=2,
            viewers=5000,
            appeal=(-5.0, 0.3),
            appeal_tail=1.6,
            daypart=False,
            irrelevant=True,
            missing=(("history_genres", 0.3), ("recent_searches", 0.2), ("watch_minutes", 0.1)),
        ),
        Shape(
            "drift",
            "the audience world whose segments' genre tastes move to a second set between impressions 30k and 50k",
            DRIFT_SEGMENTS,
            titles=30,
            artworks_per_title=None,
            genre_drift=(30_000, 50_000),
        ),
    )
}


@dataclass(frozen=True)
class SimArtwork:
    """An artwork as the audience sees it."""

    id: str
    look: Mapping[str, float]  # visual features in [0, 1] (LOOKS)
    arrives_at: int = 0  # impression from which the artwork is offered

    @property
    def bait(self) -> float:
        """How loud the artwork is, in [0, 1]: its colorfulness."""
        return float(self.look.get("colorfulness", 0.0))


@dataclass(frozen=True)
class SimTitle:
    """A title as the audience sees it."""

    id: str
    genres: tuple[str, ...]
    artworks: tuple[SimArtwork, ...]
    appeal: float = 0.0  # click logit before tastes
    quality: float = 0.0  # play-after-click logit before tastes
    arrives_at: int = 0  # impression from which the title is offered


@dataclass(frozen=True)
class Viewer:
    """One member of the audience."""

    id: str
    segment: str
    features: Mapping[str, Any]  # what a rank request says about the viewer
    genre_taste: Mapping[str, float] = field(
        default_factory=dict
    )  # the segment's plus a personal deviation, at the start


@dataclass(frozen=True)
class Outcome:
    """What a viewer did with one slot."""

    position: int
    title_id: str
    artwork_id: str
    clicked: bool
    played: bool


@dataclass
class World:
    """A catalog, an audience and their tastes; see the module's docstring for the model."""

    titles: Mapping[str, SimTitle]
    segments: Mapping[str, Segment]
    viewers: list[Viewer]
    drift_impressions: int  # look tastes drift from impression 0 to this one
    seed: int
    genre_drift: tuple[int, int] = (0, 0)  # genre tastes drift from the first impression to the second
    shape: str = "audience"  # the name of the shape the world was built as
    # The shape whose requests the viewers send, read back by ``request_log_likelihood``; None: the audience's.
    signals: Shape | None = None
    _tables: _Tables = field(init=False, repr=False, compare=False)
    _last: _Values | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._tables = _Tables.of(self)

    @classmethod
    def build(
        cls,
        catalog: Iterable[Mapping[str, Any]],
        *,
        seed: int,
        shape: str | Shape = "audience",
        segments: Sequence[Segment] | None = None,
        viewers: int | None = None,
        late_share: float = 0.0,
        late_artwork_share: float = 0.0,
        impressions: int = 100_000,
        drift_impressions: int | None = None,
        reveal_segment: bool = False,
        reveal_tastes: bool = False,
    ) -> World:
        """Make a world of the shape from catalog titles (``id``, ``genres``, ``artworks`` with ``id`` and ``visual``).

        ``shape`` is a name of ``SHAPES`` or a ``Shape``; ``segments``, ``viewers`` and
        ``drift_impressions`` override the shape's. Title appeal and quality, which titles arrive
        late (``late_share`` of them) and which artworks arrive late (``late_artwork_share`` of
        those after a title's first, which is always there), at impressions spread over the first
        ``impressions``, and the viewers, their segments, tastes and signals, are drawn from ``seed``.

        Raises:
            ValueError: the shape is unknown, or no title of the catalog has an artwork.
        """
        if isinstance(shape, str):
            if shape not in SHAPES:
                raise ValueError(f"shape: must be one of {', '.join(SHAPES)}, got {shape!r}")
            shape = SHAPES[shape]
        segments = tuple(shape.segments if segments is None else segments)
        viewers = shape.viewers if viewers is None else viewers
        rng = np.random.default_rng(seed)
        titles: dict[str, SimTitle] = {}

        def arrival(share: float) -> int:
            return int(rng.integers(1, max(2, impressions))) if rng.random() < share else 0

        for title in sorted(catalog, key=lambda t: str(t["id"])):
            artworks = tuple(
                SimArtwork(
                    id=str(a["id"]),
                    look={k: float(a["visual"][k]) for k in LOOKS if k in a["visual"]},
                    arrives_at=arrival(late_artwork_share) if index else 0,
                )
                for index, a in enumerate(title["artworks"])
            )
            if not artworks:
                continue
            appeal = float(rng.normal(*shape.appeal))
            quality = float(rng.normal(0.3, 0.9))
            if shape.appeal_tail > 0:
                appeal += float(rng.exponential(shape.appeal_tail))
            titles[str(title["id"])] = SimTitle(
                id=str(title["id"]),
                genres=tuple(title.get("genres") or ()),
                artworks=artworks,
                appeal=appeal,
                quality=quality,
                arrives_at=arrival(late_share),
            )
        if not titles:
            raise ValueError("catalog: the world needs at least one title with an artwork")
        genres = sorted({genre for title in titles.values() for genre in title.genres})
        shares = np.array([s.share for s in segments], dtype=float)
        members = rng.choice(len(segments), size=viewers, p=shares / shares.sum())
        # Each viewer's device: one uniform draw through the segment's shares; when every segment has the same
        # shares, these are the draws of ``rng.choice(DEVICES, size=viewers, p=shares)``.
        mixes = np.cumsum([s.devices for s in segments], axis=1)
        mixes /= mixes[:, -1:]
        devices = (mixes[members] <= rng.random(viewers)[:, None]).sum(axis=1)
        people = []
        for i, (k, device) in enumerate(zip(members, devices)):
            segment = segments[int(k)]
            taste = {g: segment.genre_taste.get(g, 0.0) + float(rng.normal(0.0, shape.taste_spread)) for g in genres}
            people.append(
                Viewer(
                    id=f"sim-{i:05d}",
                    segment=segment.name,
                    genre_taste=taste,
                    features=_signals(
                        rng,
                        shape=shape,
                        segment=segment,
                        taste=taste,
                        device=DEVICES[int(device)],
                        reveal_segment=reveal_segment,
                        reveal_tastes=reveal_tastes,
                    ),
                )
            )
        return cls(
            titles=titles,
            segments={s.name: s for s in segments},
            viewers=people,
            drift_impressions=shape.drift_impressions if drift_impressions is None else drift_impressions,
            seed=seed,
            genre_drift=shape.genre_drift,
            shape=shape.name,
            signals=shape,
        )

    # ------------------------------------------------------------ probabilities

    def look_taste(self, segment: Segment, at: int) -> dict[str, float]:
        """Return the segment's taste for looks at impression ``at`` (drift moves it in a straight line)."""
        progress = self._look_progress(at)
        names = set(segment.look_taste) | set(segment.look_taste_later)
        return {
            name: (1 - progress) * segment.look_taste.get(name, 0.0)
            + progress * segment.look_taste_later.get(name, 0.0)
            for name in names
        }

    def genre_taste(self, segment: Segment, at: int) -> dict[str, float]:
        """Return the segment's genre tastes at impression ``at`` (genre drift moves them in a straight line)."""
        if segment.genre_taste_later is None:
            return dict(segment.genre_taste)
        progress = self._genre_progress(at)
        names = set(segment.genre_taste) | set(segment.genre_taste_later)
        return {
            name: (1 - progress) * segment.genre_taste.get(name, 0.0)
            + progress * segment.genre_taste_later.get(name, 0.0)
            for name in names
        }

    def _look_progress(self, at: int) -> float:
        return min(1.0, at / self.drift_impressions) if self.drift_impressions > 0 else 1.0

    def _genre_progress(self, at: int) -> float:
        start, end = self.genre_drift
        if end <= start:
            return 1.0 if at >= start else 0.0
        return min(1.0, max(0.0, (at - start) / (end - start)))

    def click_probability(
        self, viewer: Viewer, title_id: str, artwork_id: str, *, position: int = 0, at: int = 0
    ) -> float:
        """Return the probability that ``viewer`` clicks the title in slot ``position`` wearing the artwork."""
        return POSITION_DECAY**position * self._values(viewer, at).click[self._arm(title_id, artwork_id)]

    def play_probability(self, viewer: Viewer, title_id: str, artwork_id: str, *, at: int = 0) -> float:
        """Return the probability that a click on the title in the artwork, at impression ``at``, becomes a play."""
        return self._values(viewer, at).play[self._arm(title_id, artwork_id)]

    def expected_reward(
        self, viewer: Viewer, title_id: str, artwork_id: str, *, position: int = 0, at: int = 0, reward: str = "play"
    ) -> float:
        """Return the expected reward of one slot: clicks, or plays (clicks that became plays)."""
        values, arm = self._values(viewer, at), self._arm(title_id, artwork_id)
        click = POSITION_DECAY**position * values.click[arm]
        return click if reward == "click" else click * values.play[arm]

    def row_value(self, viewer: Viewer, row: Sequence[tuple[str, str]], *, at: int = 0, reward: str = "play") -> float:
        """Return the expected reward of a whole row of (title, artwork), slot 0 first."""
        values = self._values(viewer, at)
        total = 0.0
        for position, (title_id, artwork_id) in enumerate(row):
            arm = self._arm(title_id, artwork_id)
            click = POSITION_DECAY**position * values.click[arm]
            total += click if reward == "click" else click * values.play[arm]
        return total

    def _arm(self, title_id: str, artwork_id: str) -> int:
        """Return the index of a (title, artwork) pair in the world's arrays."""
        arm = self._tables.arms.get((title_id, artwork_id))
        if arm is None:
            if title_id not in self.titles:
                raise KeyError(title_id)
            raise KeyError(f"artwork {artwork_id!r} is not one of title {title_id!r}'s")
        return arm

    def _values(self, viewer: Viewer, at: int) -> _Values:
        """Return the viewer's click and play probabilities of every (title, artwork) pair at impression ``at``."""
        last = self._last
        if last is not None and last.viewer is viewer and last.at == at:
            return last
        tables = self._tables
        segment = tables.segment_index[viewer.segment]
        index = tables.viewer_index.get(viewer.id)
        ours = index is not None and self.viewers[index] is viewer
        if ours and tables.click_base is not None and tables.play is not None:  # genre tastes do not drift
            base, play = tables.click_base[index], tables.play[index]
        else:
            taste = tables.taste[index] if ours else tables.taste_of(viewer, self.segments[viewer.segment])
            if tables.genre_shift is not None:
                taste = taste + self._genre_progress(at) * tables.genre_shift[segment]
            base, play = tables.static(taste, segment)
        progress = self._look_progress(at)
        weights = (1 - progress) * tables.look_start[segment] + progress * tables.look_later[segment]
        click = 1.0 / (1.0 + np.exp(-(base + tables.looks @ weights)))
        self._last = _Values(
            viewer=viewer, at=at, click_array=click, play_array=play, click=click.tolist(), play=play.tolist()
        )
        return self._last

    def _best(self, viewer: Viewer, at: int, reward: str) -> tuple[np.ndarray, np.ndarray]:
        """Return each title's best expected reward among its artworks offered at ``at``, and that artwork's index.

        Shapes (titles,). Ties go to the highest artwork id; a title without an offered artwork has -inf.
        """
        values = self._values(viewer, at)
        kind = "click" if reward == "click" else "play"
        if kind not in values.best:
            value = values.click_array if kind == "click" else values.click_array * values.play_array
            values.best[kind] = self._title_best(value, at)
        return values.best[kind]

    def _title_best(self, value: np.ndarray, at: int) -> tuple[np.ndarray, np.ndarray]:
        """Return each title's best value among its artworks offered at ``at`` (``value`` per arm), and its arm."""
        tables = self._tables
        value = np.where(tables.arm_arrives <= at, value, -np.inf)
        best = np.maximum.reduceat(value, tables.starts)
        arm = np.maximum.reduceat(np.where(value == best[tables.arm_title], tables.arm_order, -1), tables.starts)
        return best, arm

    def _row(
        self, best: np.ndarray, arm: np.ndarray, *, slots: int, at: int, candidates: Sequence[str] | None
    ) -> list[tuple[str, str]]:
        """Return the row of the titles of the pool with the highest ``best``, each in its ``arm``; ties by title id."""
        tables = self._tables
        if candidates is None:
            titles = np.flatnonzero(tables.title_arrives <= at)
        else:
            titles = np.array([tables.title_index[title_id] for title_id in candidates], dtype=int)
        value = best[titles]
        if np.any(value == -np.inf):
            raise ValueError(f"a title of the pool has no artwork offered at impression {at}")
        order = np.lexsort((tables.title_rank[titles], -value))[:slots]
        return [(tables.title_ids[title], tables.arm_ids[arm[title]]) for title in titles[order].tolist()]

    # ------------------------------------------------------------ decisions and outcomes

    def available(self, at: int) -> list[str]:
        """Return the ids of the titles offered at impression ``at``."""
        tables = self._tables
        if at >= tables.last_arrival:
            return list(tables.title_ids)
        return [tables.title_ids[i] for i in np.flatnonzero(tables.title_arrives <= at)]

    def artworks(self, title_id: str, at: int) -> list[SimArtwork]:
        """Return the title's artworks offered at impression ``at`` (its first is always there)."""
        return [artwork for artwork in self.titles[title_id].artworks if artwork.arrives_at <= at]

    def best_artwork(self, viewer: Viewer, title_id: str, *, at: int = 0, reward: str = "play") -> str:
        """Return the title's artwork offered at ``at`` with the highest expected reward for the viewer.

        Ties go to the highest artwork id.
        """
        title = self._tables.title_index[title_id]
        best, arm = self._best(viewer, at, reward)
        if best[title] == -np.inf:
            raise ValueError(f"title {title_id!r} has no artwork offered at impression {at}")
        return self._tables.arm_ids[arm[title]]

    def oracle(
        self, viewer: Viewer, *, slots: int, at: int = 0, reward: str = "play", candidates: Sequence[str] | None = None
    ) -> list[tuple[str, str]]:
        """Return the row with the highest expected reward: each title's best artwork, the best titles first.

        Optimal because looking at slot p is a factor that falls with p and does not depend on what
        is shown: the expected reward is the sum of decay^p times each title's best value, which
        the largest values in the earliest slots maximize (the rearrangement inequality). Ties go
        to the lowest title id, and within a title to the highest artwork id.
        """
        best, arm = self._best(viewer, at, reward)
        return self._row(best, arm, slots=slots, at=at, candidates=candidates)

    def draw_viewer(self, rng: np.random.Generator) -> Viewer:
        """Return a viewer of the audience, drawn uniformly."""
        return self.viewers[int(rng.integers(len(self.viewers)))]

    def respond(
        self, viewer: Viewer, row: Sequence[tuple[str, str]], rng: np.random.Generator, *, at: int = 0
    ) -> list[Outcome]:
        """Return what the viewer does with each slot of a shown row (a click draw, then a play draw if clicked)."""
        values = self._values(viewer, at)
        outcomes = []
        for position, (title_id, artwork_id) in enumerate(row):
            arm = self._arm(title_id, artwork_id)
            clicked = bool(rng.random() < POSITION_DECAY**position * values.click[arm])
            played = clicked and bool(rng.random() < values.play[arm])
            outcomes.append(
                Outcome(position=position, title_id=title_id, artwork_id=artwork_id, clicked=clicked, played=played)
            )
        return outcomes

    # ------------------------------------------------------------ hypothetical viewers, for reference policies

    def draw_hypotheses(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``count`` viewers as the world draws its own: a segment by share, its genre tastes plus a deviation.

        Returns segment indices, shape (count,), in the order of ``segments``, and genre tastes,
        shape (count, genres), in the columns of ``genres``. This is the prior of a policy told
        every parameter of the world but not who a viewer is.
        """
        segments = list(self.segments.values())
        shares = np.array([segment.share for segment in segments], dtype=float)
        members = rng.choice(len(segments), size=count, p=shares / shares.sum())
        genres = self._tables.genres
        mean = np.array([[segment.genre_taste.get(genre, 0.0) for genre in genres] for segment in segments])
        spread = (self.signals or SHAPES["audience"]).taste_spread
        return members, mean[members].reshape(count, len(genres)) + rng.normal(0.0, spread, size=(count, len(genres)))

    @property
    def genres(self) -> list[str]:
        """The genres of the world, in the columns of a taste array (``draw_hypotheses``)."""
        return list(self._tables.genres)

    def request_log_likelihood(
        self, features: Mapping[str, Any], segments: np.ndarray, tastes: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Return the log-probability of a request's fields for each hypothetical viewer (``draw_hypotheses``).

        What ``_signals`` draws from a viewer's segment and tastes, read back: the device, the
        hour, the history's genres (drawn without replacement by ``exp(HISTORY_SHARPNESS *
        taste)``), the top-rated genre (the best taste after noise, whose probability is estimated
        by one draw of the noise per hypothesis: 1 or 0, unbiased), the search, the region, the
        weekly minutes and a revealed segment. Fields a shape leaves out at random, and those
        unrelated to taste, are as likely for every hypothesis and left out; -inf where a
        hypothesis could not have sent the request.
        """
        signals = self.signals or SHAPES["audience"]
        segment_list = list(self.segments.values())
        genres = self._tables.genres
        column = {genre: i for i, genre in enumerate(genres)}
        log = np.zeros(len(segments))

        def per_segment(values: Sequence[float]) -> np.ndarray:
            with np.errstate(divide="ignore"):
                return np.log(np.array(values, dtype=float))[segments]

        if "device" in features:
            device = DEVICES.index(features["device"])
            log += per_segment([s.devices[device] / sum(s.devices) for s in segment_list])
        if "hour" in features:
            hour = int(features["hour"])
            log += per_segment([(hour in s.hours) / len(s.hours) if s.hours else 1 / 24 for s in segment_list])
        if features.get("history_genres") and genres:
            weights = np.exp(HISTORY_SHARPNESS * tastes)
            total = weights.sum(axis=1)
            history = [column[genre] for genre in features["history_genres"]]
            chance = np.zeros(len(segments))
            for order in itertools.permutations(history):
                left, step = total.copy(), np.ones(len(segments))
                for genre in order:
                    step *= weights[:, genre] / left
                    left -= weights[:, genre]
                chance += step
            log += np.log(chance)
        if genres and ("top_rated_genres" in features or "recent_searches" in features):
            liked = (tastes + rng.normal(0.0, RATING_NOISE, size=tastes.shape)).argmax(axis=1)
            if "top_rated_genres" in features:
                with np.errstate(divide="ignore"):
                    log += np.log(liked == column[features["top_rated_genres"][0]])
            if "recent_searches" in features:
                searched = column[features["recent_searches"][0]]
                log += np.log(SEARCH_LIKED_SHARE * (liked == searched) + (1 - SEARCH_LIKED_SHARE) / len(genres))
        if "region" in features and signals.regions:
            chances = []
            for s in segment_list:
                home = [region for region in s.regions if region in signals.regions]
                away = [region for region in signals.regions if region not in home]
                near = 0.0 if not home else (1.0 if not away else HOME_REGION_SHARE)
                region = features["region"]
                chances.append(near / len(home) if region in home else (1 - near) / len(away))
            log += per_segment(chances)
        if "watch_minutes" in features:
            minutes = float(features["watch_minutes"])
            chances = []
            for s in segment_list:
                if s.watch_minutes is None:
                    chances.append(0.0)
                elif minutes >= MAX_WATCH_MINUTES:
                    z = (math.log(MAX_WATCH_MINUTES) - math.log(s.watch_minutes)) / WATCH_MINUTES_SPREAD
                    chances.append(0.5 * math.erfc(z / math.sqrt(2)))
                else:  # the density of the log of the minutes
                    z = (math.log(max(minutes, 0.05)) - math.log(s.watch_minutes)) / WATCH_MINUTES_SPREAD
                    chances.append(math.exp(-0.5 * z * z) / WATCH_MINUTES_SPREAD)
            log += per_segment(chances)
        if "segment" in features:
            log += per_segment([s.name == features["segment"] for s in segment_list])
        return log

    def hypothetical_values(
        self, segments: np.ndarray, tastes: np.ndarray, *, at: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return, for each hypothetical viewer, every arm's click probability in slot 0 and play probability.

        Shapes (count, arms), arms in the order of ``arm_of``; genre and look tastes as of impression ``at``.
        """
        tables = self._tables
        taste = np.concatenate([tastes, np.full((len(segments), 1), -np.inf)], axis=1)
        if tables.genre_shift is not None:
            taste = taste + self._genre_progress(at) * tables.genre_shift[segments]
        base, play = tables.static(taste, segments)
        progress = self._look_progress(at)
        weights = (1 - progress) * tables.look_start + progress * tables.look_later
        click = 1.0 / (1.0 + np.exp(-(base + (weights @ tables.looks.T)[segments])))
        return click, play

    def arm_of(self, title_id: str, artwork_id: str) -> int:
        """Return the index of a (title, artwork) pair in ``hypothetical_values``' arrays."""
        return self._arm(title_id, artwork_id)

    def best_row(self, value: np.ndarray, *, slots: int, at: int) -> list[tuple[str, str]]:
        """Return the best row for a viewer whose expected reward of each arm in slot 0 is ``value``, shape (arms,).

        As ``oracle`` builds its row: each title's best artwork offered at ``at``, the best titles first.
        """
        best, arm = self._title_best(np.asarray(value, dtype=float), at)
        return self._row(best, arm, slots=slots, at=at, candidates=None)


@dataclass
class _Values:
    """One viewer's probabilities at one impression, for every (title, artwork) pair of the world's arrays."""

    viewer: Viewer
    at: int
    click_array: np.ndarray  # (arms,) click probability in slot 0
    play_array: np.ndarray  # (arms,) probability that a click becomes a play
    click: list[float]  # the same as Python floats, for reading one at a time
    play: list[float]
    best: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # reward -> World._best's


@dataclass
class _Tables:
    """A world's catalog and audience as arrays. Arms are (title, artwork) pairs, by title, then artwork id."""

    title_ids: list[str]  # in the world's order
    title_index: dict[str, int]
    title_rank: np.ndarray  # (titles,) rank of the title id among the ids, for ties
    title_arrives: np.ndarray  # (titles,)
    last_arrival: int  # the latest title's arrival
    title_genres: np.ndarray  # (titles, most genres of a title) columns of ``taste``, padded with its last
    genreless: np.ndarray  # (titles,) whether the title has no genre
    genres: list[str]  # the columns of ``taste`` but its last
    arms: dict[tuple[str, str], int]
    arm_ids: list[str]  # (arms,) artwork ids
    arm_order: np.ndarray  # (arms,) 0, 1, ...
    arm_title: np.ndarray  # (arms,) title index
    arm_appeal: np.ndarray  # (arms,) the title's appeal
    arm_quality: np.ndarray  # (arms,) the title's quality
    arm_arrives: np.ndarray  # (arms,) the artwork's arrival
    looks: np.ndarray  # (arms, LOOKS) look minus 0.5 (a missing look is 0.5)
    starts: np.ndarray  # (titles,) each title's first arm
    segment_index: dict[str, int]
    bait_click: np.ndarray  # (segments, arms) click logit of the bait
    letdown: np.ndarray  # (segments, arms) play factor of the bait
    look_start: np.ndarray  # (segments, LOOKS) look weights at the start
    look_later: np.ndarray  # (segments, LOOKS) look weights once drift is complete
    genre_shift: np.ndarray | None  # (segments, genres + 1) later minus early genre tastes; None: no genre drift
    viewer_index: dict[str, int]
    taste: np.ndarray  # (viewers, genres + 1) each viewer's genre tastes at the start; the last column -inf
    click_base: np.ndarray | None = None  # (viewers, arms) ``static``'s click logits; None: genre drift
    play: np.ndarray | None = None  # (viewers, arms) ``static``'s play probabilities; None: genre drift

    @classmethod
    def of(cls, world: World) -> _Tables:
        """Return the arrays of a world."""
        title_ids = list(world.titles)
        titles = [world.titles[title_id] for title_id in title_ids]
        rank = {title_id: r for r, title_id in enumerate(sorted(title_ids))}
        genres = sorted(
            {genre for title in titles for genre in title.genres}
            | {genre for viewer in world.viewers for genre in viewer.genre_taste}
        )
        column = {genre: i for i, genre in enumerate(genres)}
        title_genres = np.full((len(titles), max([len(title.genres) for title in titles] + [1])), len(genres))
        for i, title in enumerate(titles):
            title_genres[i, : len(title.genres)] = [column[genre] for genre in title.genres]
        arms = [
            (i, artwork) for i, title in enumerate(titles) for artwork in sorted(title.artworks, key=lambda a: a.id)
        ]
        arm_title = np.array([i for i, _ in arms], dtype=int)
        bait = np.array([artwork.bait for _, artwork in arms])
        segments = list(world.segments.values())
        pull = np.array([segment.bait_pull for segment in segments])
        shift = None
        if any(segment.genre_taste_later is not None for segment in segments):
            shift = _matrix(
                [
                    [
                        (segment.genre_taste_later or segment.genre_taste).get(genre, 0.0)
                        - segment.genre_taste.get(genre, 0.0)
                        for genre in genres
                    ]
                    + [0.0]
                    for segment in segments
                ],
                len(genres) + 1,
            )
        tables = cls(
            title_ids=title_ids,
            title_index={title_id: i for i, title_id in enumerate(title_ids)},
            title_rank=np.array([rank[title_id] for title_id in title_ids], dtype=int),
            title_arrives=np.array([title.arrives_at for title in titles]),
            last_arrival=max([title.arrives_at for title in titles] + [0]),
            title_genres=title_genres,
            genreless=np.array([not title.genres for title in titles]),
            genres=genres,
            arms={(titles[i].id, artwork.id): n for n, (i, artwork) in enumerate(arms)},
            arm_ids=[artwork.id for _, artwork in arms],
            arm_order=np.arange(len(arms)),
            arm_title=arm_title,
            arm_appeal=np.array([title.appeal for title in titles])[arm_title],
            arm_quality=np.array([title.quality for title in titles])[arm_title],
            arm_arrives=np.array([artwork.arrives_at for _, artwork in arms]),
            looks=_matrix([[artwork.look.get(name, 0.5) - 0.5 for name in LOOKS] for _, artwork in arms], len(LOOKS)),
            starts=np.searchsorted(arm_title, np.arange(len(titles))),
            segment_index={segment.name: s for s, segment in enumerate(segments)},
            bait_click=pull[:, None] * BAIT_PULL * bait[None, :],
            letdown=np.exp(-BAIT_LETDOWN * pull[:, None] * bait[None, :]),
            look_start=_matrix(
                [[segment.look_taste.get(name, 0.0) for name in LOOKS] for segment in segments], len(LOOKS)
            ),
            look_later=_matrix(
                [[segment.look_taste_later.get(name, 0.0) for name in LOOKS] for segment in segments], len(LOOKS)
            ),
            genre_shift=shift,
            viewer_index={viewer.id: v for v, viewer in enumerate(world.viewers)},
            taste=_matrix(
                [_taste_row(viewer, world.segments[viewer.segment], genres) for viewer in world.viewers],
                len(genres) + 1,
            ),
        )
        if shift is None:  # tastes for genres stay: all of a viewer's values but the look's are fixed
            members = np.array([tables.segment_index[viewer.segment] for viewer in world.viewers], dtype=int)
            tables.click_base, tables.play = tables.static(tables.taste, members)
        return tables

    def static(self, taste: np.ndarray, segment: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return every arm's click logit but the look's term, and its play probability, for genre tastes.

        ``taste`` has shape (genres + 1,) with ``segment`` an index, or (viewers, genres + 1) with one
        segment index per viewer; the results have shape (arms,) or (viewers, arms).
        """
        genre = np.where(self.genreless, 0.0, taste[..., self.title_genres].max(axis=-1))[..., self.arm_title]
        base = self.arm_appeal + genre + self.bait_click[segment]
        play = 1.0 / (1.0 + np.exp(-(self.arm_quality + genre))) * self.letdown[segment]
        return base, play

    def taste_of(self, viewer: Viewer, segment: Segment) -> np.ndarray:
        """Return the genre tastes at the start of a viewer who is not one of the world's, shape (genres + 1,)."""
        return np.array(_taste_row(viewer, segment, self.genres))


def _taste_row(viewer: Viewer, segment: Segment, genres: Sequence[str]) -> list[float]:
    """Return a viewer's genre tastes at the start (the viewer's, else the segment's, else 0), then -inf."""
    return [viewer.genre_taste.get(genre, segment.genre_taste.get(genre, 0.0)) for genre in genres] + [-math.inf]


def _matrix(rows: Sequence[Sequence[float]], width: int) -> np.ndarray:
    """Return rows of numbers as an array of shape (rows, width), also when there are none."""
    return np.array(rows, dtype=float).reshape(len(rows), width)


def _signals(
    rng: np.random.Generator,
    *,
    shape: Shape,
    segment: Segment,
    taste: Mapping[str, float],
    device: str,
    reveal_segment: bool,
    reveal_tastes: bool = False,
) -> dict[str, Any]:
    """Draw what a catalog knows of a viewer with these tastes: device, usual hour, history, ratings, a search...

    What more, and which fields some viewers do not send, the shape says.
    """
    genres = sorted(taste)
    features: dict[str, Any] = {"device": device}
    hour = int(rng.choice(segment.hours)) if segment.hours else int(rng.integers(24))
    features["hour"] = hour
    if shape.daypart:
        features["daypart"] = DAYPARTS[hour]
    if genres:
        weights = np.exp(HISTORY_SHARPNESS * np.array([taste[g] for g in genres]))
        picked = rng.choice(
            len(genres), size=min(HISTORY_GENRES, len(genres)), replace=False, p=weights / weights.sum()
        )
        features["history_genres"] = sorted(genres[int(i)] for i in picked)
        liked = max(genres, key=lambda g: taste[g] + float(rng.normal(0.0, RATING_NOISE)))
        features["top_rated_genres"] = [liked]
        searched = liked if rng.random() < SEARCH_LIKED_SHARE else genres[int(rng.integers(len(genres)))]
        features["recent_searches"] = [searched]
    if shape.regions:
        home = [region for region in segment.regions if region in shape.regions]
        away = [region for region in shape.regions if region not in home]
        near = bool(home) and (not away or rng.random() < HOME_REGION_SHARE)
        features["region"] = (home if near else away)[int(rng.integers(len(home if near else away)))]
    if segment.watch_minutes is not None:
        minutes = segment.watch_minutes * math.exp(float(rng.normal(0.0, WATCH_MINUTES_SPREAD)))
        features["watch_minutes"] = round(min(MAX_WATCH_MINUTES, minutes), 1)
    if shape.irrelevant:
        features["zip"] = ZIPS[int(rng.integers(len(ZIPS)))]
        features["app_build"] = int(rng.integers(1000, 10_000))
    for name, share in shape.missing:
        if rng.random() < share:
            features.pop(name, None)
    if reveal_segment:
        features["segment"] = segment.name
    if reveal_tastes:
        features.update({f"taste_{genre}": round(taste[genre], 3) for genre in genres})
    return features
