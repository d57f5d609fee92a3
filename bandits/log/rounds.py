"""Rounds: the logged decisions of a policy, one per slot, as offline evaluation and datasets read them.

A round is one decision of a policy: its shared (viewer) line, the action lines offered, the one
chosen with its logged probability, and its reward by the join rules (``bandits.log.labels``).
``from_log`` reads a policy's closed events from the log, ``iter_from_log`` the same in chunks of
whole events (a log larger than memory is read a chunk at a time); ``RoundBuilder`` builds rounds
one decision at a time. ``Spill`` keeps chunks
in a temporary file for the passes of an evaluation, each of which reads them back in order.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bandits.errors import SpecError
from bandits.log.labels import aggregate, mode_of, offered_titles, valued
from bandits.model.policy import ACTIONS, ONLINE, POLICY_NAMES, TITLES
from bandits.storage import Database, time_range
from bandits.vw import blocks, features


@dataclass
class Rounds:
    """Logged decisions of one policy, oldest first, with the lines each one saw.

    Arrays have one entry per round (``n``) unless said otherwise; the actions of round ``i`` are
    ``action_index[offsets[i]:offsets[i + 1]]``, indices into the lines of block ``block[i]``.
    """

    policy: str
    event_ids: list[str]
    event_index: np.ndarray  # (n,) the round's event, numbered 0, 1, ... in time order
    position: np.ndarray  # (n,) slot position
    created_at: np.ndarray  # (n,) unix seconds of the decision
    contexts: list[Mapping[str, Any]]  # (n,) the viewer features of the round's event
    shared: list[str]  # (n,) VW shared line
    block: list[str]  # (n,) key of the block of action lines
    offsets: np.ndarray  # (n + 1,)
    action_index: np.ndarray  # (total actions,)
    chosen: np.ndarray  # (n,) the logged action, as an offset within the round's actions
    pscore: np.ndarray  # (n,) the logged probability of the chosen action
    reward: np.ndarray  # (n,) the reward credited to the decision
    action_ids: list[str]  # (total actions,) title or artwork id of every action
    lines_of: Mapping[str, list[str]] = field(repr=False, default_factory=dict)
    # (n,) the model's greedy action as an offset within the round's actions, -1 where not logged
    greedy: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    modes: list[str] = field(default_factory=list)  # (n,) the policy's learning mode at the decision

    def __len__(self) -> int:
        return int(self.pscore.size)

    @property
    def n_events(self) -> int:
        """The number of events the rounds come from."""
        return int(self.event_index[-1]) + 1 if len(self) else 0

    @property
    def sizes(self) -> np.ndarray:
        """The number of actions of every round, shape (n,)."""
        return np.diff(self.offsets)

    @property
    def logged_flat(self) -> np.ndarray:
        """The flat index (into the actions of all rounds) of every round's logged action, shape (n,)."""
        return self.offsets[:-1] + self.chosen

    def actions(self, i: int) -> list[str]:
        """Return the action lines of round ``i``, in the order offered."""
        lines = self.lines_of[self.block[i]]
        return [lines[j] for j in self.action_index[self.offsets[i] : self.offsets[i + 1]]]

    def example(self, i: int, *, labeled: bool) -> list[str]:
        """Return round ``i`` as a VW multi-line example, with the logged label on the chosen action if asked."""
        lines = [self.shared[i], *self.actions(i)]
        if labeled:
            chosen = 1 + int(self.chosen[i])
            lines[chosen] = features.labeled(
                lines[chosen], cost=features.cost_of(float(self.reward[i])), probability=float(self.pscore[i])
            )
        return lines

    def events(self) -> Iterator[range]:
        """Yield the rounds of each event, in time order, as ranges of round indices."""
        starts = np.flatnonzero(np.diff(self.event_index, prepend=-1)) if len(self) else np.array([], dtype=int)
        bounds = [*starts.tolist(), len(self)]
        for start, stop in zip(bounds[:-1], bounds[1:]):
            yield range(start, stop)


def concatenate(chunks: Iterable[Rounds], *, policy: str) -> Rounds:
    """Return the rounds of ``chunks`` (in order, each of whole events, numbered as one log) as one ``Rounds``."""
    parts = list(chunks)
    builder = RoundBuilder(policy, {})
    if not parts:
        return builder.build()
    lines_of: dict[str, list[str]] = {}
    for part in parts:
        lines_of.update(part.lines_of)
    sizes = np.concatenate([part.sizes for part in parts])
    offsets = np.zeros(sizes.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return Rounds(
        policy=policy,
        event_ids=[name for part in parts for name in part.event_ids],
        event_index=np.concatenate([part.event_index for part in parts]),
        position=np.concatenate([part.position for part in parts]),
        created_at=np.concatenate([part.created_at for part in parts]),
        contexts=[context for part in parts for context in part.contexts],
        shared=[line for part in parts for line in part.shared],
        block=[key for part in parts for key in part.block],
        offsets=offsets,
        action_index=np.concatenate([part.action_index for part in parts]),
        chosen=np.concatenate([part.chosen for part in parts]),
        pscore=np.concatenate([part.pscore for part in parts]),
        reward=np.concatenate([part.reward for part in parts]),
        action_ids=[name for part in parts for name in part.action_ids],
        lines_of=lines_of,
        greedy=np.concatenate([part.greedy for part in parts]),
        modes=[mode for part in parts for mode in part.modes],
    )


_HEADER = struct.Struct("<qqqqq")  # payload bytes, rounds, actions, first event, last event


@dataclass(frozen=True)
class ChunkInfo:
    """Where one spilled chunk sits in the whole log: its rounds, actions and events."""

    rounds: int
    actions: int
    first_event: int
    last_event: int


class Spill:
    """Chunks of rounds kept in a file, written once and read back in order by every pass that needs them.

    The viewer features (``contexts``) are not kept: the passes that read a spill learn and predict
    from the lines. Each chunk is stored behind a header giving its size and the events it holds,
    so that a pass skips the chunks it does not need without reading them. A spill written in
    parts (by several readers at once) is read as one: ``files`` in order, ``path`` the last.
    """

    def __init__(self, path: str | Path, *, before: Sequence[str | Path] = ()) -> None:
        self.path = Path(path)
        self.files = [*map(Path, before), self.path]
        self.chunks: list[ChunkInfo] = []

    def write(self, chunk: Rounds) -> None:
        """Append a chunk of whole events (its rounds numbered as in the whole log)."""
        if not len(chunk):
            return
        payload = pickle.dumps(replace(chunk, contexts=[]), protocol=pickle.HIGHEST_PROTOCOL)
        info = ChunkInfo(len(chunk), int(chunk.offsets[-1]), int(chunk.event_index[0]), int(chunk.event_index[-1]))
        with self.path.open("ab") as out:
            out.write(_HEADER.pack(len(payload), info.rounds, info.actions, info.first_event, info.last_event))
            out.write(payload)
        self.chunks.append(info)

    def read(self, wanted: Callable[[ChunkInfo], bool] | None = None) -> Iterator[Rounds]:
        """Yield the chunks in order; with ``wanted``, only those for which it is true."""
        for path in self.files:
            if not path.exists():
                continue
            with path.open("rb") as source:
                while header := source.read(_HEADER.size):
                    size, rounds, actions, first_event, last_event = _HEADER.unpack(header)
                    if wanted is None or wanted(ChunkInfo(rounds, actions, first_event, last_event)):
                        yield pickle.loads(source.read(size))
                    else:
                        source.seek(size, 1)


def _closed_where(policy: str, since: float | None, until: float | None) -> tuple[str, list[Any]]:
    """Return the WHERE clause (on events ``e``) and parameters of the events whose ``policy`` window closed."""
    where = [
        "e.activated_at IS NOT NULL",
        "e.kind = 'actions'" if policy == ACTIONS else "e.kind IS NULL",  # the policy's own decisions
        "NOT EXISTS (SELECT 1 FROM pending p WHERE p.policy = ? AND p.event_seq = e.seq AND p.closed_at IS NULL)",
    ]
    in_range, in_range_params = time_range("e.created_at", since, until)
    return " AND ".join([*where, *in_range]), [policy, *in_range_params]


def closed_event_count(db: Database, policy: str, *, since: float | None = None, until: float | None = None) -> int:
    """Return how many events of ``policy`` (in a time range) have a closed reward window (learned, or closed)."""
    where, params = _closed_where(policy, since, until)
    return int(db.execute(f"SELECT COUNT(*) FROM events e WHERE {where}", params).fetchone()[0])


PAGE = 50_000  # event numbers read per query when listing a range
CHUNK_EVENTS = 2000  # events per chunk of ``iter_from_log``


def closed_seqs(
    db: Database, *, policy: str, since: float | None = None, until: float | None = None, limit: int | None = None
) -> np.ndarray:
    """Return the numbers (``seq``) of the events whose ``policy`` window closed, oldest first, page by page."""
    where, params = _closed_where(policy, since, until)
    bound: list[Any] | None = None  # (created_at, seq) of the first event to read, inclusive
    if limit is not None:
        row = db.execute(
            f"SELECT e.created_at, e.seq FROM events e WHERE {where} ORDER BY e.created_at DESC, e.seq DESC "
            "LIMIT 1 OFFSET ?",
            [*params, limit - 1],
        ).fetchone()
        bound = [row[0], row[1]] if row is not None else None
    pages: list[np.ndarray] = []
    after = ">="
    while True:
        clause, values = where, list(params)
        if bound is not None:
            clause += f" AND (e.created_at, e.seq) {after} (?, ?)"
            values += bound
        rows = db.execute(
            f"SELECT e.created_at, e.seq FROM events e WHERE {clause} ORDER BY e.created_at, e.seq LIMIT ?",
            [*values, PAGE],
        ).fetchall()
        if rows:
            pages.append(np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows)))
        if len(rows) < PAGE:
            break
        bound, after = [rows[-1][0], rows[-1][1]], ">"
    return np.concatenate(pages) if pages else np.zeros(0, dtype=np.int64)


def from_log(
    db: Database,
    *,
    policy: str,
    aggregation: str,
    default_reward: float,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
    reward_values: Mapping[str, float] | None = None,
) -> Rounds:
    """Return the rounds of ``policy`` logged between ``since`` (inclusive) and ``until`` (exclusive).

    Only events whose reward window for the policy has closed are included: their rewards are final.
    The rewards credited to each shown title are combined by ``aggregation`` with ``default_reward``
    for a title without one (``bandits.log.labels.aggregate``), as the learner does.

    Args:
        limit: if given, only the ``limit`` most recent events in the range.
    """
    chunks = iter_from_log(
        db,
        policy=policy,
        aggregation=aggregation,
        default_reward=default_reward,
        since=since,
        until=until,
        limit=limit,
        reward_values=reward_values,
    )
    return concatenate(chunks, policy=policy)


def iter_from_log(
    db: Database,
    *,
    policy: str,
    aggregation: str,
    default_reward: float,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
    reward_values: Mapping[str, float] | None = None,
    chunk_events: int | None = None,
    part: tuple[np.ndarray, int] | None = None,
) -> Iterator[Rounds]:
    """Yield ``from_log``'s rounds in chunks of up to ``chunk_events`` (``CHUNK_EVENTS``) whole events, oldest first.

    Events are numbered as in the whole range (``event_index``), so the chunks together are what
    ``from_log`` returns; only one chunk's rows are held at a time. ``part`` reads only some of the
    range's events, ``(seqs, first)``: a run of ``closed_seqs`` starting at its ``first`` (several
    readers at once, each a part).
    """
    if policy not in POLICY_NAMES:
        raise SpecError(f"policy: must be one of {', '.join(POLICY_NAMES)}, got {policy!r}")
    chunk_events = chunk_events or CHUNK_EVENTS
    seqs, offset = (
        part if part is not None else (closed_seqs(db, policy=policy, since=since, until=until, limit=limit), 0)
    )
    for first in range(0, seqs.size, chunk_events):
        yield _chunk(
            db,
            seqs[first : first + chunk_events].tolist(),
            first_index=offset + first,
            policy=policy,
            aggregation=aggregation,
            default_reward=default_reward,
            reward_values=reward_values or {},
        )


def _chunk(
    db: Database,
    seqs: list[int],
    *,
    first_index: int,
    policy: str,
    aggregation: str,
    default_reward: float,
    reward_values: Mapping[str, float],
) -> Rounds:
    """Return the rounds of the events ``seqs`` (in that order), numbered from ``first_index``."""
    by_seq: dict[int, dict[str, Any]] = {}
    impressions: dict[int, list[dict[str, Any]]] = {}
    credited: dict[tuple[int, str], list[tuple[float, str | None]]] = {}
    for start in range(0, len(seqs), 500):
        chunk = seqs[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in db.query(
            "SELECT seq, id, created_at, context, candidates, title_shared, title_block, modes FROM events "
            f"WHERE seq IN ({marks})",
            chunk,
        ):
            by_seq[row["seq"]] = row
        for row in db.query(
            "SELECT event_seq, position, title_id, title_index, title_prob, artwork_ids, artwork_block, "
            "artwork_index, artwork_prob, offered, title_greedy, artwork_greedy, shared FROM impressions WHERE "
            f"event_seq IN ({marks}) ORDER BY event_seq, position",
            chunk,
        ):
            impressions.setdefault(row["event_seq"], []).append(row)
        for seq, title_id, value, reward_type in db.execute(
            "SELECT r.event_seq, r.title_id, r.value, r.type FROM rewards r JOIN reward_credits c ON c.reward_id = "
            "r.id "
            f"WHERE r.event_seq IN ({marks}) AND c.policy = ? ORDER BY r.id",
            [*chunk, policy],
        ):
            credited.setdefault((seq, title_id), []).append((value, reward_type))
    events = [by_seq[seq] for seq in seqs]
    keys = {event["title_block"] for event in events}
    keys.update(row["artwork_block"] for rows in impressions.values() for row in rows)
    block_of = blocks.load_blocks(db, keys)
    lines_of = {key: list(block.lines) for key, block in block_of.items()}

    builder = RoundBuilder(policy, lines_of)
    for number, event in enumerate(events, start=first_index):
        context = json.loads(event["context"])
        candidates = lines_of[event["title_block"]]
        left = list(range(len(candidates)))
        candidate_ids = blocks.listed(event["candidates"], block_of[event["title_block"]])
        mode = mode_of(event, policy)
        for row in impressions.get(event["seq"], []):
            reward = aggregate(
                valued(credited.get((event["seq"], row["title_id"])), reward_values),
                aggregation=aggregation,
                default_reward=default_reward,
            )
            common = {
                "event_id": event["id"],
                "event_index": number,
                "position": row["position"],
                "created_at": event["created_at"],
                "context": context,
                "reward": reward,
                "mode": mode,
            }
            if policy in (TITLES, ACTIONS):
                offered = offered_titles(row, left)
                shared = (
                    row["shared"] or event["title_shared"]
                    if policy == ACTIONS
                    else features.with_position(event["title_shared"], row["position"])
                )
                offered_ids = [candidate_ids[j] for j in offered]
                builder.add(
                    **common,
                    shared=shared,
                    block=event["title_block"],
                    action_index=offered,
                    chosen=offered.index(row["title_index"]),
                    pscore=row["title_prob"],
                    action_ids=offered_ids,
                    greedy=_offset(offered_ids, row["title_greedy"]),
                )
                left.remove(row["title_index"])
            else:
                artwork_ids = blocks.listed(row["artwork_ids"], block_of[row["artwork_block"]])
                builder.add(
                    **common,
                    shared=features.artwork_shared(event["title_shared"], candidates[row["title_index"]]),
                    block=row["artwork_block"],
                    action_index=list(range(len(artwork_ids))),
                    chosen=row["artwork_index"],
                    pscore=row["artwork_prob"],
                    action_ids=artwork_ids,
                    greedy=_offset(artwork_ids, row["artwork_greedy"]),
                )
    return builder.build()


def _offset(action_ids: Sequence[str], greedy: str | None) -> int:
    """Return where the logged greedy choice is among a round's actions (-1: not logged)."""
    return action_ids.index(greedy) if greedy is not None and greedy in action_ids else -1


class RoundBuilder:
    """Collects rounds one at a time and turns them into a ``Rounds``."""

    def __init__(self, policy: str, lines_of: Mapping[str, list[str]]) -> None:
        self.policy = policy
        self.lines_of = lines_of
        self.columns: dict[str, list[Any]] = {
            name: []
            for name in (
                "event_id",
                "event_index",
                "position",
                "created_at",
                "context",
                "shared",
                "block",
                "chosen",
                "pscore",
                "reward",
                "greedy",
                "mode",
            )
        }
        self.sizes: list[int] = []
        self.action_index: list[int] = []
        self.action_ids: list[str] = []

    def add(
        self,
        *,
        event_id: str,
        event_index: int,
        position: int,
        created_at: float,
        context: Mapping[str, Any],
        shared: str,
        block: str,
        action_index: Sequence[int],
        chosen: int,
        pscore: float,
        reward: float,
        action_ids: Sequence[str],
        greedy: int = -1,
        mode: str = ONLINE,
    ) -> None:
        """Add one round (``greedy``: the model's greedy action as an offset, -1 if unknown)."""
        for name, value in (
            ("event_id", event_id),
            ("event_index", event_index),
            ("position", position),
            ("created_at", created_at),
            ("context", context),
            ("shared", shared),
            ("block", block),
            ("chosen", chosen),
            ("pscore", pscore),
            ("reward", reward),
            ("greedy", greedy),
            ("mode", mode),
        ):
            self.columns[name].append(value)
        self.sizes.append(len(action_index))
        self.action_index.extend(action_index)
        self.action_ids.extend(action_ids)

    def build(self) -> Rounds:
        """Return the rounds added so far."""
        c = self.columns
        offsets = np.zeros(len(self.sizes) + 1, dtype=np.int64)
        np.cumsum(self.sizes, out=offsets[1:])
        return Rounds(
            policy=self.policy,
            event_ids=c["event_id"],
            event_index=np.asarray(c["event_index"], dtype=np.int64),
            position=np.asarray(c["position"], dtype=np.int64),
            created_at=np.asarray(c["created_at"], dtype=float),
            contexts=c["context"],
            shared=c["shared"],
            block=c["block"],
            offsets=offsets,
            action_index=np.asarray(self.action_index, dtype=np.int64),
            chosen=np.asarray(c["chosen"], dtype=np.int64),
            pscore=np.asarray(c["pscore"], dtype=float),
            reward=np.asarray(c["reward"], dtype=float),
            action_ids=self.action_ids,
            lines_of=self.lines_of,
            greedy=np.asarray(c["greedy"], dtype=np.int64),
            modes=c["mode"],
        )


def parse_time(value: Any, *, where: str) -> float | None:
    """Read a time as unix seconds (a number, or its text) or ISO 8601 text (UTC unless it names an offset)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise SpecError(f"{where}: must be unix seconds or an ISO 8601 time")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise SpecError(f"{where}: must be a non-negative number of unix seconds")
        return float(value)
    if isinstance(value, str):
        try:
            return parse_time(float(value), where=where)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise SpecError(f"{where}: {value!r} is not an ISO 8601 time (e.g. 2026-11-24T09:00:00Z)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    raise SpecError(f"{where}: must be unix seconds or an ISO 8601 time")
