"""Fairness of exposure: who gets shown, against who is in the catalog.

For a window of the log this reports, for any title attribute (genre, year, maturity, or any of the
titles' free-form ``features`` such as a studio, a creator or a country):

- each value's share of the catalog (active titles), of the impressions, and of the position-weighted
  exposure, and the ratio of exposure share to catalog share (1 is proportional);
- the Gini coefficient of impressions and of exposure over the active titles, zeros included
  (0: every title shown equally; near 1: a few titles take everything);
- every title and artwork added during the window, with what it got over its first days against an
  equal share.

Position weighting follows the usual model of attention in a ranked list: slot ``i`` (0-based) gets
``1 / log2(i + 2)``, so the first slot counts 1, the second 0.63, the tenth 0.29. A title with
several values of an attribute (several genres) counts a fraction ``1 / n`` toward each, so shares
add up to one.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from assets.catalog import list_titles
from bandits.errors import Invalid
from bandits.storage import Database

DAY = 86400.0
BUILT_IN = ("genre", "year", "maturity")
NONE = "(none)"
MAX_NEW = 100  # newest titles and artworks followed over their first days


class ExposureError(Invalid, ValueError):
    """A report parameter is not usable."""


def position_weight(position: int) -> float:
    """Attention given to a 0-based slot: ``1 / log2(position + 2)``."""
    return 1.0 / math.log2(position + 2)


def gini(values: Sequence[float]) -> float:
    """Return the Gini coefficient of non-negative values (0 when all are equal or all are zero)."""
    ordered = sorted(values)
    n = len(ordered)
    total = sum(ordered)
    if n == 0 or total <= 0:
        return 0.0
    weighted = sum((2 * (i + 1) - n - 1) * value for i, value in enumerate(ordered))
    return weighted / (n * total)


def attribute_values(title: Mapping[str, Any], attribute: str) -> list[str]:
    """Return a title's values of ``genre``, ``year``, ``maturity`` or ``features.<name>`` (``(none)`` if absent)."""
    if attribute == "genre":
        raw: Any = title["genres"]
    elif attribute in ("year", "maturity"):
        raw = title[attribute]
    else:
        raw = title["features"].get(attribute.removeprefix("features."))
    items = raw if isinstance(raw, list) else [raw]
    values = [str(item) for item in items if item is not None and item != ""]
    return list(dict.fromkeys(values)) or [NONE]


def check_attribute(attribute: str) -> str:
    """Return ``attribute`` if it names something titles have; ``ExposureError`` otherwise."""
    if attribute in BUILT_IN:
        return attribute
    name = attribute.removeprefix("features.")
    if attribute.startswith("features.") and 0 < len(name) <= 64:
        return attribute
    raise ExposureError(f"by: {attribute!r} is not a title attribute (use genre, year, maturity or features.<name>)")


def _titles(db: Database) -> dict[str, dict[str, Any]]:
    return {title["id"]: title for title in list_titles(db, include_retired=True)}


def _shown(db: Database, since: float, until: float) -> tuple[dict[str, int], dict[str, float]]:
    impressions: dict[str, int] = defaultdict(int)
    exposure: dict[str, float] = defaultdict(float)
    for title_id, position, count in db.execute(
        "SELECT i.title_id, i.position, COUNT(*) FROM events e JOIN impressions i ON i.event_seq = e.seq "
        "WHERE e.created_at >= ? AND e.created_at < ? AND e.kind IS NULL GROUP BY i.title_id, i.position",
        [since, until],
    ):
        impressions[title_id] += count
        exposure[title_id] += count * position_weight(position)
    return impressions, exposure


def _breakdown(
    attribute: str,
    titles: Mapping[str, Mapping[str, Any]],
    active: Iterable[str],
    impressions: Mapping[str, int],
    exposure: Mapping[str, float],
) -> list[dict[str, Any]]:
    catalog: dict[str, float] = defaultdict(float)
    shown: dict[str, float] = defaultdict(float)
    exposed: dict[str, float] = defaultdict(float)
    active = list(active)
    for title_id in active:
        values = attribute_values(titles[title_id], attribute)
        for value in values:
            catalog[value] += 1.0 / len(values)
    for title_id, count in impressions.items():
        values = attribute_values(titles[title_id], attribute) if title_id in titles else [NONE]
        for value in values:
            shown[value] += count / len(values)
            exposed[value] += exposure[title_id] / len(values)
    total_catalog, total_shown, total_exposed = len(active), sum(shown.values()), sum(exposed.values())
    rows = []
    for value in sorted(set(catalog) | set(shown), key=lambda v: (-catalog.get(v, 0.0), v)):
        catalog_share = catalog.get(value, 0.0) / total_catalog if total_catalog else 0.0
        exposure_share = exposed.get(value, 0.0) / total_exposed if total_exposed else 0.0
        rows.append(
            {
                "value": value,
                "titles": round(catalog.get(value, 0.0), 6),
                "catalog_share": catalog_share,
                "impressions": round(shown.get(value, 0.0), 6),
                "impression_share": shown.get(value, 0.0) / total_shown if total_shown else 0.0,
                "exposure_share": exposure_share,
                "exposure_ratio": exposure_share / catalog_share if catalog_share else None,
            }
        )
    return rows


def _first_days(
    db: Database, items: Sequence[tuple[str, float]], days: float, until: float, *, column: str, scope: str
) -> dict[str, tuple[int, int]]:
    """For each (id, created_at): its impressions over its first ``days`` and those of its ``scope``."""
    if not items:
        return {}
    values = ",".join("(?, ?, ?)" for _ in items)
    params: list[Any] = []
    for item_id, created in items:
        params += [item_id, created, min(until, created + days * DAY)]
    own = dict(
        db.execute(
            f"WITH n(id, t0, t1) AS (VALUES {values}) SELECT n.id, COUNT(*) FROM n "
            f"JOIN events e ON e.created_at >= n.t0 AND e.created_at < n.t1 AND e.kind IS NULL "
            f"JOIN impressions i ON i.event_seq = e.seq AND i.{column} = n.id GROUP BY n.id",
            params,
        ).fetchall()
    )
    if scope == "all":
        among = dict(
            db.execute(
                f"WITH n(id, t0, t1) AS (VALUES {values}) SELECT n.id, COUNT(*) FROM n "
                f"JOIN events e ON e.created_at >= n.t0 AND e.created_at < n.t1 AND e.kind IS NULL "
                f"JOIN impressions i ON i.event_seq = e.seq GROUP BY n.id",
                params,
            ).fetchall()
        )
    else:  # the impressions of the artwork's own title
        among = dict(
            db.execute(
                f"WITH n(id, t0, t1) AS (VALUES {values}) SELECT n.id, COUNT(*) FROM n "
                "JOIN artworks a ON a.id = n.id JOIN events e ON e.created_at >= n.t0 AND e.created_at < n.t1 AND "
                "e.kind IS NULL "
                f"JOIN impressions i ON i.event_seq = e.seq AND i.title_id = a.title_id GROUP BY n.id",
                params,
            ).fetchall()
        )
    return {item_id: (int(own.get(item_id, 0)), int(among.get(item_id, 0))) for item_id, _ in items}


def report(
    db: Database,
    *,
    days: float = 7.0,
    by: Sequence[str] = ("genre",),
    new_days: float = 7.0,
    now: float | None = None,
) -> dict[str, Any]:
    """Return the exposure report of the last ``days`` days (see the module docstring)."""
    if not 0 < days <= 3650 or not 0 < new_days <= 365:
        raise ExposureError("days must be in (0, 3650] and new_days in (0, 365]")
    until = time.time() if now is None else now
    since = until - days * DAY
    attributes = [check_attribute(name) for name in dict.fromkeys(by)]
    titles = _titles(db)
    active = [tid for tid, title in titles.items() if title["active"]]
    impressions, exposure = _shown(db, since, until)
    total = sum(impressions.values())

    new_titles = sorted(
        ((tid, titles[tid]["created_at"]) for tid in active if titles[tid]["created_at"] >= since),
        key=lambda item: -item[1],
    )[:MAX_NEW]
    title_counts = _first_days(db, new_titles, new_days, until, column="title_id", scope="all")
    fresh_titles = []
    for title_id, created in new_titles:
        own, among = title_counts[title_id]
        share = own / among if among else 0.0
        fair = 1.0 / len(active) if active else 0.0
        fresh_titles.append(
            {
                "title_id": title_id,
                "created_at": created,
                "days_observed": round(min(new_days, (until - created) / DAY), 4),
                "impressions": own,
                "impression_share": share,
                "equal_share": fair,
                "ratio_to_equal": share / fair if fair else None,
            }
        )

    artworks = list(
        db.query(
            "SELECT a.id, a.title_id, a.created_at, (SELECT COUNT(*) FROM artworks b WHERE b.title_id = a.title_id "
            "AND b.active = 1) AS siblings FROM artworks a WHERE a.active = 1 AND a.created_at >= ? "
            "ORDER BY a.created_at DESC LIMIT ?",
            [since, MAX_NEW],
        )
    )
    art_counts = _first_days(
        db, [(row["id"], row["created_at"]) for row in artworks], new_days, until, column="artwork_id", scope="title"
    )
    fresh_artworks = []
    for row in artworks:
        own, among = art_counts[row["id"]]
        share = own / among if among else 0.0
        fair = 1.0 / row["siblings"]
        fresh_artworks.append(
            {
                "artwork_id": row["id"],
                "title_id": row["title_id"],
                "created_at": row["created_at"],
                "days_observed": round(min(new_days, (until - row["created_at"]) / DAY), 4),
                "impressions": own,
                "title_impressions": among,
                "share_of_title": share,
                "equal_share": fair,
                "ratio_to_equal": share / fair,
            }
        )
    return {
        "since": since,
        "until": until,
        "days": days,
        "new_days": new_days,
        "impressions": total,
        "active_titles": len(active),
        "titles_shown": sum(1 for tid in active if impressions.get(tid)),
        "gini": {
            "impressions": gini([float(impressions.get(tid, 0)) for tid in active]),
            "exposure": gini([exposure.get(tid, 0.0) for tid in active]),
        },
        "by": {attribute: _breakdown(attribute, titles, active, impressions, exposure) for attribute in attributes},
        "new_titles": fresh_titles,
        "new_artworks": fresh_artworks,
        "most_shown": [
            {"title_id": tid, "impressions": count, "impression_share": count / total}
            for tid, count in sorted(impressions.items(), key=lambda item: (-item[1], item[0]))[:10]
        ],
    }
