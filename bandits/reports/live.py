"""What the service is doing now: the recent log in buckets of served rows, and the models serving it.

For the live page (``/live``) and ``GET /v1/live``: each bucket covers a run of consecutive events
and reports how many titles were shown, the share of them that earned a positive reward, and the
share whose title or artwork pick explored (was not the model's best at the time). Watching the
rewarded share rise while the explored share falls is watching the policies learn.

One grouped query over the impressions of the covered events; the span is at most
``MAX_EVENTS`` events, the most recent, so a poll costs the same on a log of any length.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from bandits.model.policy import POLICY_NAMES
from bandits.storage import Database

MAX_EVENTS = 100_000  # the most recent events a view covers
MAX_POINTS = 200


@dataclass(frozen=True)
class Bucket:
    """A run of consecutive events: titles shown, rewarded and explored in them, and when."""

    first_event: int  # ordinal of the bucket's first event in the view's span (0 = the span's first)
    events: int
    shown: int  # impressions (titles shown)
    rewarded: int  # impressions with a positive reward
    title_explored: int
    artwork_explored: int
    impressions_before: int  # impressions shown before this bucket, since the log began
    since: float
    until: float
    partial: bool = False  # the newest bucket, still filling: fewer events than the others, its shares noisy

    @property
    def rewarded_share(self) -> float:
        """Share of the bucket's impressions that earned a positive reward."""
        return self.rewarded / self.shown if self.shown else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the bucket as JSON-ready data, with its shares."""
        data = asdict(self)
        data.update(
            impressions=self.impressions_before + self.shown,
            rewarded_share=self.rewarded_share,
            title_explored_share=self.title_explored / self.shown if self.shown else 0.0,
            artwork_explored_share=self.artwork_explored / self.shown if self.shown else 0.0,
        )
        return data


def bucket_size(events: int, points: int) -> int:
    """Return a round number of events per bucket that spreads ``events`` over at most ``points`` buckets."""
    raw = max(1, math.ceil(events / max(1, points)))
    power = 10 ** int(math.floor(math.log10(raw)))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def snapshot(db: Database, *, points: int = 60, span: int = MAX_EVENTS, now: float | None = None) -> dict[str, Any]:
    """Return the live view: the last ``span`` events in at most ``points`` buckets, and the models serving.

    Raises:
        ValueError: ``points`` or ``span`` out of range.
    """
    if not 1 <= points <= MAX_POINTS:
        raise ValueError(f"points: must be 1 to {MAX_POINTS}")
    if not 1 <= span <= MAX_EVENTS:
        raise ValueError(f"span: must be 1 to {MAX_EVENTS} events")
    now = time.time() if now is None else now
    newest = db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    counts = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    buckets: list[Bucket] = []
    per = 1
    if newest is not None:
        # The span's first event: ``span`` events back from the newest (seq is the rowid, in order).
        row = db.execute(
            "SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?", [min(span, counts) - 1]
        ).fetchone()
        first = int(row[0])
        covered = int(db.execute("SELECT COUNT(*) FROM events WHERE seq >= ?", [first]).fetchone()[0])
        per = bucket_size(covered, points)
        before = int(db.execute("SELECT COUNT(*) FROM impressions WHERE event_seq < ?", [first]).fetchone()[0])
        rows = db.execute(
            """
            WITH span AS (
                SELECT seq, created_at, ROW_NUMBER() OVER (ORDER BY seq) - 1 AS ordinal FROM events WHERE seq >= :first
            ), paid AS (
                SELECT DISTINCT event_seq, title_id FROM rewards WHERE event_seq >= :first AND value > 0
            )
            SELECT s.ordinal / :per AS bucket, COUNT(DISTINCT s.seq), COUNT(i.event_seq),
                   COUNT(p.event_seq), COALESCE(SUM(i.title_explored), 0), COALESCE(SUM(i.artwork_explored), 0),
                   MIN(s.created_at), MAX(s.created_at)
            FROM span s
            LEFT JOIN impressions i ON i.event_seq = s.seq
            LEFT JOIN paid p ON p.event_seq = i.event_seq AND p.title_id = i.title_id
            GROUP BY bucket ORDER BY bucket
            """,
            {"first": first, "per": per},
        ).fetchall()
        for bucket, events, shown, rewarded, title_explored, artwork_explored, since, until in rows:
            buckets.append(
                Bucket(
                    first_event=int(bucket) * per,
                    events=int(events),
                    shown=int(shown),
                    rewarded=int(rewarded),
                    title_explored=int(title_explored),
                    artwork_explored=int(artwork_explored),
                    impressions_before=before,
                    since=float(since),
                    until=float(until),
                    partial=int(events) < per,
                )
            )
            before += int(shown)
    models = {}
    for name in POLICY_NAMES:
        found = db.execute(
            "SELECT version, created_at, events_learned, examples_learned, origin FROM models WHERE policy = ? "
            "ORDER BY version DESC LIMIT 1",
            [name],
        ).fetchone()
        waiting = db.execute("SELECT COUNT(*) FROM pending WHERE policy = ?", [name]).fetchone()[0]
        models[name] = (
            None
            if found is None
            else {
                "version": found[0],
                "published_at": found[1],
                "events_learned": found[2],
                "examples_learned": found[3],
                "origin": found[4],
                "events_waiting": int(waiting),
            }
        )
    last_minute = db.execute("SELECT COUNT(*) FROM events WHERE created_at >= ?", [now - 60.0]).fetchone()[0]
    return {
        "generated_at": now,
        "events": int(counts),
        "events_per_bucket": per,
        "rows_last_minute": int(last_minute),
        "buckets": [bucket.as_dict() for bucket in buckets],
        "models": models,
    }
