"""How often a model has learned each action: what the exploration bonus (``bandits.model.exploration``) rests on.

A model version carries, beside VW's weights, the number of labelled examples it learned for each
action line: a title shown in a slot and learned counts once for that title's line, an artwork
once for its line. The counts travel with the version (``models.tried``), so that a decision and its
logged probability depend only on the serving version, as the exploration rate does on
``examples_learned``. An action is known by a digest of its line, so that a catalog of any size costs
a few bytes a title; a title whose features change is a new line, which the model has not learned
either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence

from bandits.vw import features


def action_key(line: str) -> str:
    """Return the key of an (unlabelled) action line: 64 bits of its BLAKE2b digest, as hex."""
    return hashlib.blake2b(line.encode("utf-8"), digest_size=8).hexdigest()


class Tried:
    """Per-action counts of labelled examples learned; ``None`` from ``loads`` when a version has none."""

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self.counts: dict[str, int] = dict(counts or {})
        self._by_line: dict[str, int] = {}  # lines already looked up (a catalog's lines repeat)

    def learn(self, example: Sequence[str]) -> None:
        """Count the labelled action lines of one multi-line example (its shared line first)."""
        for line in example[1:]:
            if line.startswith("0:"):
                self.learn_action(features.unlabeled(line))

    def learn_action(self, line: str) -> None:
        """Count one labelled example learned for the action whose unlabelled line is ``line``."""
        key = action_key(line)
        self.counts[key] = self.counts.get(key, 0) + 1
        self._by_line.pop(line, None)

    def learn_all(self, examples: Iterable[Sequence[str]]) -> None:
        """Count every example's labelled action lines."""
        for example in examples:
            self.learn(example)

    def of(self, lines: Sequence[str]) -> list[int]:
        """Return how often each action line was learned, in the order given."""
        known, counts = self._by_line, self.counts
        found = []
        for line in lines:
            count = known.get(line)
            if count is None:
                count = known[line] = counts.get(action_key(line), 0)
                if len(known) > 65_536:
                    known.clear()
            found.append(count)
        return found

    def copy(self) -> Tried:
        """Return an independent copy."""
        return Tried(self.counts)

    def dumps(self) -> str:
        """Return the counts as JSON, keys sorted (what ``models.tried`` stores)."""
        return json.dumps(self.counts, sort_keys=True, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | None) -> Tried | None:
        """Return stored counts; ``None`` for a version that has none (uploaded, or older than the counts)."""
        if text is None:
            return None
        found = json.loads(text)
        if not isinstance(found, dict) or not all(isinstance(v, int) and v >= 0 for v in found.values()):
            raise ValueError("tried: stored counts must map action keys to counts of 0 or more")
        return cls(found)
