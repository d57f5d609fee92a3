"""The join rules: how the rewards credited to a decision become the labels a policy learns.

A reward counts for a policy only if it was credited while the decision's window was open
(``reward_credits``); when the window closes the learner records the rule in force (``pending.labels``:
aggregation, default reward, reward values), and every reader of labels (the learner, offline
evaluation, export) applies that recorded rule here, so that they all see the same labels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bandits.model.policy import ONLINE
from bandits.storage import Database


def closed_labels(db: Database, policy: str, seqs: Sequence[int]) -> dict[int, list[float]]:
    """Return the reward of every shown title, in slot order, of events whose ``policy`` window is closed.

    The credited rewards of each title are combined by the rule recorded when the window closed
    (``aggregate``); a title without a credited reward gets that rule's default reward.
    """
    if not seqs:
        return {}
    marks = ",".join("?" * len(seqs))
    rules = {
        seq: json.loads(text)
        for seq, text in db.execute(
            "SELECT event_seq, labels FROM pending WHERE policy = ? AND closed_at IS NOT NULL AND event_seq IN "
            f"({marks})",
            [policy, *seqs],
        )
    }
    missing = set(seqs) - set(rules)
    if missing:
        raise LookupError(f"{policy}: the windows of events {sorted(missing)[:5]} are not closed")
    shown: dict[int, list[str]] = {}
    for seq, title_id in db.execute(
        f"SELECT event_seq, title_id FROM impressions WHERE event_seq IN ({marks}) ORDER BY event_seq, position", seqs
    ):
        shown.setdefault(seq, []).append(title_id)
    credited: dict[tuple[int, str], list[tuple[float, str | None]]] = {}
    for seq, title_id, value, reward_type in db.execute(
        f"SELECT r.event_seq, r.title_id, r.value, r.type FROM rewards r JOIN reward_credits c ON c.reward_id = r.id "
        f"WHERE r.event_seq IN ({marks}) AND c.policy = ? ORDER BY r.id",
        [*seqs, policy],
    ):
        credited.setdefault((seq, title_id), []).append((value, reward_type))
    labels: dict[int, list[float]] = {}
    for seq in seqs:
        rule = rules[seq]
        if isinstance(rule, list):  # closed by a Marquee that fixed the labels themselves at the close
            labels[seq] = [float(value) for value in rule]
            continue
        values = rule.get("reward_values", {})
        labels[seq] = [
            aggregate(
                valued(credited.get((seq, title_id)), values),
                aggregation=rule["aggregation"],
                default_reward=float(rule["default_reward"]),
            )
            for title_id in shown.get(seq, [])
        ]
    return labels


def valued(rewards: list[tuple[float, str | None]] | None, reward_values: Mapping[str, float]) -> list[float] | None:
    """Return the values of rewards in arrival order: a number as sent, a typed one at the policy's value of its type.

    A type the policy gives no value (a window closed before types existed) keeps the value stored with it.
    """
    if rewards is None:
        return None
    return [float(reward_values.get(kind, value)) if kind is not None else value for value, kind in rewards]


def aggregate(values: list[float] | None, *, aggregation: str, default_reward: float) -> float:
    """Combine the rewards credited to one shown title (``earliest``, ``sum`` or ``max``); the default if none came."""
    if not values:
        return default_reward
    if aggregation == "sum":
        return sum(values)
    if aggregation == "max":
        return max(values)
    return values[0]


def offered_titles(impression: Mapping[str, Any], left: list[int]) -> list[int]:
    """Return the candidate indices a slot drew its title from: those logged, else every one not yet placed."""
    offered = impression.get("offered")
    return list(json.loads(offered)) if offered else list(left)


def mode_of(event: Mapping[str, Any], policy: str) -> str:
    """Return the learning mode ``policy`` was in when it made ``event``'s decision (``events.modes``)."""
    modes = event.get("modes")
    return str(json.loads(modes).get(policy, ONLINE)) if modes else ONLINE
