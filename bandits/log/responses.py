"""What viewers responded to: each shown artwork of a row, by viewer, with whether a reward came for it.

Taste classes (``bandits.model.tastes``) are fitted on this. An impression counts as answered when
any reward was reported for its title in its decision: a typed reward of any type (a click, a
play, a thumbs down: the artwork drew the viewer in), or a number above 0 (a client that reports
0 for "nothing happened" has not been answered). Rows over inline actions, decisions without a
viewer id and deferred decisions never activated (not shown) are left out.
"""

from __future__ import annotations

from collections.abc import Iterator

from bandits.storage import Database


def last_event(db: Database) -> int:
    """Return the sequence number of the newest decision (0 for an empty log)."""
    return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])


def viewer_responses(db: Database, *, after: int, through: int) -> Iterator[tuple[str, str, bool]]:
    """Yield (viewer id, artwork id, answered) for every impression of decisions ``after`` < seq <= ``through``."""
    for user_id, artwork_id, answered in db.execute(
        "SELECT e.user_id, i.artwork_id, EXISTS (SELECT 1 FROM rewards r WHERE r.event_seq = i.event_seq "
        "AND r.title_id = i.title_id AND (r.type IS NOT NULL OR r.value > 0)) "
        "FROM events e JOIN impressions i ON i.event_seq = e.seq "
        "WHERE e.seq > ? AND e.seq <= ? AND e.kind IS NULL AND e.user_id IS NOT NULL "
        "AND (e.deferred = 0 OR e.activated_at IS NOT NULL)",
        [after, through],
    ):
        yield user_id, artwork_id, bool(answered)
