"""The event log: decisions, activations and rewards, each committed in one transaction.

Reward windows are decided inside write transactions, so the accounting is exact: a reward is
credited to a policy only while that policy's ``pending`` row for the event is open and its window
has not passed; the learner closes windows in a write transaction of its own. A reward is either
credited before the close (and learned) or refused credit after it (stored, never learned).
"""

from __future__ import annotations

import functools
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bandits.decide.row import RowDecision
from bandits.errors import Conflict, NotFound
from bandits.model.policy import ONLINE, POLICY_NAMES, ROW_POLICIES, PolicyConfig
from bandits.storage import Database, IntegrityError, unique_violation, write_transaction
from bandits.vw import blocks


def time_ordered_uuid(now: float | None = None) -> uuid.UUID:
    """Return a UUID of version 7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Event ids the service makes are these, so that ids made later sort later: the unique index on
    ``events.id`` then grows at its end, as the table does, instead of taking each new id on a random
    page of an index that outgrows memory. Ids made in the same millisecond differ by their random bits.
    """
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    random = int.from_bytes(os.urandom(10), "big")
    rand_a, rand_b = random >> 68, random & ((1 << 62) - 1)  # 12 and 62 random bits
    return uuid.UUID(int=millis << 80 | 7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)


def new_event_id() -> str:
    """Return a new id for a decision whose client chose none: ``e-`` and a time-ordered UUID's hex digits."""
    return f"e-{time_ordered_uuid().hex}"


@functools.lru_cache(maxsize=4096)
def ids_json(ids: tuple[str, ...]) -> str:
    """Return a list of ids as JSON; a catalog's lists (its titles, each title's artworks) repeat from row
    to row, so they are written once (a 5-id list: 0.3 us looked up against 1.7 us written)."""
    return json.dumps(ids)


def logged_ids(ids: tuple[str, ...], block: blocks.Block) -> str:
    """Return what the log writes for a decision's id list: ``blocks.IN_BLOCK`` when its block carries it."""
    return blocks.IN_BLOCK if block.carries(ids) else ids_json(ids)


def log_decision(
    db: Database,
    *,
    database: str,
    event_id: str,
    decision: RowDecision,
    user_id: str | None,
    context: Mapping[str, Any],
    deferred: bool,
    policies: Mapping[str, PolicyConfig],
    now: float | None = None,
    kind: str | None = None,
    learned_by: Sequence[str] = ROW_POLICIES,
) -> int:
    """Store a decision with its impressions and open its reward windows; return the event's sequence number.

    The VW lines of the candidate titles and of each slot's artworks are stored as used, as content-
    addressed blocks (``bandits.vw.blocks``), so that learning sees exactly the features the decision saw.
    """
    now = time.time() if now is None else now
    modes = {name: policies[name].learning_mode for name in learned_by if policies[name].learning_mode != ONLINE}
    # Only new rows, which no reward or learner reads before the answer leaves: on PostgreSQL, decisions
    # commit side by side, each without waiting for the deployment's write lock.
    with write_transaction(db, appends_only=True):
        inserted = blocks.store(db, database, [decision.candidate_block, *(s.artwork_block for s in decision.slots)])
        try:
            cursor = db.execute(
                "INSERT INTO events (id, created_at, user_id, context, candidates, title_shared, title_block, "
                "model_versions, deferred, activated_at, kind, modes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "RETURNING seq",
                [
                    event_id,
                    now,
                    user_id,
                    json.dumps(context, sort_keys=True),
                    logged_ids(decision.candidate_ids, decision.candidate_block),
                    decision.shared_line,
                    decision.candidate_block.key,
                    json.dumps(dict(decision.model_versions)),
                    int(deferred),
                    None if deferred else now,
                    kind,
                    json.dumps(modes, sort_keys=True) if modes else None,
                ],
            )
        except IntegrityError as exc:
            if not unique_violation(exc, "events", "id"):
                raise
            raise Conflict(f"event {event_id!r} already exists; event ids are single-use") from None
        seq = int(cursor.fetchone()[0])
        db.executemany(
            "INSERT INTO impressions (event_seq, position, title_id, title_index, title_prob, title_explored, "
            "artwork_id, artwork_ids, artwork_block, artwork_index, artwork_prob, artwork_explored, offered, "
            "title_greedy, artwork_greedy, shared, slot_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    seq,
                    s.position,
                    s.title_id,
                    s.title_index,
                    s.title_prob,
                    int(s.title_explored),
                    s.artwork_id,
                    logged_ids(s.artwork_ids, s.artwork_block),
                    s.artwork_block.key,
                    s.artwork_index,
                    s.artwork_prob,
                    int(s.artwork_explored),
                    None if s.title_offered is None else json.dumps(s.title_offered),
                    s.title_lead or None,
                    s.artwork_lead or None,
                    s.shared_line or None,
                    s.slot_id or None,
                )
                for s in decision.slots
            ],
        )
        db.executemany(
            "INSERT INTO pending (policy, event_seq, due_at) VALUES (?, ?, ?)",
            [(name, seq, None if deferred else now + policies[name].reward_wait) for name in learned_by],
        )
    blocks.remember(database, inserted)
    return seq


def _event(db: Database, event_id: str) -> tuple[int, int, float | None]:
    row = db.execute("SELECT seq, deferred, activated_at FROM events WHERE id = ?", [event_id]).fetchone()
    if row is None:
        raise NotFound(f"event {event_id!r} does not exist")
    return int(row[0]), int(row[1]), row[2]


def activate(
    db: Database, *, event_id: str, policies: Mapping[str, PolicyConfig], now: float | None = None
) -> dict[str, Any]:
    """Mark a deferred event as shown: its reward windows start now. Activating twice changes nothing."""
    now = time.time() if now is None else now
    with write_transaction(db):
        seq, deferred, activated_at = _event(db, event_id)
        if activated_at is not None:
            return {"event_id": event_id, "activated_at": activated_at, "already_active": True}
        db.execute("UPDATE events SET activated_at = ? WHERE seq = ?", [now, seq])
        for name in POLICY_NAMES:
            db.execute(
                "UPDATE pending SET due_at = ? WHERE policy = ? AND event_seq = ? AND closed_at IS NULL",
                [now + policies[name].reward_wait, name, seq],
            )
    return {"event_id": event_id, "activated_at": now, "already_active": False}


@dataclass(frozen=True)
class RewardReceipt:
    """What happened to a posted reward."""

    reward_id: int
    event_id: str
    title_id: str
    value: float
    received_at: float
    credited: tuple[str, ...]  # policies whose window was open
    replayed: bool = False
    type: str | None = None  # the outcome, for a typed reward
    not_credited: Mapping[str, str] = field(default_factory=dict)  # policy -> why its decision did not get it

    def as_dict(self) -> dict[str, Any]:
        """Return the receipt as JSON-ready data; a reward no policy took says why in ``not_credited``."""
        data = {
            "reward_id": self.reward_id,
            "event_id": self.event_id,
            "title_id": self.title_id,
            "value": self.value,
            "received_at": self.received_at,
            "credited_policies": list(self.credited),
            "late": not self.credited,
            "replayed": self.replayed,
            "type": self.type,
        }
        if self.not_credited:
            data["not_credited"] = dict(self.not_credited)
        return data


def record_reward(
    db: Database,
    *,
    event_id: str,
    title_id: str,
    value: float,
    idempotency_key: str | None,
    policies: Mapping[str, PolicyConfig],
    now: float | None = None,
    reward_type: str | None = None,
) -> RewardReceipt:
    """Store a reward and credit it to every policy whose window for the event is still open.

    A typed reward (``reward_type``) is stored with its type; each policy values it by its own
    ``reward_values`` when it learns (``bandits.log.labels.closed_labels``), ``value`` is for display.
    """
    now = time.time() if now is None else now
    with write_transaction(db):
        seq, deferred, activated_at = _event(db, event_id)
        if idempotency_key is not None:
            previous = db.execute(
                "SELECT id, event_seq, title_id, value, received_at, type FROM rewards WHERE idempotency_key = ?",
                [idempotency_key],
            ).fetchone()
            if previous is not None:
                if (previous[1], previous[2], previous[5]) != (seq, title_id, reward_type) or (
                    reward_type is None and previous[3] != value
                ):
                    raise Conflict("Idempotency-Key was already used for a different reward")
                credited = tuple(
                    row[0]
                    for row in db.execute(
                        "SELECT policy FROM reward_credits WHERE reward_id = ? ORDER BY policy", [previous[0]]
                    )
                )
                return RewardReceipt(
                    reward_id=previous[0],
                    event_id=event_id,
                    title_id=title_id,
                    value=previous[3],
                    received_at=previous[4],
                    credited=credited,
                    replayed=True,
                    type=reward_type,
                )
        if deferred and activated_at is None:
            raise Conflict(
                f"event {event_id!r} is deferred and was never activated: activate it when it is shown, "
                "then report its rewards"
            )
        shown = db.execute("SELECT 1 FROM impressions WHERE event_seq = ? AND title_id = ?", [seq, title_id]).fetchone()
        if shown is None:
            raise Conflict(f"title {title_id!r} was not shown in event {event_id!r}")
        reward_id = int(
            db.execute(
                "INSERT INTO rewards (event_seq, title_id, value, received_at, idempotency_key, type) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                [seq, title_id, value, now, idempotency_key, reward_type],
            ).fetchone()[0]
        )
        newly_credited: list[str] = []
        missed: dict[str, str] = {}
        for name in POLICY_NAMES:
            row = db.execute(
                "SELECT due_at, closed_at FROM pending WHERE policy = ? AND event_seq = ?", [name, seq]
            ).fetchone()
            if row is None or row[1] is not None or now > row[0]:  # learned already, or the window has passed
                reason = _missed(db, name, seq, row, now=now, wait=policies[name].reward_wait)
                if reason:
                    missed[name] = reason
                continue
            db.execute("INSERT INTO reward_credits (reward_id, policy) VALUES (?, ?)", [reward_id, name])
            newly_credited.append(name)
            if policies[name].learn_on_first_reward and row[0] > now:
                db.execute("UPDATE pending SET due_at = ? WHERE policy = ? AND event_seq = ?", [now, name, seq])
    return RewardReceipt(
        reward_id=reward_id,
        event_id=event_id,
        title_id=title_id,
        value=value,
        received_at=now,
        credited=tuple(newly_credited),
        type=reward_type,
        not_credited=missed,
    )


def _missed(
    db: Database, policy: str, seq: int, pending: Sequence[Any] | None, *, now: float, wait: float
) -> str | None:
    """Say why ``policy`` did not take a reward for event ``seq`` (None: the event is not its decision)."""
    if pending is not None:
        closed = max(0.0, now - float(pending[0]))
        return (
            f"its reward window closed {closed:.1f} s before this reward arrived (reward_wait {wait:g} s): the "
            "decision was learned, or is being learned, without it"
        )
    learned = db.execute("SELECT version FROM learned WHERE policy = ? AND event_seq = ?", [policy, seq]).fetchone()
    if learned is None:
        return None
    return (
        f"its reward window had closed (reward_wait {wait:g} s) and the decision was learned, into model "
        f"version {learned[0]}, before this reward arrived"
    )


def get_event(db: Database, event_id: str) -> dict[str, Any]:
    """Return an event as logged: context, slots with probabilities, rewards, and learning state."""
    rows = list(db.query("SELECT * FROM events WHERE id = ?", [event_id]))
    if not rows:
        raise NotFound(f"event {event_id!r} does not exist")
    event = rows[0]
    candidates = blocks.listed(
        event["candidates"], blocks.load_blocks(db, [event["title_block"]])[event["title_block"]]
    )
    slots = []
    for r in db.query("SELECT * FROM impressions WHERE event_seq = ? ORDER BY position", [event["seq"]]):
        slot = {
            "position": r["position"],
            "title_id": r["title_id"],
            "artwork_id": r["artwork_id"],
            "title_probability": r["title_prob"],
            "artwork_probability": r["artwork_prob"],
            "title_explored": bool(r["title_explored"]),
            "artwork_explored": bool(r["artwork_explored"]),
        }
        if r["offered"]:  # a diversity constraint or a multi-slot ranking narrowed this slot's draw to these
            slot["offered_title_ids"] = [candidates[index] for index in json.loads(r["offered"])]
        if r["slot_id"]:
            slot["slot_id"] = r["slot_id"]
        slots.append(slot)
    decided = sorted(json.loads(event["model_versions"]))
    credits: dict[int, list[str]] = {}
    for r in db.query(
        "SELECT c.reward_id, c.policy FROM reward_credits c JOIN rewards r ON r.id = c.reward_id "
        "WHERE r.event_seq = ? ORDER BY c.reward_id, c.policy",
        [event["seq"]],
    ):
        credits.setdefault(r["reward_id"], []).append(r["policy"])
    rewards = [
        {
            "title_id": r["title_id"],
            "value": r["value"],
            "type": r["type"],
            "received_at": r["received_at"],
            "credited_policies": credits.get(r["id"], []),
            "late_for": [p for p in decided if p not in credits.get(r["id"], [])],
        }
        for r in db.query(
            "SELECT id, title_id, value, type, received_at FROM rewards WHERE event_seq = ? ORDER BY id",
            [event["seq"]],
        )
    ]
    learned = {
        r["policy"]: r["version"]
        for r in db.query(  # the policies named, so that the lookup is by the table's key, not a scan
            f"SELECT policy, version FROM learned WHERE policy IN ({', '.join('?' * len(POLICY_NAMES))}) "
            "AND event_seq = ?",
            [*POLICY_NAMES, event["seq"]],
        )
    }
    return {
        "event_id": event["id"],
        "created_at": event["created_at"],
        "user_id": event["user_id"],
        "context": json.loads(event["context"]),
        "candidates": candidates,
        "model_versions": json.loads(event["model_versions"]),
        "deferred": bool(event["deferred"]),
        "activated_at": event["activated_at"],
        "slots": slots,
        "rewards": rewards,
        "learned_in_versions": learned,
        "learning_modes": json.loads(event["modes"]) if event["modes"] else {},
    }


def window_counts(db: Database, name: str, *, now: float) -> dict[str, int]:
    """Return how many of ``name``'s reward windows wait for rewards, are due, or wait for an activation."""
    waiting, due = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN due_at <= ? THEN 1 ELSE 0 END), 0) FROM pending "
        "WHERE policy = ? AND due_at IS NOT NULL",
        [now, name],
    ).fetchone()
    deferred = db.execute("SELECT COUNT(*) FROM pending WHERE policy = ? AND due_at IS NULL", [name]).fetchone()[0]
    return {
        "events_waiting_for_rewards": int(waiting) - int(due),
        "events_due": int(due),
        "events_deferred_not_activated": int(deferred),
    }


def learner_lag(db: Database, name: str, *, now: float) -> float:
    """Return how long the oldest of ``name``'s windows that fell due and is not yet learned has waited (0: none).

    Reads the learner's backlog alone (windows due, closed or not, and not yet learned) through the
    index of windows by when they fall due, so a health check costs the same on a log of any size.
    """
    oldest = db.execute(
        "SELECT MIN(due) FROM ("
        "SELECT MIN(due_at) AS due FROM pending WHERE closed_at IS NULL AND due_at <= ? AND policy = ? "
        "UNION ALL SELECT MIN(due_at) AS due FROM pending WHERE closed_at IS NOT NULL AND due_at <= ? AND policy = ?"
        ") AS backlog",
        [now, name, now, name],
    ).fetchone()[0]
    return round(now - oldest, 3) if oldest is not None else 0.0


def policy_stats(db: Database, name: str, *, now: float | None = None) -> dict[str, Any]:
    """Return learning progress: events waiting, due, learned, and how far the learner is behind.

    ``events_learned`` counts the log's learned rows, a read that grows with the log: for pages, not
    for health checks or scrapes, which call ``learner_lag`` and ``window_counts`` alone.
    """
    now = time.time() if now is None else now
    learned = db.execute("SELECT COUNT(*) FROM learned WHERE policy = ?", [name]).fetchone()[0]
    return {
        **window_counts(db, name, now=now),
        "events_learned": int(learned),
        "learner_lag_seconds": learner_lag(db, name, now=now),
    }
