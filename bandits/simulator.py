"""A simulated audience: viewers in segments with tastes, a catalog's real artworks, clicks, plays, drift, and the oracle.

Every probability is known to the world, so the best row for a viewer (the oracle's) and the
expected value of any row are exact. A viewer of a segment looks at slot ``p`` of a row with
probability ``POSITION_DECAY ** p`` and, having looked, clicks a title with probability

    sigmoid(title appeal + viewer's genre taste + segment's taste for the artwork's look
            + bait pull * the artwork's bait)

where the artwork's look is its stored visual features (brightness, warmth, saturation, contrast,
colorfulness, skin and text shares, as ``assets.images.visual_features`` measured them) and its
*bait* is its colorfulness. A click becomes a play with probability

    sigmoid(title quality + viewer's genre taste) * exp(-BAIT_LETDOWN * bait pull * bait)

so for a segment with a bait pull, loud artwork earns clicks that do not become plays: the click
odds grow like exp(2 * bait) and plays fall like exp(-4 * bait), so the loudest artwork is the best
for clicks and the quietest the best for plays. Tastes for looks drift: a segment's weights move in a
straight line from their start to a second set over ``drift_impressions`` impressions. Titles and
artworks may arrive late (``arrives_at``): before that they are not offered and the oracle does not
use them.

A viewer's genre taste is the segment's plus a personal deviation (normal, ``TASTE_SPREAD``), and
what a rank request says about the viewer is what a catalog would know, not the segment: the
device, the hour they usually watch at and its part of the day (segments keep different hours), the genres of their viewing
history and of their highest-rated titles (drawn from their own tastes), and a recent search (a
genre word, from their tastes most of the time). ``reveal_segment`` adds the segment itself, for
tests that want an audience a model can read directly.

Everything is drawn from ``seed``: the same seed gives the same world, viewers and outcomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

POSITION_DECAY = 0.85  # probability of looking at slot p is POSITION_DECAY ** p
BAIT_PULL = 2.0  # click logit a fully bait-pulled viewer adds for pure bait
BAIT_LETDOWN = 4.0  # plays after a click by a fully bait-pulled viewer fall as exp(-BAIT_LETDOWN * bait)
LOOKS = ("brightness", "warmth", "saturation", "contrast", "colorfulness", "skin_share", "text_like_share")
REWARDS = ("play", "click")
TASTE_SPREAD = 0.6  # standard deviation of a viewer's genre taste around the segment's
HISTORY_GENRES = 3  # genres in a viewer's viewing history
# The hours each segment usually watches at (a viewer keeps one); the rest watch at any hour.
HOURS = {"night-owl": (22, 23, 0, 1, 2), "family": (17, 18, 19, 20), "cinephile": (19, 20, 21, 22, 23)}
DAYPARTS = ["night"] * 6 + ["morning"] * 6 + ["afternoon"] * 5 + ["evening"] * 5 + ["night"] * 2  # by hour


def sigmoid(x: float) -> float:
    """Return the logistic function of ``x``."""
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True)
class Segment:
    """A kind of viewer: its share of the audience, genre tastes, taste for artwork looks and bait pull."""

    name: str
    share: float
    genre_taste: Mapping[str, float]  # logit added for a title of the genre (the best genre of a title counts)
    look_taste: Mapping[str, float]  # logit per unit of a look feature above 0.5, at the start
    look_taste_later: Mapping[str, float]  # the same once drift is complete
    bait_pull: float = 0.0  # 0: loud artwork neither helps nor hurts; 1: it pulls clicks and disappoints


SEGMENTS: tuple[Segment, ...] = (
    Segment("night-owl", 0.3, {"thriller": 1.2, "horror": 1.0, "crime": 0.8, "animation": -1.0},
            {"brightness": -4.0, "warmth": 2.0}, {"brightness": -1.5, "warmth": -3.0, "contrast": 2.0}),
    Segment("family", 0.3, {"animation": 1.4, "comedy": 0.8, "documentary": 0.4, "horror": -1.5, "thriller": -0.8},
            {"brightness": 4.0, "saturation": 1.5}, {"brightness": 3.0, "warmth": -2.0}),
    Segment("cinephile", 0.2, {"drama": 1.0, "documentary": 0.8, "crime": 0.6, "action": -0.6},
            {"contrast": 2.5, "text_like_share": -2.0}, {"contrast": 2.5, "skin_share": 2.0}),
    Segment("casual", 0.2, {"action": 0.8, "comedy": 0.6, "romance": 0.4},
            {"colorfulness": 1.0}, {"colorfulness": 1.0}, bait_pull=1.0),
)


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
    genre_taste: Mapping[str, float] = field(default_factory=dict)  # the segment's plus a personal deviation


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
    drift_impressions: int
    seed: int

    @classmethod
    def build(cls, catalog: Iterable[Mapping[str, Any]], *, seed: int, segments: Sequence[Segment] = SEGMENTS,
              viewers: int = 1000, late_share: float = 0.0, late_artwork_share: float = 0.0,
              impressions: int = 100_000, drift_impressions: int = 200_000, reveal_segment: bool = False) -> "World":
        """Make a world from catalog titles (``id``, ``genres``, ``artworks`` with ``id`` and ``visual``).

        Title appeal and quality, which titles arrive late (``late_share`` of them) and which
        artworks arrive late (``late_artwork_share`` of those after a title's first, which is always
        there), at impressions spread over the first ``impressions``, and the viewers, their segments,
        tastes and signals, are drawn from ``seed``.
        """
        rng = np.random.default_rng(seed)
        titles: dict[str, SimTitle] = {}

        def arrival(share: float) -> int:
            return int(rng.integers(1, max(2, impressions))) if rng.random() < share else 0

        for title in sorted(catalog, key=lambda t: str(t["id"])):
            artworks = tuple(SimArtwork(id=str(a["id"]), look={k: float(a["visual"][k]) for k in LOOKS if k in a["visual"]},
                                        arrives_at=arrival(late_artwork_share) if index else 0)
                             for index, a in enumerate(title["artworks"]))
            if not artworks:
                continue
            titles[str(title["id"])] = SimTitle(
                id=str(title["id"]), genres=tuple(title.get("genres") or ()), artworks=artworks,
                appeal=float(rng.normal(-1.6, 0.7)), quality=float(rng.normal(0.3, 0.9)), arrives_at=arrival(late_share))
        if not titles:
            raise ValueError("catalog: the world needs at least one title with an artwork")
        genres = sorted({genre for title in titles.values() for genre in title.genres})
        shares = np.array([s.share for s in segments], dtype=float)
        members = rng.choice(len(segments), size=viewers, p=shares / shares.sum())
        devices = rng.choice(["tv", "phone", "web"], size=viewers, p=[0.5, 0.3, 0.2])
        people = []
        for i, (k, device) in enumerate(zip(members, devices)):
            segment = segments[int(k)]
            taste = {g: segment.genre_taste.get(g, 0.0) + float(rng.normal(0.0, TASTE_SPREAD)) for g in genres}
            people.append(Viewer(id=f"sim-{i:05d}", segment=segment.name, genre_taste=taste,
                                 features=_signals(rng, segment.name, taste, str(device), reveal_segment)))
        return cls(titles=titles, segments={s.name: s for s in segments}, viewers=people,
                   drift_impressions=drift_impressions, seed=seed)

    # ------------------------------------------------------------ probabilities

    def look_taste(self, segment: Segment, at: int) -> dict[str, float]:
        """Return the segment's taste for looks at impression ``at`` (drift moves it in a straight line)."""
        progress = min(1.0, at / self.drift_impressions) if self.drift_impressions > 0 else 1.0
        names = set(segment.look_taste) | set(segment.look_taste_later)
        return {name: (1 - progress) * segment.look_taste.get(name, 0.0) + progress * segment.look_taste_later.get(name, 0.0)
                for name in names}

    @staticmethod
    def _genre(viewer: Viewer, segment: Segment, title: SimTitle) -> float:
        tastes = [viewer.genre_taste.get(genre, segment.genre_taste.get(genre, 0.0)) for genre in title.genres]
        return max(tastes) if tastes else 0.0

    def click_probability(self, viewer: Viewer, title_id: str, artwork_id: str, *, position: int = 0, at: int = 0) -> float:
        """Return the probability that ``viewer`` clicks the title in slot ``position`` wearing the artwork."""
        segment, title = self.segments[viewer.segment], self.titles[title_id]
        artwork = self._artwork(title, artwork_id)
        taste = self.look_taste(segment, at)
        logit = title.appeal + self._genre(viewer, segment, title) + segment.bait_pull * BAIT_PULL * artwork.bait
        logit += sum(weight * (artwork.look.get(name, 0.5) - 0.5) for name, weight in taste.items())
        return POSITION_DECAY ** position * sigmoid(logit)

    def play_probability(self, viewer: Viewer, title_id: str, artwork_id: str) -> float:
        """Return the probability that a click on the title wearing the artwork becomes a play."""
        segment, title = self.segments[viewer.segment], self.titles[title_id]
        artwork = self._artwork(title, artwork_id)
        return sigmoid(title.quality + self._genre(viewer, segment, title)) * math.exp(-BAIT_LETDOWN * segment.bait_pull * artwork.bait)

    def expected_reward(self, viewer: Viewer, title_id: str, artwork_id: str, *, position: int = 0, at: int = 0,
                        reward: str = "play") -> float:
        """Return the expected reward of one slot: clicks, or plays (clicks that became plays)."""
        click = self.click_probability(viewer, title_id, artwork_id, position=position, at=at)
        return click if reward == "click" else click * self.play_probability(viewer, title_id, artwork_id)

    def row_value(self, viewer: Viewer, row: Sequence[tuple[str, str]], *, at: int = 0, reward: str = "play") -> float:
        """Return the expected reward of a whole row of (title, artwork), slot 0 first."""
        return sum(self.expected_reward(viewer, title_id, artwork_id, position=p, at=at, reward=reward)
                   for p, (title_id, artwork_id) in enumerate(row))

    @staticmethod
    def _artwork(title: SimTitle, artwork_id: str) -> SimArtwork:
        for artwork in title.artworks:
            if artwork.id == artwork_id:
                return artwork
        raise KeyError(f"artwork {artwork_id!r} is not one of title {title.id!r}'s")

    # ------------------------------------------------------------ decisions and outcomes

    def available(self, at: int) -> list[str]:
        """Return the ids of the titles offered at impression ``at``."""
        return [title_id for title_id, title in self.titles.items() if title.arrives_at <= at]

    def artworks(self, title_id: str, at: int) -> list[SimArtwork]:
        """Return the title's artworks offered at impression ``at`` (its first is always there)."""
        return [artwork for artwork in self.titles[title_id].artworks if artwork.arrives_at <= at]

    def best_artwork(self, viewer: Viewer, title_id: str, *, at: int = 0, reward: str = "play") -> str:
        """Return the artwork of the title, among those offered at ``at``, with the highest expected reward for the viewer."""
        return max(self.artworks(title_id, at), key=lambda a: (self.expected_reward(viewer, title_id, a.id, at=at, reward=reward), a.id)).id

    def oracle(self, viewer: Viewer, *, slots: int, at: int = 0, reward: str = "play",
               candidates: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """Return the row with the highest expected reward: each title's best artwork, the best titles first.

        Optimal because looking at slot p is a factor that falls with p and does not depend on what
        is shown: the expected reward is the sum of decay^p times each title's best value, which
        the largest values in the earliest slots maximize (the rearrangement inequality).
        """
        pool = list(candidates) if candidates is not None else self.available(at)
        scored = []
        for title_id in pool:
            artwork_id = self.best_artwork(viewer, title_id, at=at, reward=reward)
            scored.append((self.expected_reward(viewer, title_id, artwork_id, at=at, reward=reward), title_id, artwork_id))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [(title_id, artwork_id) for _, title_id, artwork_id in scored[:slots]]

    def draw_viewer(self, rng: np.random.Generator) -> Viewer:
        """Return a viewer of the audience, drawn uniformly."""
        return self.viewers[int(rng.integers(len(self.viewers)))]

    def respond(self, viewer: Viewer, row: Sequence[tuple[str, str]], rng: np.random.Generator, *,
                at: int = 0) -> list[Outcome]:
        """Return what the viewer does with each slot of a shown row (one click draw, then one play draw, per slot)."""
        outcomes = []
        for position, (title_id, artwork_id) in enumerate(row):
            clicked = bool(rng.random() < self.click_probability(viewer, title_id, artwork_id, position=position, at=at))
            played = clicked and bool(rng.random() < self.play_probability(viewer, title_id, artwork_id))
            outcomes.append(Outcome(position=position, title_id=title_id, artwork_id=artwork_id, clicked=clicked,
                                    played=played))
        return outcomes



def _signals(rng: np.random.Generator, segment: str, taste: Mapping[str, float], device: str,
             reveal_segment: bool) -> dict[str, Any]:
    """Draw what a catalog knows of a viewer with these tastes: device, usual hour, history, ratings, a search."""
    genres = sorted(taste)
    features: dict[str, Any] = {"device": device}
    hours = HOURS.get(segment)
    hour = int(rng.choice(hours)) if hours else int(rng.integers(24))
    features["hour"] = hour
    features["daypart"] = DAYPARTS[hour]
    if genres:
        weights = np.exp(1.5 * np.array([taste[g] for g in genres]))
        picked = rng.choice(len(genres), size=min(HISTORY_GENRES, len(genres)), replace=False, p=weights / weights.sum())
        features["history_genres"] = sorted(genres[int(i)] for i in picked)
        liked = max(genres, key=lambda g: taste[g] + float(rng.normal(0.0, 0.3)))
        features["top_rated_genres"] = [liked]
        searched = liked if rng.random() < 0.6 else genres[int(rng.integers(len(genres)))]
        features["recent_searches"] = [searched]
    if reveal_segment:
        features["segment"] = segment
    return features
