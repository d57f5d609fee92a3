"""Logged decisions out of Marquee: VW DSJson and flat JSON lines, one line per decision.

DSJson is the format Vowpal Wabbit's own tools (and Azure Personalizer's logs) use for contextual
bandit decisions: the features as JSON namespaces, the chosen action, its cost and probability.
Marquee writes each VW text token as a JSON feature VW hashes to the same feature: a token ``name``
becomes ``"name": true`` and ``name:value`` becomes ``"name": value``, in a namespace of the same
name, so a workspace reading the export sees exactly the features Marquee's policies learned from.

The flat JSON-lines form keeps the VW text lines themselves, with ids and the viewer's features, for
tools that are not VW.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from bandits.log.rounds import Rounds
from bandits.vw import features

FORMATS = ("dsjson", "jsonl")


def namespaces(line: str) -> dict[str, dict[str, Any]]:
    """Return the namespaces of a VW text line (without label or ``shared``) as DSJson feature objects.

    Repeated tokens add up, as they do when VW reads the text line.
    """
    found: dict[str, dict[str, Any]] = {}
    for name, tokens in features.sections(line):
        group = found.setdefault(name, {})
        for token in tokens:
            feature, value = features.token_value(token)
            number = 1.0 if value is None else value
            if feature in group:
                previous = group[feature]
                group[feature] = (1.0 if previous is True else previous) + number
            else:
                group[feature] = True if value is None else number
    return found


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dsjson_line(rounds: Rounds, i: int) -> str:
    """Return round ``i`` as one DSJson line.

    ``a`` and ``p`` hold the chosen action (1-based) and its probability only: Marquee logs the
    probability of the action it chose, not its whole distribution.
    """
    chosen = int(rounds.chosen[i])
    probability = min(1.0, max(features.MIN_PROBABILITY, float(rounds.pscore[i])))
    start = int(rounds.offsets[i])
    context: dict[str, Any] = dict(namespaces(features.without_shared(rounds.shared[i])))
    context["_multi"] = [namespaces(line) for line in rounds.actions(i)]
    record = {
        "_label_cost": features.cost_of(float(rounds.reward[i])),
        "_label_probability": probability,
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
        "Timestamp": _timestamp(float(rounds.created_at[i])),
        "Version": "1",
        "EventId": f"{rounds.event_ids[i]}/{int(rounds.position[i])}",
        "a": [chosen + 1],
        "p": [probability],
        "c": context,
        "marquee": {
            "policy": rounds.policy,
            "event_id": rounds.event_ids[i],
            "position": int(rounds.position[i]),
            "action_ids": rounds.action_ids[start : int(rounds.offsets[i + 1])],
            "reward": float(rounds.reward[i]),
            "viewer": rounds.contexts[i],
        },
    }
    return json.dumps(record, separators=(",", ":"))


def jsonl_line(rounds: Rounds, i: int) -> str:
    """Return round ``i`` as one flat JSON line with the VW text lines as logged."""
    start, stop = int(rounds.offsets[i]), int(rounds.offsets[i + 1])
    record = {
        "policy": rounds.policy,
        "event_id": rounds.event_ids[i],
        "position": int(rounds.position[i]),
        "timestamp": float(rounds.created_at[i]),
        "viewer": rounds.contexts[i],
        "shared": rounds.shared[i],
        "actions": [
            {"id": action_id, "features": line}
            for action_id, line in zip(rounds.action_ids[start:stop], rounds.actions(i))
        ],
        "chosen": int(rounds.chosen[i]),
        "probability": float(rounds.pscore[i]),
        "reward": float(rounds.reward[i]),
    }
    return json.dumps(record, separators=(",", ":"))


def lines(rounds: Rounds, fmt: str) -> Iterator[str]:
    """Yield every round in ``fmt`` (``dsjson`` or ``jsonl``), oldest first, each line ending in a newline."""
    if fmt not in FORMATS:
        raise ValueError(f"format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    write = dsjson_line if fmt == "dsjson" else jsonl_line
    for i in range(len(rounds)):
        yield write(rounds, i) + "\n"
