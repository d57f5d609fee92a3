"""The learner's refit of the viewers' taste classes (``bandits.model.tastes``), when enough decisions came.

A refit reads the last ``taste_window_events`` decisions' impressions and whether each was
answered (``bandits.log.responses``), fits ``taste_classes`` classes starting from the latest fit,
and keeps the features of every viewer shown at least ``taste_min_impressions`` artworks in the
window: a viewer seen less is placed by a handful of answers, and the early fits moved the
features the policies learn from more than they told (BENCHMARKS.md, "taste classes"). It runs
once ``taste_refit_events`` decisions came since the last fit and ``taste_refit_seconds`` passed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bandits.deployment import Deployment
from bandits.log.responses import last_event, viewer_responses
from bandits.model import tastes
from bandits.storage import Database, Writes, inline


@dataclass(frozen=True)
class Refit:
    """What one refit did."""

    fit: int  # the kept fit's id
    viewers: int  # viewers in the window
    placed: int  # viewers given features
    impressions: int
    last_event: int


def due(db: Database, config: Deployment, *, now: float | None = None) -> bool:
    """Whether taste classes are on and enough decisions and time passed since the last fit."""
    if config.taste_classes <= 0:
        return False
    row = db.execute("SELECT created_at, last_event FROM taste_fits ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return last_event(db) >= config.taste_refit_events
    now = time.time() if now is None else now
    return (
        now - float(row[0]) >= config.taste_refit_seconds and last_event(db) - int(row[1]) >= config.taste_refit_events
    )


def refit(db: Database, config: Deployment, *, now: float | None = None, writes: Writes = inline) -> Refit | None:
    """Fit the classes on the window of decisions and keep them; None when no viewer was shown anything."""
    through = last_event(db)
    records = tastes.Records.of(
        viewer_responses(db, after=max(0, through - config.taste_window_events), through=through)
    )
    if not records.viewers:
        return None
    previous = tastes.latest(db)
    if previous is not None and previous.classes != config.taste_classes:
        previous = None  # the setting changed: start afresh
    fitted, posterior = tastes.fit(records, classes=config.taste_classes, previous=previous, seed=through)
    placed = tastes.placed(records, posterior, min_impressions=config.taste_min_impressions)
    impressions = int(records.shown.sum())
    fit_id = tastes.save(
        db,
        fitted,
        placed,
        created_at=time.time() if now is None else now,
        viewers=len(records.viewers),
        impressions=impressions,
        last_event=through,
        writes=writes,
    )
    return Refit(
        fit=fit_id, viewers=len(records.viewers), placed=len(placed), impressions=impressions, last_event=through
    )


def refit_if_due(
    db: Database, config: Deployment, *, now: float | None = None, writes: Writes = inline
) -> Refit | None:
    """Refit when ``due``; return what the refit did, or None."""
    return refit(db, config, now=now, writes=writes) if due(db, config, now=now) else None
