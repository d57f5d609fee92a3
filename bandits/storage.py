"""The store: connections, write transactions, and the schema of every table, on SQLite or PostgreSQL.

The embedded default is one SQLite file; a ``postgresql://`` target puts the same tables on a
PostgreSQL server (``bandits.postgres``), shared by any number of processes and hosts. Either way
the rest of Marquee sees one ``Database``: ``execute`` and ``query`` in autocommit, and every write
through ``write_transaction``, the one door that takes the write lock up front, so that concurrent
writers wait instead of failing half-way, and commits whole or rolls back whole.

On SQLite that lock is the file's (``BEGIN IMMEDIATE``), polled for a bounded time before
``StorageBusy``; on PostgreSQL an advisory lock held for the transaction (``bandits.postgres``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg
import sqlite_utils

from bandits.errors import StorageBusy, StorageUnavailable
from bandits.postgres import PostgresDatabase, is_url

T = TypeVar("T")
DB = TypeVar("DB", bound="Database")

BUSY_TIMEOUT_MS = 10_000
# Waiting for the write lock: SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20 ... ms between
# tries, so a 3 ms transaction elsewhere can cost a waiting request 8 ms or more. Marquee polls
# the lock itself on this finer schedule (seconds), repeating the last step until the timeout;
# a waiting process spends a few per cent of a core polling, and gets the lock within 0.2 ms.
LOCK_POLL_SCHEDULE = (0.00005, 0.0001, 0.0002)

# What a store raises when it fails, whichever its engine: the engines' own errors, and Marquee's
# busy or unreachable store (both 503s).
StorageError = (sqlite3.Error, psycopg.Error, StorageUnavailable)
IntegrityError = (sqlite3.IntegrityError, psycopg.IntegrityError)


def unique_violation(exc: BaseException, table: str, column: str) -> bool:
    """Whether ``exc`` is a UNIQUE constraint on ``table.column`` refusing a row, on either engine."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return exc.diag.constraint_name == f"{table}_{column}_key"
    return isinstance(exc, sqlite3.IntegrityError) and f"{table}.{column}" in str(exc)


class SQLiteDatabase(sqlite_utils.Database):
    """A SQLite file, with the methods Marquee uses on either engine (``PostgresDatabase`` has the same)."""

    dialect = "sqlite"

    def executemany(self, statement: str, rows: Any) -> None:
        self.conn.executemany(statement, rows)

    def columns(self, table: str) -> set[str]:
        """The names of a table's columns."""
        return {row[1] for row in self.execute(f"PRAGMA table_info({table})")}

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def begin_write(self, *, exclusive: bool = True) -> None:
        """Take the write lock (``BEGIN IMMEDIATE``), polling on ``LOCK_POLL_SCHEDULE`` up to ``BUSY_TIMEOUT_MS``.

        SQLite has one writer at a time: every write transaction takes the lock, ``exclusive`` or not.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        self.execute("PRAGMA busy_timeout = 0")
        try:
            attempt = 0
            while True:
                try:
                    self.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    if time.monotonic() >= deadline:
                        raise StorageBusy(str(exc)) from exc
                time.sleep(LOCK_POLL_SCHEDULE[min(attempt, len(LOCK_POLL_SCHEDULE) - 1)])
                attempt += 1
        finally:
            self.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def commit(self) -> None:
        try:
            self.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise

    def rollback(self) -> None:
        if self.conn.in_transaction:  # a failed COMMIT may or may not have ended it
            self.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()

    def trace(self, callback: Callable[[str], None] | None) -> None:
        """Call ``callback`` with the text of every statement this connection runs (None: stop)."""
        self.conn.set_trace_callback(callback)


class Database(Protocol):
    """What Marquee's code uses of a store, on either engine (``SQLiteDatabase``, ``PostgresDatabase``)."""

    dialect: str

    def execute(self, statement: str, params: Any = None, /) -> Any: ...

    def executemany(self, statement: str, rows: Any, /) -> None: ...

    def query(self, statement: str, params: Any = None, /) -> Iterator[dict[str, Any]]: ...

    def table_names(self) -> list[str]: ...

    def columns(self, table: str) -> set[str]: ...

    @property
    def in_transaction(self) -> bool: ...

    def begin_write(self, *, exclusive: bool = True) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...

    def trace(self, callback: Callable[[str], None] | None) -> None: ...


WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL file is truncated to after a checkpoint
# The page size of a new file. Every commit writes each page it changed whole into the WAL, and a
# decision changes the last page of six B-trees (events and its two indexes, impressions, the reward
# windows and their index) and page 1, adding about 4 KB in all: with 1 KiB pages it writes 17.9 KB
# of WAL, with SQLite's default of 4 KiB 43.7 KB (BENCHMARKS.md, "smaller pages"). Reading the log
# costs the same; a file made before with 4 KiB pages keeps them (docs/operations.md).
PAGE_SIZE = 1024


SYNCHRONOUS = ("normal", "full")


def connect(
    target: str | Path, *, autocheckpoint: bool = True, synchronous: str = "normal", max_bytes: int = 0
) -> Database:
    """Open the store ``target`` names, creating its schema if needed: a ``postgresql://`` URL or a SQLite path.

    The keywords are the SQLite file's; a PostgreSQL server ignores them (its durability and size
    are the server's settings).
    """
    if is_url(target):
        postgres = PostgresDatabase(str(target))
        if postgres.new:  # once a process: the tables stay made while its pool is open
            try:
                ensure_schema(postgres)
            except BaseException:
                postgres.close()
                raise
        return postgres
    return connect_file(target, autocheckpoint=autocheckpoint, synchronous=synchronous, max_bytes=max_bytes)


def connect_file(
    path: str | Path, *, autocheckpoint: bool = True, synchronous: str = "normal", max_bytes: int = 0
) -> SQLiteDatabase:
    """Open the database file in WAL mode, creating its folder and schema if needed.

    ``autocheckpoint=False`` is for serving connections: SQLite otherwise runs a checkpoint inside
    whichever commit pushes the WAL past 1000 pages, and that request waits for it (measured: the
    99th percentile of the rank's log write fell from 4.6 ms to 0.9 ms without it). Serving
    processes checkpoint from a background thread instead (``checkpoint``).

    ``max_bytes`` (0: none) caps the database file: writes that would grow it further fail with
    SQLite's "database or disk is full", exactly as when the disk fills.

    ``synchronous="normal"`` survives any process crash (kill -9 included) but may lose the last
    transactions on a power cut or OS crash; ``"full"`` syncs the WAL at every commit and does not.
    """
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only a new, empty file takes it, before WAL mode
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
    if not autocheckpoint:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    db = SQLiteDatabase(conn)
    ensure_schema(db)
    if max_bytes > 0:
        # Past this size a write fails as on a full disk (SQLITE_FULL) and is rolled back whole. SQLite
        # never sets the limit below the file's current size.
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        conn.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page)}")
    return db


def readable(db: Database) -> bool:
    """Whether the database answers a query (the health check)."""
    return bool(db.execute("SELECT 1").fetchone() == (1,))


@contextlib.contextmanager
def write_transaction(db: DB, *, appends_only: bool = False) -> Iterator[DB]:
    """Run the block in one write transaction, the write lock taken first: committed whole or rolled back whole.

    ``appends_only``: the block only adds new rows that nothing reads or changes until it commits (a
    new decision, with its impressions and reward windows). On PostgreSQL such a transaction does not
    take the deployment's write lock, so decisions commit side by side, the server writing their WAL
    together, instead of one after another; on SQLite there is one writer at a time regardless.
    """
    db.begin_write(exclusive=not appends_only)
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    db.commit()  # a failed commit (disk full, I/O error, a lost server) is rolled back before it raises


class Writes(Protocol):
    """Where a process runs its write transactions: ``writes(work)`` runs ``work()`` and returns its result.

    The learner runs its own on a thread that keeps normal CPU priority (``bandits.learn.learner.PriorityWrites``);
    everything else runs them in place (``inline``).
    """

    def __call__(self, work: Callable[[], T], /) -> T: ...


def inline(work: Callable[[], T], /) -> T:
    """Run a write transaction on the calling thread."""
    return work()


TABLES = (
    "meta",
    "titles",
    "artworks",
    "artwork_images",
    "policies",
    "models",
    "feature_blocks",
    "events",
    "impressions",
    "rewards",
    "reward_credits",
    "pending",
    "learned",
    "evaluations",
    "evaluation_models",
    "datasets",
    "dataset_rounds",
    "api_keys",
    "optimizations",
    "personalizer_items",
    "taste_fits",
    "viewer_tastes",
)


# Columns added after their table was first released: a file from an older version gains them.
ADDED_COLUMNS = (
    ("impressions", "offered", "TEXT"),
    ("rewards", "type", "TEXT"),
    ("events", "kind", "TEXT"),
    ("events", "modes", "TEXT"),
    ("impressions", "title_greedy", "TEXT"),
    ("impressions", "artwork_greedy", "TEXT"),
    ("impressions", "shared", "TEXT"),
    ("impressions", "slot_id", "TEXT"),
    ("models", "tried", "TEXT"),
    ("evaluation_models", "tried", "TEXT"),
    ("optimizations", "before_tried", "TEXT"),
    ("feature_blocks", "ids", "TEXT"),
)


def _missing_columns(db: Database) -> list[tuple[str, str, str]]:
    return [(table, column, kind) for table, column, kind in ADDED_COLUMNS if column not in db.columns(table)]


def _create_pending(db: Database) -> None:
    """Create the table of reward windows not yet learned, and its index of windows by when they fall due.

    One row per (event, policy). due_at is NULL until a deferred event is activated; closed_at and
    labels (the aggregation rule and default reward in force, from which
    bandits.log.labels.closed_labels derives the labels) are set when the learner closes the window.
    Keyed by event first, so that a decision's rows (one per policy) share a page and land at the
    end of the tree; the index leads with closed_at and due_at for the same reason: new windows, all
    open, are added at the end of the open ones in the order they fall due (BENCHMARKS.md, "reward
    windows keyed by event": two WAL frames fewer a decision than keyed by policy first).
    """
    db.execute(
        """CREATE TABLE IF NOT EXISTS pending (
            event_seq INTEGER NOT NULL REFERENCES events(seq), policy TEXT NOT NULL, due_at REAL,
            closed_at REAL, labels TEXT, PRIMARY KEY (event_seq, policy)) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS pending_due ON pending (closed_at, due_at, policy)")


def _pending_keyed_by_policy(db: Database) -> bool:
    """Whether ``pending`` has the layout of files before 2026-12-06 (keyed by policy, then event)."""
    if db.dialect != "sqlite":  # PostgreSQL stores came later
        return False
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'pending'").fetchone()
    return row is not None and "PRIMARY KEY (policy, event_seq)" in row[0]


def _rekey_pending(db: Database) -> None:
    """Rebuild an older file's ``pending`` in today's layout, every row kept (inside the caller's transaction)."""
    db.execute("DROP INDEX IF EXISTS pending_due")
    db.execute("ALTER TABLE pending RENAME TO pending_keyed_by_policy")
    _create_pending(db)
    db.execute(
        "INSERT INTO pending (event_seq, policy, due_at, closed_at, labels) "
        "SELECT event_seq, policy, due_at, closed_at, labels FROM pending_keyed_by_policy"
    )
    db.execute("DROP TABLE pending_keyed_by_policy")


# The layout of the tables this Marquee writes, kept in ``meta`` as ``schema_version``: raised by every
# change a store is migrated for (2: reward windows keyed by event, 2026-12-06; 3: id lists kept with
# their feature block, events.candidates and impressions.artwork_ids then '', 2026-12-06). A store a
# newer Marquee has migrated is refused, rather than written in a layout this one does not know.
SCHEMA_VERSION = 3


class SchemaTooNew(RuntimeError):
    """The store was created or migrated by a newer Marquee."""


def _schema_version(db: Database) -> int | None:
    """The layout version the store records, if it records one."""
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return None if row is None else int(row[0])


def _record_schema_version(db: Database) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT(key) DO UPDATE SET value = "
        "excluded.value WHERE meta.value < excluded.value",
        [SCHEMA_VERSION],
    )


def ensure_schema(db: Database) -> None:
    """Create every table, index and column if missing (idempotent, safe to run from several processes).

    Raises ``SchemaTooNew`` for a store whose recorded layout is newer than ``SCHEMA_VERSION``.
    """
    tables = set(db.table_names())
    found = _schema_version(db) if "meta" in tables else None
    if found is not None and found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"this store was written by a newer Marquee (schema version {found}; this one knows up to "
            f"{SCHEMA_VERSION}): upgrade Marquee to open it"
        )
    if set(TABLES) <= tables:  # a file from an older version gets the tables it lacks
        if _missing_columns(db) or _pending_keyed_by_policy(db) or found != SCHEMA_VERSION:
            with write_transaction(db):
                for table, column, kind in _missing_columns(db):  # again: another process may have added it
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                if _pending_keyed_by_policy(db):
                    _rekey_pending(db)
                _record_schema_version(db)
        return
    with write_transaction(db):
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        _record_schema_version(db)
        db.execute("INSERT INTO meta (key, value) VALUES ('catalog_version', 0) ON CONFLICT DO NOTHING")
        db.execute(
            """CREATE TABLE IF NOT EXISTS titles (
                id TEXT PRIMARY KEY, name TEXT NOT NULL, genres TEXT NOT NULL, year INTEGER,
                maturity TEXT, features TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1,
                created_at REAL NOT NULL, updated_at REAL NOT NULL)"""
        )
        db.execute(
            """CREATE TABLE IF NOT EXISTS artworks (
                id TEXT PRIMARY KEY, title_id TEXT NOT NULL REFERENCES titles(id), ordinal INTEGER NOT NULL,
                tags TEXT NOT NULL, visual TEXT NOT NULL, format TEXT NOT NULL, width INTEGER NOT NULL,
                height INTEGER NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, path TEXT NOT NULL,
                active INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, retired_at REAL)"""
        )
        db.execute("CREATE INDEX IF NOT EXISTS artworks_title ON artworks (title_id, ordinal)")
        # Masters kept in the database itself (IMAGE_STORE=database: nodes that share no folder).
        db.execute(
            """CREATE TABLE IF NOT EXISTS artwork_images (
                artwork_id TEXT PRIMARY KEY REFERENCES artworks(id), data BLOB NOT NULL)"""
        )
        db.execute(
            """CREATE TABLE IF NOT EXISTS policies (
                name TEXT PRIMARY KEY, overrides TEXT NOT NULL, updated_at REAL NOT NULL)"""
        )
        # tried: how often the version learned each action, as JSON (bandits.model.tried); NULL: not known.
        db.execute(
            """CREATE TABLE IF NOT EXISTS models (
                policy TEXT NOT NULL, version INTEGER NOT NULL, created_at REAL NOT NULL, blob BLOB NOT NULL,
                vw_args TEXT NOT NULL, events_learned INTEGER NOT NULL, examples_learned INTEGER NOT NULL,
                origin TEXT NOT NULL, tried TEXT, PRIMARY KEY (policy, version))"""
        )
        # VW action lines as used by decisions, stored once by content (bandits.vw.blocks), with their
        # actions' ids as a JSON list (NULL for a block stored without them).
        db.execute(
            "CREATE TABLE IF NOT EXISTS feature_blocks (key TEXT PRIMARY KEY, lines TEXT NOT NULL, ids TEXT) "
            "WITHOUT ROWID"
        )
        # kind: NULL for a catalog row (titles and artwork policies), 'actions' for a decision over inline
        # actions (bandits.decide.inline), whose one impression leaves the artwork columns empty.
        # seq is the rowid (no AUTOINCREMENT: one page write less per event); it only grows, since
        # the newest event is never deleted. candidates: the candidate title (or action) ids as a JSON list,
        # or '' when title_block carries them (bandits.vw.blocks.IN_BLOCK); impressions.artwork_ids likewise.
        db.execute(
            """CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,
                user_id TEXT, context TEXT NOT NULL, candidates TEXT NOT NULL, title_shared TEXT NOT NULL,
                title_block TEXT NOT NULL REFERENCES feature_blocks(key), model_versions TEXT NOT NULL,
                deferred INTEGER NOT NULL, activated_at REAL, kind TEXT, modes TEXT)"""
        )
        db.execute("CREATE INDEX IF NOT EXISTS events_created ON events (created_at)")
        # modes: the learning modes other than online the event's policies were in ({"titles": "apprentice"}),
        # as JSON; NULL when all were online. title_greedy, artwork_greedy (impressions): the model's
        # greedy choices, whichever was served (bandits.evaluate.apprentice compares them with the baseline).
        # shared, slot_id: a multi-slot ranking's slot, with its own shared line (bandits.decide.inline.rank_slots).
        # offered: the candidate indices a slot's title draw was restricted to (bandits.model.diversity), as a
        # JSON list; NULL when it drew from every candidate not yet placed.
        db.execute(
            """CREATE TABLE IF NOT EXISTS impressions (
                event_seq INTEGER NOT NULL REFERENCES events(seq), position INTEGER NOT NULL,
                title_id TEXT NOT NULL, title_index INTEGER NOT NULL, title_prob REAL NOT NULL,
                title_explored INTEGER NOT NULL, artwork_id TEXT NOT NULL, artwork_ids TEXT NOT NULL,
                artwork_block TEXT NOT NULL REFERENCES feature_blocks(key), artwork_index INTEGER NOT NULL,
                artwork_prob REAL NOT NULL, artwork_explored INTEGER NOT NULL, offered TEXT,
                title_greedy TEXT, artwork_greedy TEXT, shared TEXT, slot_id TEXT,
                PRIMARY KEY (event_seq, position)) WITHOUT ROWID"""
        )
        # type: the outcome a typed reward reported (click, play, ...; bandits.model.policy.REWARD_TYPES), whose
        # value each policy sets; NULL for a reward sent as a number. value: the number, or for a typed
        # reward the deployment's value of its type when it arrived.
        db.execute(
            """CREATE TABLE IF NOT EXISTS rewards (
                id INTEGER PRIMARY KEY AUTOINCREMENT, event_seq INTEGER NOT NULL REFERENCES events(seq),
                title_id TEXT NOT NULL, value REAL NOT NULL, received_at REAL NOT NULL,
                idempotency_key TEXT UNIQUE, type TEXT)"""
        )
        db.execute("CREATE INDEX IF NOT EXISTS rewards_event ON rewards (event_seq)")
        # A reward counts for a policy only if it arrived while that policy's window was open.
        db.execute(
            """CREATE TABLE IF NOT EXISTS reward_credits (
                reward_id INTEGER NOT NULL REFERENCES rewards(id), policy TEXT NOT NULL,
                PRIMARY KEY (reward_id, policy)) WITHOUT ROWID"""
        )
        _create_pending(db)
        db.execute(
            """CREATE TABLE IF NOT EXISTS learned (
                policy TEXT NOT NULL, event_seq INTEGER NOT NULL, version INTEGER NOT NULL,
                examples INTEGER NOT NULL, PRIMARY KEY (policy, event_seq)) WITHOUT ROWID"""
        )
        # Offline evaluations (bandits.evaluate.runs): the request, where the background process is, the report.
        db.execute(
            """CREATE TABLE IF NOT EXISTS evaluations (
                id TEXT PRIMARY KEY, created_at REAL NOT NULL, policy TEXT NOT NULL, request TEXT NOT NULL,
                status TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0, stage TEXT, started_at REAL,
                finished_at REAL, heartbeat_at REAL, pid INTEGER, result TEXT, error TEXT)"""
        )
        db.execute("CREATE INDEX IF NOT EXISTS evaluations_created ON evaluations (created_at)")
        # The models VW candidates were trained to during an evaluation, for applying a winner.
        db.execute(
            """CREATE TABLE IF NOT EXISTS evaluation_models (
                run_id TEXT NOT NULL REFERENCES evaluations(id), candidate TEXT NOT NULL, blob BLOB NOT NULL,
                tried TEXT, PRIMARY KEY (run_id, candidate)) WITHOUT ROWID"""
        )
        # Optimizations (bandits.evaluate.optimize): the evaluation each ran, its decision, and what an applied one
        # replaced (settings, model version and its bytes) so that it can be rolled back.
        db.execute(
            """CREATE TABLE IF NOT EXISTS optimizations (
                id TEXT PRIMARY KEY, policy TEXT NOT NULL, created_at REAL NOT NULL, trigger TEXT NOT NULL,
                evaluation TEXT NOT NULL REFERENCES evaluations(id), status TEXT NOT NULL, finished_at REAL,
                reason TEXT, decision TEXT, before_overrides TEXT, before_version INTEGER, before_blob BLOB,
                before_vw_args TEXT, before_examples INTEGER, before_events INTEGER, after_overrides TEXT,
                after_version INTEGER, rolled_back_at REAL, rollback_version INTEGER, before_tried TEXT)"""
        )
        db.execute("CREATE INDEX IF NOT EXISTS optimizations_policy ON optimizations (policy, created_at)")
        # Personalizer's evaluations and feature importances by the ids its clients gave (bandits.personalizer):
        # an evaluation's run, a feature importance's scores.
        db.execute(
            """CREATE TABLE IF NOT EXISTS personalizer_items (
                kind TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, created_at REAL NOT NULL,
                start_time REAL NOT NULL, end_time REAL NOT NULL, run_id TEXT, result TEXT, request TEXT,
                PRIMARY KEY (kind, id))"""
        )
        # API keys made by ``flask keys create`` (service.auth): only a SHA-256 of each key is kept.
        db.execute(
            """CREATE TABLE IF NOT EXISTS api_keys (
                name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,
                revoked_at REAL)"""
        )
        # Viewers' taste classes (bandits.model.tastes): the latest fits, each class's response rate for each
        # artwork (JSON), and each placed viewer's features from the latest fit that placed them.
        db.execute(
            """CREATE TABLE IF NOT EXISTS taste_fits (
                id INTEGER PRIMARY KEY, created_at REAL NOT NULL, classes INTEGER NOT NULL, arms TEXT NOT NULL,
                rates TEXT NOT NULL, shares TEXT NOT NULL, viewers INTEGER NOT NULL, placed INTEGER NOT NULL,
                impressions INTEGER NOT NULL, last_event INTEGER NOT NULL)"""
        )
        db.execute(
            """CREATE TABLE IF NOT EXISTS viewer_tastes (
                user_id TEXT PRIMARY KEY, fit INTEGER NOT NULL, features TEXT NOT NULL)"""
        )
        db.execute("CREATE INDEX IF NOT EXISTS viewer_tastes_fit ON viewer_tastes (fit)")
        # Imported logs (bandits.log.datasets): one row per file, one per decision read from it.
        db.execute(
            """CREATE TABLE IF NOT EXISTS datasets (
                id TEXT PRIMARY KEY, name TEXT NOT NULL, format TEXT NOT NULL, status TEXT NOT NULL,
                policy TEXT, rounds INTEGER, events INTEGER, skipped TEXT, first_at REAL, last_at REAL,
                created_at REAL NOT NULL, finished_at REAL)"""
        )
        db.execute(
            """CREATE TABLE IF NOT EXISTS dataset_rounds (
                dataset_id TEXT NOT NULL REFERENCES datasets(id), seq INTEGER NOT NULL, event_index INTEGER NOT NULL,
                event_id TEXT NOT NULL, position INTEGER NOT NULL, created_at REAL NOT NULL, context TEXT NOT NULL,
                shared TEXT NOT NULL, block TEXT NOT NULL REFERENCES feature_blocks(key), action_ids TEXT NOT NULL,
                chosen INTEGER NOT NULL, pscore REAL NOT NULL, reward REAL NOT NULL,
                PRIMARY KEY (dataset_id, seq)) WITHOUT ROWID"""
        )
        # Chunked reading (bandits.log.datasets.iter_load) pages through a dataset in its events' order.
        db.execute("CREATE INDEX IF NOT EXISTS dataset_rounds_event ON dataset_rounds (dataset_id, event_index, seq)")


def checkpoint(db: Database) -> tuple[int, int, int]:
    """Copy committed WAL pages into the database file without blocking writers or readers.

    Returns SQLite's (busy, WAL pages, pages checkpointed); on PostgreSQL, whose server checkpoints
    by itself, (0, 0, 0).
    """
    if db.dialect != "sqlite":
        return 0, 0, 0
    row = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def time_range(column: str, since: float | None, until: float | None) -> tuple[list[str], list[Any]]:
    """Return the WHERE conditions and parameters of ``since <= column < until`` (either end left open by None)."""
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        where.append(f"{column} >= ?")
        params.append(since)
    if until is not None:
        where.append(f"{column} < ?")
        params.append(until)
    return where, params


def bump(db: Database, key: str) -> int:
    """Increment a counter in ``meta`` inside the caller's transaction and return its new value."""
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, 1) ON CONFLICT(key) DO UPDATE SET value = meta.value + 1", [key]
    )
    return int(db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()[0])
