"""What the dashboard shows, as data: traffic and reward rates by explore/exploit, and the winning artwork.

Rates cover the most recent ``span`` events (at most ``MAX_EVENTS``) in buckets of consecutive
events, like the live view. An impression counts as *clicked* when it got a ``click`` reward, or a
positive reward sent as a number; as *played* when it got a ``play`` or ``completed`` reward (a
typed outcome: rewards sent as numbers say nothing about plays). It counts as *explored* when its
title or its artwork pick explored, *exploited* when both were the model's best.

The winning artwork of a segment is the model's greedy artwork for a viewer whose only feature is
that segment value: the policy's view of the segment on its own, not of any particular viewer.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from assets.catalog import CatalogSnapshot
from bandits.model.policy import ServingModel
from bandits.reports.live import bucket_size
from bandits.storage import Database
from bandits.vw import features

MAX_EVENTS = 100_000
CLICKED = "r.type = 'click' OR (r.type IS NULL AND r.value > 0)"
PLAYED = "r.type IN ('play', 'completed')"


@dataclass(frozen=True)
class RateBucket:
    """One run of consecutive events: rows, and per explore/exploit the impressions, clicked and played."""

    since: float
    until: float
    events: int
    shown: dict[str, int]
    clicked: dict[str, int]
    played: dict[str, int]
    size: int = 1  # the events a full bucket holds (the newest may hold fewer)

    def rate(self, what: str, arm: str) -> float | None:
        """Clicked or played share of the ``explore`` or ``exploit`` impressions (None when there were none)."""
        shown = self.shown.get(arm, 0)
        counts = self.clicked if what == "clicked" else self.played
        return counts.get(arm, 0) / shown if shown else None


def rates(db: Database, *, points: int = 30, span: int = 20_000) -> list[RateBucket]:
    """Return the recent log in at most ``points`` buckets of consecutive events (oldest first)."""
    row = db.execute("SELECT MAX(seq) FROM events").fetchone()
    if row[0] is None:
        return []
    last = int(row[0])
    first = max(1, last - min(span, MAX_EVENTS) + 1)
    size = bucket_size(last - first + 1, points)
    buckets: dict[int, dict[str, Any]] = {}
    for bucket, explored, shown, clicked, played, since, until in db.execute(
        f"""SELECT (i.event_seq - :first) / :size AS bucket,
                   CASE WHEN i.title_explored + i.artwork_explored > 0 THEN 'explore' ELSE 'exploit' END AS arm,
                   COUNT(*),
                   SUM(CASE WHEN EXISTS (SELECT 1 FROM rewards r WHERE r.event_seq = i.event_seq
                                         AND r.title_id = i.title_id AND ({CLICKED})) THEN 1 ELSE 0 END),
                   SUM(CASE WHEN EXISTS (SELECT 1 FROM rewards r WHERE r.event_seq = i.event_seq
                                         AND r.title_id = i.title_id AND {PLAYED}) THEN 1 ELSE 0 END),
                   MIN(e.created_at), MAX(e.created_at)
            FROM impressions i JOIN events e ON e.seq = i.event_seq
            WHERE i.event_seq >= :first GROUP BY bucket, arm ORDER BY bucket""",
        {"first": first, "size": size},
    ):
        entry = buckets.setdefault(bucket, {"since": since, "until": until, "shown": {}, "clicked": {}, "played": {}})
        entry["since"], entry["until"] = min(entry["since"], since), max(entry["until"], until)
        entry["shown"][explored], entry["clicked"][explored], entry["played"][explored] = shown, clicked, played
    counts = dict(
        db.execute(
            "SELECT (seq - :first) / :size AS bucket, COUNT(*) FROM events WHERE seq >= :first GROUP BY bucket",
            {"first": first, "size": size},
        ).fetchall()
    )
    return [
        RateBucket(
            since=entry["since"],
            until=entry["until"],
            events=int(counts.get(bucket, 0)),
            shown=entry["shown"],
            clicked=entry["clicked"],
            played=entry["played"],
            size=size,
        )
        for bucket, entry in sorted(buckets.items())
    ]


IDLE_FACTOR = 3.0  # a pause this many times a bucket's usual span (and at least IDLE_SECONDS) breaks the line
IDLE_SECONDS = 60.0


def traffic(buckets: Sequence[RateBucket]) -> list[tuple[float, float | None]]:
    """Rows a minute over time: (the middle of each bucket, its rate), with a gap (None) across each idle spell.

    A bucket's rate is its rows over its own span, ``(n - 1)`` intervals between ``n`` rows, so an idle
    spell after it neither lowers it nor draws a line across; a pause longer than ``IDLE_FACTOR`` times
    the usual span (at least ``IDLE_SECONDS``) is drawn as a gap. The newest bucket is left out while
    it holds fewer rows than a full bucket, and a bucket whose rows all came in one instant has no rate:
    a handful of rows says nothing of a rate.
    """
    full = [bucket for index, bucket in enumerate(buckets) if bucket.events >= bucket.size or index < len(buckets) - 1]
    spans = sorted(bucket.until - bucket.since for bucket in full if bucket.until > bucket.since)
    usual = spans[len(spans) // 2] if spans else 0.0
    points: list[tuple[float, float | None]] = []
    for index, bucket in enumerate(full):
        span = bucket.until - bucket.since
        if index and bucket.since - full[index - 1].until > max(IDLE_SECONDS, IDLE_FACTOR * usual):
            points.append(((full[index - 1].until + bucket.since) / 2, None))
        rate = 60.0 * (bucket.events - 1) / span if span > 0 and bucket.events > 1 else None
        points.append(((bucket.since + bucket.until) / 2, rate))
    return points


def text_features(db: Database, *, sample: int = 2000) -> dict[str, Counter[str]]:
    """Return, for each text viewer feature of the ``sample`` most recent events, how often each value came."""
    seen: dict[str, Counter[str]] = {}
    for (text,) in db.execute("SELECT context FROM events ORDER BY seq DESC LIMIT ?", [sample]):
        for key, value in json.loads(text).items():
            if isinstance(value, str):
                seen.setdefault(key, Counter())[value] += 1
    return seen


def common_segment_feature(seen: Mapping[str, Counter[str]], *, most_values: int = 12) -> str | None:
    """Return the text viewer feature that best splits the events into segments (None if none does).

    A feature qualifies with 2 to ``most_values`` distinct values; the one carried by the most events
    wins, then the one with more values.
    """
    ranked = sorted(
        ((sum(values.values()), len(values), key) for key, values in seen.items() if 2 <= len(values) <= most_values),
        reverse=True,
    )
    return ranked[0][2] if ranked else None


def most_shown_titles(db: Database, snapshot: CatalogSnapshot, *, sample: int = 2000, limit: int = 6) -> list[str]:
    """Return the servable titles shown most in recent events (catalog order when nothing was shown)."""
    shown = [
        title_id
        for title_id, _ in db.execute(
            "SELECT title_id, COUNT(*) AS n FROM impressions WHERE event_seq > (SELECT COALESCE(MAX(seq), 0) FROM "
            "events) - ? "
            "GROUP BY title_id ORDER BY n DESC",
            [sample],
        )
        if title_id in snapshot.titles
    ]
    return (shown or list(snapshot.order))[:limit]


def winning_artwork(
    snapshot: CatalogSnapshot, model: ServingModel, *, feature: str, values: Sequence[str], titles: Sequence[str]
) -> list[dict[str, Any]]:
    """For each segment value, each title's greedy artwork and its estimated reward."""
    rows = []
    for value in values:
        shared = features.viewer_shared(user_id=None, features={feature: value})
        picks = []
        for title_id in titles:
            title = snapshot.titles[title_id]
            costs = model.costs(features.artwork_shared(shared, title.action_line), title.artwork_lines)
            best = int(np.argmin(costs))
            picks.append(
                {
                    "title_id": title_id,
                    "artwork_id": title.artwork_ids[best],
                    "estimated_reward": features.reward_of(float(costs[best])),
                    "artworks": len(title.artwork_ids),
                }
            )
        rows.append({"segment": value, "picks": picks})
    return rows
