"""Genre diversity of a row: at most N titles of one genre, optionally at least M genres.

The constraint acts on each slot's draw, not on a finished row: before slot ``i`` is drawn, the titles
that would break it are taken out of the offered set, and the policy's exploration draws from the
titles that remain (``bandits.model.exploration.Allowed``). Which titles remain depends only on the titles
already placed, so the probability the draw computes over the remaining titles is the exact
probability of the pick given the earlier slots, which is what the log records for every slot. The
offered set is logged with the impression when it is smaller than the titles left, and learning and
offline evaluation replay each slot against exactly that set.

A title with several genres counts toward each of them. A title without a genre is never capped and
adds no genre. When the catalog cannot satisfy a constraint (every title left is of a capped genre,
or no title left adds a genre the row still needs), the slot is drawn without that constraint and
the row reports which part was not met; the row is always filled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bandits.errors import Invalid

MAX_LIMIT = 100


class DiversityError(Invalid, ValueError):
    """A diversity setting is not usable."""


@dataclass(frozen=True)
class Diversity:
    """At most ``max_per_genre`` titles of one genre per row; at least ``min_genres`` genres per row (0: no limit)."""

    max_per_genre: int = 0
    min_genres: int = 0

    @property
    def active(self) -> bool:
        """Whether the constraint can change a draw."""
        return self.max_per_genre > 0 or self.min_genres > 0

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-ready data."""
        return {"max_per_genre": self.max_per_genre, "min_genres": self.min_genres}

    @classmethod
    def of(cls, max_per_genre: Any, min_genres: Any, *, where: str = "") -> Diversity:
        """Check the two settings (0: no limit) and return the constraint; ``DiversityError`` names a bad one."""
        for name, value in (("max_per_genre", max_per_genre), ("min_genres", min_genres)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
                raise DiversityError(f"{where}{name}: must be an integer in [0, {MAX_LIMIT}] (0: no limit)")
        return cls(max_per_genre=max_per_genre, min_genres=min_genres)

    def override(self, given: Mapping[str, Any]) -> Diversity:
        """Return this constraint with the keys present in ``given`` replaced (0 turns a part off)."""
        unknown = set(given) - {"max_per_genre", "min_genres"}
        if unknown:
            raise DiversityError(
                f"diversity.{sorted(unknown)[0]}: not a diversity setting (settings: max_per_genre, min_genres)"
            )
        return Diversity.of(
            given.get("max_per_genre", self.max_per_genre), given.get("min_genres", self.min_genres), where="diversity."
        )

    def restriction(self, genres: Sequence[Sequence[str]], slots: int) -> RowRestriction:
        """Return the per-slot restriction for a row of ``slots`` over candidates with these genres."""
        return RowRestriction(self, [tuple(g) for g in genres], slots)


class RowRestriction:
    """The ``Allowed`` callable of one row, remembering which parts of the constraint it had to drop."""

    def __init__(self, diversity: Diversity, genres: list[tuple[str, ...]], slots: int) -> None:
        self.diversity = diversity
        self.genres = genres
        self.slots = slots
        self.unmet: set[str] = set()

    def __call__(self, picked: Sequence[int], left: Sequence[int]) -> list[int]:
        counts: dict[str, int] = {}
        for index in picked:
            for genre in self.genres[index]:
                counts[genre] = counts.get(genre, 0) + 1
        offered = list(left)
        cap = self.diversity.max_per_genre
        full = {genre for genre, count in counts.items() if count >= cap} if cap > 0 else set()
        if full:  # only genres at their cap take titles out of the offer
            capped = [i for i in offered if full.isdisjoint(self.genres[i])]
            if capped:
                offered = capped
            else:
                self.unmet.add("max_per_genre")
        needed = self.diversity.min_genres - len(counts)
        slots_after = self.slots - len(picked) - 1
        if needed > 0 and needed > slots_after:
            # Every slot from here on must bring a genre the row lacks, or the row falls short.
            widening = [i for i in offered if any(g not in counts for g in self.genres[i])]
            if widening:
                offered = widening
            else:
                self.unmet.add("min_genres")
        return offered

    def report(self, picked: Sequence[int]) -> dict[str, Any]:
        """Return the constraint, the row's genre count and whether every part of it was met."""
        covered = {genre for index in picked for genre in self.genres[index]}
        unmet = set(self.unmet)
        if len(covered) < self.diversity.min_genres:
            unmet.add("min_genres")
        return {**self.diversity.as_dict(), "genres_in_row": len(covered), "met": not unmet, "unmet": sorted(unmet)}
