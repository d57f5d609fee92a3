"""Keeping a deployment: online backups of the database and its artwork, and pruning old decisions.

``backup`` copies the database with SQLite's online backup API in one step, which in WAL mode is one
read transaction: a consistent snapshot taken while the service keeps serving (writers are not
blocked by a WAL reader). It then copies the artwork masters that snapshot refers to (masters are
written once, atomically, and never changed) and checks the copy with ``PRAGMA integrity_check``.
The folder it writes is a data folder: point ``MARQUEE_DATA_DIR`` at it to run from it.

``prune`` deletes decisions older than a cutoff in small transactions, each holding the write lock
for one batch only, so ranks and rewards go on between them. A decision still waiting to be learned
is kept whatever its age.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bandits.errors import Conflict
from bandits.model.policy import POLICY_NAMES
from bandits.postgres import is_url
from bandits.storage import Database, Writes, inline, write_transaction

BACKUP_NAME = "marquee.sqlite3"
PRUNE_BATCH = 500  # events per write transaction


class BackupRefused(Conflict):
    """The backup cannot be written where asked, or the copy failed its check."""


@dataclass(frozen=True)
class BackupSummary:
    """What a backup holds."""

    folder: Path
    database_bytes: int
    events: int
    titles: int
    artworks: int
    artwork_bytes: int
    seconds: float


def backup(
    database: str | Path, data_dir: str | Path, dest: str | Path, *, progress: Callable[[str], None] = lambda _: None
) -> BackupSummary:
    """Write a consistent copy of the database and its artwork masters into the new folder ``dest``.

    Raises:
        BackupRefused: ``dest`` exists and is not an empty folder, or the copy is not intact.
    """
    if is_url(database):
        raise BackupRefused(
            "the log is on a PostgreSQL server: back it up with the server's own tools (pg_dump, or continuous "
            "archiving), and the artwork folder with any file copy"
        )
    started = time.monotonic()
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupRefused(f"{dest}: exists and is not an empty folder; a backup never overwrites anything")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / BACKUP_NAME
    progress("database")
    source = sqlite3.connect(database)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # one step: one read transaction, a consistent snapshot
        check = copy.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise BackupRefused(f"the copy of the database failed its integrity check: {check}")
        paths = [row[0] for row in copy.execute("SELECT path FROM artworks")]
        events = int(copy.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        titles = int(copy.execute("SELECT COUNT(*) FROM titles").fetchone()[0])
    finally:
        copy.close()
        source.close()
    progress(f"{len(paths)} artwork masters")
    artwork_bytes = 0
    for relative in paths:
        origin = Path(data_dir) / relative
        if not origin.is_file():
            raise BackupRefused(
                f"artwork master {relative} is missing from {data_dir}; the backup in {dest} is incomplete"
            )
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, dest / relative)
        artwork_bytes += origin.stat().st_size
    return BackupSummary(
        folder=dest,
        database_bytes=target.stat().st_size,
        events=events,
        titles=titles,
        artworks=len(paths),
        artwork_bytes=artwork_bytes,
        seconds=time.monotonic() - started,
    )


@dataclass(frozen=True)
class PruneSummary:
    """What a prune removed."""

    events: int
    impressions: int
    rewards: int
    batches: int


def prune(
    db: Database,
    *,
    older_than: float,
    batch: int = PRUNE_BATCH,
    writes: Writes = inline,
    kind: str | None = None,
    keep_deferred: bool = False,
) -> PruneSummary:
    """Delete events created before ``older_than`` (unix seconds) with their impressions, rewards and learning marks.

    An event with a pending row that is due (its window open or closed, not yet learned) is kept; a
    deferred event never activated is pruned with its pending rows. Each batch of ``batch`` events is
    one short write transaction, run by ``writes``. The newest event is always kept: event numbers are
    SQLite rowids, which only keep growing while the largest stays. With ``kind`` (``actions``), only
    events of that kind are pruned; with ``keep_deferred``, a deferred event not yet activated is kept
    too (it may still be shown). The conditions are checked again inside each batch's transaction, so
    an event activated meanwhile is kept.
    """
    waiting = "p.event_seq = e.seq" + ("" if keep_deferred else " AND p.due_at IS NOT NULL")

    def delete(candidates: list[int]) -> tuple[int, int, int]:
        with write_transaction(db):
            marks = ",".join("?" * len(candidates))
            seqs = [
                row[0]
                for row in db.execute(  # again, under the write lock
                    f"SELECT e.seq FROM events e WHERE e.seq IN ({marks}) AND NOT EXISTS "
                    f"(SELECT 1 FROM pending p WHERE {waiting})",
                    candidates,
                )
            ]
            if not seqs:
                return 0, 0, 0
            marks = ",".join("?" * len(seqs))
            db.execute(
                f"DELETE FROM reward_credits WHERE reward_id IN (SELECT id FROM rewards WHERE event_seq IN ({marks}))",
                seqs,
            )
            rewards = db.execute(f"DELETE FROM rewards WHERE event_seq IN ({marks})", seqs).rowcount
            impressions = db.execute(f"DELETE FROM impressions WHERE event_seq IN ({marks})", seqs).rowcount
            names = ",".join("?" * len(POLICY_NAMES))  # named, so the delete finds rows by the table's key
            db.execute(
                f"DELETE FROM learned WHERE policy IN ({names}) AND event_seq IN ({marks})", [*POLICY_NAMES, *seqs]
            )
            db.execute(f"DELETE FROM pending WHERE event_seq IN ({marks})", seqs)
            events = db.execute(f"DELETE FROM events WHERE seq IN ({marks})", seqs).rowcount
        return events, impressions, rewards

    events = impressions = rewards = batches = 0
    while True:
        seqs = [
            row[0]
            for row in db.execute(
                "SELECT e.seq FROM events e WHERE e.created_at < ? AND e.seq < (SELECT MAX(seq) FROM events) AND "
                "NOT EXISTS "
                f"(SELECT 1 FROM pending p WHERE {waiting}) "
                + ("AND e.kind = ? " if kind is not None else "")
                + "ORDER BY e.seq LIMIT ?",
                [older_than, *([kind] if kind is not None else []), batch],
            )
        ]
        if not seqs:
            return PruneSummary(events=events, impressions=impressions, rewards=rewards, batches=batches)
        deleted = writes(partial(delete, seqs))
        events, impressions, rewards = events + deleted[0], impressions + deleted[1], rewards + deleted[2]
        batches += 1
        if len(seqs) < batch:
            return PruneSummary(events=events, impressions=impressions, rewards=rewards, batches=batches)
