"""Imported datasets: logged decisions from DSJson or JSON lines, kept apart from the service's own log.

A dataset is filled in batches while its file is read (``status`` ``importing``) and becomes
``ready`` when the whole file was read; a file with a malformed line leaves nothing behind, and the
service's log, catalog and models are never touched. Action lines are stored once by content in
``feature_blocks``, as the native log's are. A ready dataset evaluates like the native log
(``bandits.evaluate.offline.evaluate`` with ``dataset``): its decisions in the file's order, grouped into
events by event id.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from bandits.errors import Invalid, SpecError
from bandits.log.logimport import FORMATS, INLINE_POLICY, Decision, Skip, read_line
from bandits.log.rounds import Rounds, concatenate
from bandits.model.policy import ONLINE
from bandits.storage import Database, time_range, write_transaction
from bandits.vw import blocks

BATCH = 2000  # decisions written per transaction while importing
CHUNK_ROUNDS = 5000  # decisions read per query when a dataset is read in chunks
MAX_NAME = 100
# The reward model's options for a dataset no Marquee policy logged: every pair of namespaces crossed.
FOREIGN_VW_ARGS = ["-q", "::"]


class ImportRefused(Invalid, ValueError):
    """The file cannot be imported; the message names the line and the field, and says nothing was stored."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{message}; nothing was stored")


def _insert_batch(db: Database, database: str, dataset_id: str, rows: list[tuple[int, int, Decision]]) -> None:
    block_of = [blocks.Block.of(decision.actions) for _, _, decision in rows]
    with write_transaction(db):
        inserted = blocks.store(db, database, {block.key: block for block in block_of}.values())
        db.executemany(
            "INSERT INTO dataset_rounds (dataset_id, seq, event_index, event_id, position, created_at, context, "
            "shared, block, action_ids, chosen, pscore, reward) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    dataset_id,
                    seq,
                    event_index,
                    d.event_id,
                    d.position,
                    d.created_at,
                    json.dumps(d.context),
                    d.shared,
                    block.key,
                    json.dumps(list(d.action_ids)),
                    d.chosen,
                    d.pscore,
                    d.reward,
                )
                for (seq, event_index, d), block in zip(rows, block_of)
            ],
        )
    blocks.remember(database, inserted)


def _drop(db: Database, dataset_id: str) -> None:
    with write_transaction(db):
        db.execute("DELETE FROM dataset_rounds WHERE dataset_id = ?", [dataset_id])
        db.execute("DELETE FROM datasets WHERE id = ?", [dataset_id])


def import_lines(
    db: Database,
    database: str,
    lines: Iterable[str | bytes],
    *,
    fmt: str,
    name: str | None = None,
    now: float | None = None,
    policy: str | None = None,
) -> dict[str, Any]:
    """Read a DSJson or JSON-lines file into a new dataset and return its summary.

    ``database`` is the database's path (the block cache's key). Lines that are well formed but
    cannot be evaluated are counted by reason in ``skipped``. ``policy="actions"`` encodes the
    decisions of a DSJson file from another service (Azure Personalizer's) as Marquee's
    Personalizer-compatible rank encodes a request, so the dataset evaluates and warm-starts the
    ``actions`` policy (``bandits.log.logimport.read_dsjson``).

    Raises:
        ImportRefused: a line is malformed, or no line holds a decision; the dataset was removed.
    """
    if fmt not in FORMATS:
        raise ImportRefused(f"format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= MAX_NAME):
        raise ImportRefused(f"name: must be text of 1 to {MAX_NAME} characters")
    if policy is not None and (policy != INLINE_POLICY or fmt != "dsjson"):
        raise ImportRefused(
            f"policy: only {INLINE_POLICY!r}, for DSJson from another service, is read into a "
            "policy's encoding (Marquee's own logs keep the policy that logged them)"
        )
    now = time.time() if now is None else now
    dataset_id = f"ds-{uuid.uuid4().hex[:16]}"
    with write_transaction(db):
        db.execute(
            "INSERT INTO datasets (id, name, format, status, created_at) VALUES (?, ?, ?, 'importing', ?)",
            [dataset_id, name or dataset_id, fmt, now],
        )
    skipped: dict[str, int] = {}
    events: dict[str, int] = {}
    policies: set[str | None] = set()
    count, first_at, last_at = 0, float("inf"), float("-inf")
    batch: list[tuple[int, int, Decision]] = []
    try:
        for number, text in enumerate(lines, start=1):
            try:
                found = read_line(text, fmt, inline=policy is not None)
            except ValueError as exc:
                raise ImportRefused(f"line {number}: {exc}") from None
            if found is None:
                continue
            if isinstance(found, Skip):
                skipped[found.reason] = skipped.get(found.reason, 0) + 1
                continue
            event_index = events.setdefault(found.event_id, len(events))
            policies.add(found.policy)
            first_at, last_at = min(first_at, found.created_at), max(last_at, found.created_at)
            batch.append((count, event_index, found))
            count += 1
            if len(batch) >= BATCH:
                _insert_batch(db, database, dataset_id, batch)
                batch = []
        if batch:
            _insert_batch(db, database, dataset_id, batch)
        if count == 0:
            reasons = "; ".join(f"{n} {reason}" for reason, n in skipped.items()) or "the file is empty"
            raise ImportRefused(f"body: no line holds a decision that can be evaluated ({reasons})")
    except BaseException:
        _drop(db, dataset_id)
        raise
    policy = next(iter(policies)) if len(policies) == 1 else None
    with write_transaction(db):
        db.execute(
            "UPDATE datasets SET status = 'ready', finished_at = ?, policy = ?, rounds = ?, events = ?, skipped = ?, "
            "first_at = ?, last_at = ? WHERE id = ?",
            [time.time(), policy, count, len(events), json.dumps(skipped), first_at, last_at, dataset_id],
        )
    found_dataset = get(db, dataset_id)
    assert found_dataset is not None
    return found_dataset


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "format": row["format"],
        "status": row["status"],
        "policy": row["policy"],
        "decisions": row["rounds"],
        "events": row["events"],
        "skipped": json.loads(row["skipped"]) if row["skipped"] else {},
        "first_decision_at": row["first_at"],
        "last_decision_at": row["last_at"],
        "created_at": row["created_at"],
        "finished_at": row["finished_at"],
    }


def get(db: Database, dataset_id: str) -> dict[str, Any] | None:
    """Return a dataset's summary (None if there is none)."""
    rows = list(db.query("SELECT * FROM datasets WHERE id = ?", [dataset_id]))
    return _public(rows[0]) if rows else None


def recent(db: Database, *, limit: int = 100) -> list[dict[str, Any]]:
    """Return the newest datasets' summaries."""
    return [_public(row) for row in db.query("SELECT * FROM datasets ORDER BY created_at DESC LIMIT ?", [limit])]


def delete(db: Database, dataset_id: str) -> bool:
    """Remove a dataset and its decisions; return whether it existed."""
    if get(db, dataset_id) is None:
        return False
    _drop(db, dataset_id)
    return True


def ready(db: Database, dataset_id: str) -> dict[str, Any]:
    """Return a dataset that can be evaluated; raise ``SpecError`` naming ``dataset`` otherwise."""
    found = get(db, dataset_id)
    if found is None:
        raise SpecError(f"dataset: there is no dataset {dataset_id!r}")
    if found["status"] != "ready":
        raise SpecError(
            f"dataset: {dataset_id!r} is still importing (or its import stopped); it cannot be evaluated yet"
        )
    return found


def load(
    db: Database,
    dataset_id: str,
    *,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> Rounds:
    """Return a ready dataset's decisions made between ``since`` (inclusive) and ``until`` (exclusive) as rounds.

    Args:
        limit: if given, only the ``limit`` last events of the range (in the file's order).
    """
    policy = ready(db, dataset_id)["policy"] or "dataset"
    return concatenate(iter_load(db, dataset_id, since=since, until=until, limit=limit), policy=policy)


def iter_load(
    db: Database,
    dataset_id: str,
    *,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
    chunk_rounds: int | None = None,
    details: bool = True,
    part: tuple[int, int, int] | None = None,
) -> Iterator[Rounds]:
    """Yield ``load``'s rounds in chunks of whole events, about ``chunk_rounds`` (``CHUNK_ROUNDS``) decisions each.

    Events are numbered 0, 1, ... over the whole range, as ``load`` numbers them; only one chunk's
    rows are held at a time. Without ``details`` the viewer features, action ids and event ids are not
    read (``contexts`` and ``action_ids`` are left empty, ``event_ids`` None): an evaluation's passes
    read none of them, and decoding them was most of the time reading took. ``part`` reads only the
    events whose number in the file is in ``[low, high)``, numbering them from ``first``
    (``partition``: several readers at once, each a part).
    """
    policy = ready(db, dataset_id)["policy"] or "dataset"
    chunk_rounds = chunk_rounds or CHUNK_ROUNDS
    where, params, first_event = _range(db, dataset_id, since=since, until=until, limit=limit)
    numbered = -1  # the range's number of the last event read
    if part is not None:
        first_event = max(first_event, part[0])
        where.append("event_index < ?")
        params.append(part[1])
        numbered = part[2] - 1
    detail = ("context", "action_ids", "event_id") if details else ("NULL", "NULL", "NULL")
    after: list[Any] = [first_event, -1]  # (event_index, seq) of the last decision read: none yet
    last_event: Any = None  # and its number in the file
    pending: list[tuple[Any, ...]] = []  # rows of an event that may go on in the next page
    while True:
        rows = db.execute(
            f"SELECT event_index, {detail[2]}, position, created_at, {detail[0]}, shared, block, {detail[1]}, chosen, "
            f"pscore, reward, seq FROM dataset_rounds WHERE {' AND '.join(where)} AND (event_index, seq) > (?, ?) "
            "ORDER BY event_index, seq LIMIT ?",
            [*params, *after, chunk_rounds],
        ).fetchall()
        done = len(rows) < chunk_rounds
        if rows:
            after = [rows[-1][0], rows[-1][-1]]
        rows = pending + rows
        if done:
            pending = []
        else:  # the last event of the page may go on: keep it for the next chunk
            cut = len(rows)
            while cut > 0 and rows[cut - 1][0] == rows[-1][0]:
                cut -= 1
            if cut == 0:  # one event larger than a page: read on before cutting
                pending = rows
                continue
            rows, pending = rows[:cut], rows[cut:]
        if rows:
            chunk = _chunk(rows, blocks.load(db, {row[6] for row in rows}), policy, numbered, last_event, details)
            numbered, last_event = int(chunk.event_index[-1]), rows[-1][0]
            yield chunk
        if done:
            return


def _range(
    db: Database, dataset_id: str, *, since: float | None, until: float | None, limit: int | None
) -> tuple[list[str], list[Any], int]:
    """Return the WHERE clause (as parts) and parameters of a dataset's decisions in a time range, and its first event.

    The first event (in the file's numbers: the ``limit``-th last, or 0) is not in the clause: a
    reader that pages through the range starts its keyset there, since SQLite would seek its index
    by a plain lower bound and then scan from it on every page.
    """
    in_range, in_range_params = time_range("created_at", since, until)
    where: list[str] = ["dataset_id = ?", *in_range]
    params: list[Any] = [dataset_id, *in_range_params]
    if limit is not None:
        row = db.execute(
            f"SELECT DISTINCT event_index FROM dataset_rounds WHERE {' AND '.join(where)} "
            "ORDER BY event_index DESC LIMIT 1 OFFSET ?",
            [*params, limit - 1],
        ).fetchone()
        if row is not None:
            return where, params, int(row[0])
    return where, params, 0


def partition(
    db: Database,
    dataset_id: str,
    parts: int,
    *,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> list[tuple[int, int, int]]:
    """Split a dataset's range into up to ``parts`` runs of events for ``iter_load(part=...)``, in order.

    Each is ``(low, high, first)``: the events numbered ``low`` to ``high - 1`` in the file, and the
    range's number of the first of them. The runs split the file's numbers evenly (they are dense
    unless a time range thins them).
    """
    where, params, first_event = _range(db, dataset_id, since=since, until=until, limit=limit)
    where.append("event_index >= ?")
    params.append(first_event)
    clause = " AND ".join(where)
    low, high = db.execute(
        f"SELECT MIN(event_index), MAX(event_index) FROM dataset_rounds WHERE {clause}", params
    ).fetchone()
    if low is None:
        return []
    bounds = np.linspace(int(low), int(high) + 1, max(1, parts) + 1).round().astype(np.int64).tolist()
    found = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop > start:
            before = db.execute(
                f"SELECT COUNT(DISTINCT event_index) FROM dataset_rounds WHERE {clause} AND event_index < ?",
                [*params, start],
            ).fetchone()[0]
            found.append((start, stop, int(before)))
    return found


def _chunk(
    rows: list[tuple[Any, ...]],
    lines_of: Mapping[str, list[str]],
    policy: str,
    numbered: int,
    last_event: Any,
    details: bool,
) -> Rounds:
    """Return rows of ``dataset_rounds`` (whole events, in order) as rounds, events numbered on from ``numbered``.

    Built column by column rather than a round at a time: reading a large dataset spends its time here.
    """
    columns = list(zip(*rows))
    raw = np.asarray(columns[0], dtype=np.int64)
    new_event = np.empty(raw.size, dtype=bool)
    new_event[0] = rows[0][0] != last_event
    new_event[1:] = raw[1:] != raw[:-1]
    block = list(columns[6])
    sizes = np.fromiter((len(lines_of[key]) for key in block), dtype=np.int64, count=len(block))
    offsets = np.zeros(sizes.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return Rounds(
        policy=policy,
        event_ids=list(columns[1]),  # None without details
        event_index=numbered + np.cumsum(new_event),
        position=np.asarray(columns[2], dtype=np.int64),
        created_at=np.asarray(columns[3], dtype=float),
        contexts=[json.loads(text) for text in columns[4]] if details else [],
        shared=list(columns[5]),
        block=block,
        offsets=offsets,
        action_index=np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1], sizes),
        chosen=np.asarray(columns[8], dtype=np.int64),
        pscore=np.asarray(columns[9], dtype=float),
        reward=np.asarray(columns[10], dtype=float),
        action_ids=[name for text in columns[7] for name in json.loads(text)] if details else [],
        lines_of=lines_of,
        greedy=np.full(raw.size, -1, dtype=np.int64),
        modes=[ONLINE] * raw.size,
    )
