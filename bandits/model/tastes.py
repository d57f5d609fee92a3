"""Taste classes: viewers grouped by the artworks they respond to, fitted by EM on what they were shown.

A viewer is seen a few dozen times, too few to learn their own taste for looks artwork by artwork,
yet viewers come in kinds: those who answer dark, high-contrast posters, those who answer faces.
A mixture of ``classes`` kinds explains each viewer's record (for every artwork: how often it was
shown to them, and how often they responded) as drawn from one kind's response rates:

    P(record | class k) = prod over artworks a of rate[k, a] ** responded * (1 - rate[k, a]) ** (shown - responded)

EM finds the rates and the classes' shares from every viewer's record at once, so a viewer with
twenty impressions is placed by what thousands of others with similar answers did. Each viewer's
posterior over the classes then goes with their requests (``features_of``: the shared line's ``K``
namespace, which the policies' default options cross with the title, the genres and the artwork),
and the policies learn what each kind likes from everyone in it.

A refit starts from the previous fit (``previous``), so that class ``k`` stays the same kind from
fit to fit and what a model learned about it stays true; artworks the previous fit did not know
start at their overall rate. Every rate is shrunk toward the artwork's overall rate by
``PRIOR_SHOWS`` pseudo-impressions, so that an artwork shown rarely does not decide a class.

The learner fits the classes (``bandits.learn.tastes``) and keeps, here, the latest fits
(``taste_fits``: the rates, for the next refit to start from) and each viewer's features
(``viewer_tastes``), which a rank reads by the viewer's id (``of_viewer``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from bandits.storage import Database, Writes, inline, write_transaction

PRIOR_SHOWS = 2.0  # pseudo-impressions at the artwork's overall rate added to every class's count
RATE_BOUNDS = (1e-4, 1.0 - 1e-4)
FEATURE_PREFIX = "c"  # a class's feature in the shared line's K namespace: c0, c1, ...
FEATURE_FLOOR = 0.05  # a class under this posterior share is left out of a viewer's features
FITS_KEPT = 5  # fits kept in ``taste_fits``, newest first


@dataclass(frozen=True)
class Records:
    """Viewers' records as (viewer, artwork) pairs with counts; every array has shape (pairs,)."""

    viewers: tuple[str, ...]  # viewer ids, indexed by ``viewer``
    arms: tuple[str, ...]  # artwork ids, indexed by ``arm``
    viewer: np.ndarray  # int: the pair's viewer
    arm: np.ndarray  # int: the pair's artwork
    shown: np.ndarray  # float: times the artwork was shown to the viewer
    responded: np.ndarray  # float: times the viewer responded to it (at most ``shown``)

    @classmethod
    def of(cls, impressions: Iterable[tuple[str, str, bool]]) -> Records:
        """Count (viewer id, artwork id, responded) impressions into records."""
        viewers: dict[str, int] = {}
        arms: dict[str, int] = {}
        viewer: list[int] = []
        arm: list[int] = []
        answers: list[float] = []
        for viewer_id, artwork_id, responded in impressions:
            viewer.append(viewers.setdefault(viewer_id, len(viewers)))
            arm.append(arms.setdefault(artwork_id, len(arms)))
            answers.append(1.0 if responded else 0.0)
        width = max(1, len(arms))
        pairs, pair = np.unique(
            np.array(viewer, dtype=np.int64) * width + np.array(arm, dtype=np.int64), return_inverse=True
        )
        return cls(
            viewers=tuple(viewers),
            arms=tuple(arms),
            viewer=pairs // width,
            arm=pairs % width,
            shown=np.bincount(pair, minlength=len(pairs)).astype(float),
            responded=np.bincount(pair, weights=np.array(answers), minlength=len(pairs)),
        )


@dataclass(frozen=True)
class TasteClasses:
    """A fitted mixture: each class's response rate for each artwork, and the classes' shares."""

    arms: tuple[str, ...]  # artwork ids, the columns of ``rates``
    rates: np.ndarray  # (classes, arms): probability that a viewer of the class responds to the artwork shown
    shares: np.ndarray  # (classes,): the classes' shares of the viewers, summing to 1

    @property
    def classes(self) -> int:
        """Return the number of classes."""
        return int(self.shares.shape[0])


def fit(
    records: Records,
    *,
    classes: int,
    previous: TasteClasses | None = None,
    iterations: int = 30,
    seed: int = 0,
) -> tuple[TasteClasses, np.ndarray]:
    """Fit ``classes`` taste classes to the records; return them and each viewer's posterior.

    The posterior has shape (viewers, classes), rows in ``records.viewers``' order, each summing to
    1. ``previous`` (a fit with as many classes) is the starting point; without it the rates start
    at each artwork's overall rate, spread at random by ``seed``.

    Raises:
        ValueError: ``classes`` or ``iterations`` is below 1, ``previous`` has another number of
            classes, or a record responds more often than it was shown.
    """
    if classes < 1:
        raise ValueError(f"classes: at least 1 (got {classes})")
    if iterations < 1:
        raise ValueError(f"iterations: at least 1 (got {iterations})")
    if previous is not None and previous.classes != classes:
        raise ValueError(f"previous: {previous.classes} classes, not {classes}")
    if np.any(records.responded > records.shown) or np.any(records.responded < 0):
        raise ValueError("records: a viewer responded to an artwork more often than it was shown")
    arms = len(records.arms)
    shown_by_arm = np.bincount(records.arm, weights=records.shown, minlength=arms)
    responded_by_arm = np.bincount(records.arm, weights=records.responded, minlength=arms)
    overall = np.clip((responded_by_arm + 1.0) / (shown_by_arm + 2.0), *RATE_BOUNDS)
    rates, shares = _start(records, overall, classes=classes, previous=previous, seed=seed)
    posterior = np.full((classes, len(records.viewers)), 1.0 / classes)
    for _ in range(iterations):
        posterior = _posterior(records, rates, shares)
        weights = posterior[:, records.viewer]  # (classes, pairs)
        shown = _summed(records.arm, weights * records.shown, arms)
        responded = _summed(records.arm, weights * records.responded, arms)
        rates = np.clip((responded + PRIOR_SHOWS * overall) / (shown + PRIOR_SHOWS), *RATE_BOUNDS)
        shares = (posterior.sum(axis=1) + 1.0) / (len(records.viewers) + classes)
    posterior = _posterior(records, rates, shares)
    return TasteClasses(arms=records.arms, rates=rates, shares=shares), np.ascontiguousarray(posterior.T)


def features_of(posterior: Sequence[float], *, floor: float = FEATURE_FLOOR) -> dict[str, float]:
    """Return a viewer's request features for their posterior over the classes (shares under ``floor`` left out)."""
    return {f"{FEATURE_PREFIX}{k}": round(float(p), 2) for k, p in enumerate(posterior) if p >= floor}


def placed(records: Records, posterior: np.ndarray, *, min_impressions: float) -> dict[str, dict[str, float]]:
    """Return the features of each viewer of the records shown at least ``min_impressions`` artworks."""
    shown = np.bincount(records.viewer, weights=records.shown, minlength=len(records.viewers))
    return {
        viewer: features_of(row)
        for viewer, row, count in zip(records.viewers, posterior.tolist(), shown.tolist())
        if count >= min_impressions
    }


def of_viewer(db: Database, user_id: str) -> dict[str, float]:
    """Return the viewer's taste-class features from the latest fit that placed them (none: ``{}``)."""
    row = db.execute("SELECT features FROM viewer_tastes WHERE user_id = ?", [user_id]).fetchone()
    return {} if row is None else dict(json.loads(row[0]))


def latest(db: Database) -> TasteClasses | None:
    """Return the latest fit kept, or None before the first."""
    row = db.execute("SELECT arms, rates, shares FROM taste_fits ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    return TasteClasses(
        arms=tuple(json.loads(row[0])),
        rates=np.array(json.loads(row[1]), dtype=float),
        shares=np.array(json.loads(row[2])),
    )


def fits(db: Database, *, limit: int = FITS_KEPT) -> list[dict[str, object]]:
    """Return the latest fits kept, newest first: when, on what, and how many viewers each placed."""
    return [
        {
            "fit": row["id"],
            "created_at": row["created_at"],
            "classes": row["classes"],
            "artworks": len(json.loads(row["arms"])),
            "viewers_fitted": row["viewers"],
            "viewers_placed": row["placed"],
            "impressions": row["impressions"],
            "last_event": row["last_event"],
            "shares": [round(share, 4) for share in json.loads(row["shares"])],
        }
        for row in db.query(
            "SELECT id, created_at, classes, arms, shares, viewers, placed, impressions, last_event FROM taste_fits "
            "ORDER BY id DESC LIMIT ?",
            [limit],
        )
    ]


def save(
    db: Database,
    fitted: TasteClasses,
    viewer_features: Mapping[str, Mapping[str, float]],
    *,
    created_at: float,
    viewers: int,
    impressions: int,
    last_event: int,
    chunk: int = 5000,
    writes: Writes = inline,
) -> int:
    """Keep a fit and the features of the viewers it placed (``viewer_features``); return the fit's id.

    The viewers' rows are written ``chunk`` at a time, each chunk its own short transaction (a rank
    reads one viewer's row, from this fit or the one before); the rows of viewers this fit did not
    place go last, with fits older than the latest ``FITS_KEPT``. ``writes`` runs each transaction.
    """

    def keep_fit() -> int:
        with write_transaction(db):
            db.execute(
                "INSERT INTO taste_fits (created_at, classes, arms, rates, shares, viewers, placed, impressions, "
                "last_event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    created_at,
                    fitted.classes,
                    json.dumps(list(fitted.arms)),
                    json.dumps(np.round(fitted.rates, 6).tolist()),
                    json.dumps(fitted.shares.tolist()),
                    viewers,
                    len(viewer_features),
                    impressions,
                    last_event,
                ],
            )
            return int(db.execute("SELECT MAX(id) FROM taste_fits").fetchone()[0])

    def place(rows: list[tuple[str, int, str]]) -> None:
        with write_transaction(db):
            db.executemany(
                "INSERT INTO viewer_tastes (user_id, fit, features) VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE "
                "SET fit = excluded.fit, features = excluded.features",
                rows,
            )

    def forget_older(fit_id: int) -> None:
        with write_transaction(db):
            db.execute("DELETE FROM viewer_tastes WHERE fit < ?", [fit_id])
            db.execute(
                "DELETE FROM taste_fits WHERE id NOT IN (SELECT id FROM taste_fits ORDER BY id DESC LIMIT ?)",
                [FITS_KEPT],
            )

    fit_id = writes(keep_fit)
    rows = [
        (user_id, fit_id, json.dumps(dict(found), separators=(",", ":"))) for user_id, found in viewer_features.items()
    ]
    for start in range(0, len(rows), chunk):
        writes(partial(place, rows[start : start + chunk]))
    writes(partial(forget_older, fit_id))
    return fit_id


def _start(
    records: Records, overall: np.ndarray, *, classes: int, previous: TasteClasses | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the starting rates (classes, arms) and shares (classes,)."""
    if previous is None:
        spread = np.random.default_rng(seed).normal(0.0, 0.3, size=(classes, len(records.arms)))
        return np.clip(overall[None, :] * np.exp(spread), *RATE_BOUNDS), np.full(classes, 1.0 / classes)
    rates = np.repeat(overall[None, :], classes, axis=0)
    known = {arm: column for column, arm in enumerate(previous.arms)}
    for column, arm in enumerate(records.arms):
        if arm in known:
            rates[:, column] = previous.rates[:, known[arm]]
    return rates, previous.shares.copy()


def _posterior(records: Records, rates: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Return every viewer's posterior over the classes, shape (classes, viewers)."""
    per_pair = (
        records.responded * np.log(rates)[:, records.arm]
        + (records.shown - records.responded) * np.log1p(-rates)[:, records.arm]
    )
    log_posterior = np.log(shares)[:, None] + _summed(records.viewer, per_pair, len(records.viewers))
    log_posterior -= log_posterior.max(axis=0, keepdims=True)
    posterior = np.exp(log_posterior)
    return posterior / posterior.sum(axis=0, keepdims=True)


def _summed(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Return each row of ``values`` (classes, pairs) summed by ``index``, shape (classes, size)."""
    return np.stack([np.bincount(index, weights=row, minlength=size) for row in values])
