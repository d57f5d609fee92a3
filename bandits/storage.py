"""The SQLite file: connections, write transactions, and the schema of every table.

Connections run in autocommit mode; every write goes through ``write_transaction``, which takes
SQLite's write lock up front (``BEGIN IMMEDIATE``) so that concurrent writers wait in
``busy_timeout`` instead of failing half-way, and retries ``SQLITE_BUSY`` a bounded number of times.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Iterator

import sqlite_utils

BUSY_TIMEOUT_MS = 10_000
# Waiting for the write lock: SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20 ... ms between
# tries, so a 3 ms transaction elsewhere can cost a waiting request 8 ms or more. Marquee polls
# the lock itself on this finer schedule (seconds), repeating the last step until the timeout.
LOCK_POLL_SCHEDULE = (0.0001, 0.0002, 0.0005, 0.001)


class StorageBusy(Exception):
    """The database stayed locked by other writers for longer than the busy timeout."""


def connect(path: str | Path) -> sqlite_utils.Database:
    """Open the database file in WAL mode, creating its folder and schema if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    db = sqlite_utils.Database(conn)
    ensure_schema(db)
    return db


def _begin_immediate(db: sqlite_utils.Database) -> None:
    """Take the write lock, polling on ``LOCK_POLL_SCHEDULE`` for up to ``BUSY_TIMEOUT_MS``."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    db.execute("PRAGMA busy_timeout = 0")
    try:
        attempt = 0
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StorageBusy(str(exc)) from exc
            time.sleep(LOCK_POLL_SCHEDULE[min(attempt, len(LOCK_POLL_SCHEDULE) - 1)])
            attempt += 1
    finally:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


@contextlib.contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """Run the block in one ``BEGIN IMMEDIATE`` transaction: committed whole or rolled back whole."""
    _begin_immediate(db)
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    else:
        db.execute("COMMIT")


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create every table and index if missing (idempotent, safe to run from several processes)."""
    if db["meta"].exists() and db["learned"].exists():
        return
    with write_transaction(db):
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('catalog_version', 0)")
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
        db.execute(
            """CREATE TABLE IF NOT EXISTS policies (
                name TEXT PRIMARY KEY, overrides TEXT NOT NULL, updated_at REAL NOT NULL)"""
        )
        db.execute(
            """CREATE TABLE IF NOT EXISTS models (
                policy TEXT NOT NULL, version INTEGER NOT NULL, created_at REAL NOT NULL, blob BLOB NOT NULL,
                vw_args TEXT NOT NULL, events_learned INTEGER NOT NULL, examples_learned INTEGER NOT NULL,
                origin TEXT NOT NULL, PRIMARY KEY (policy, version))"""
        )
        db.execute(
            """CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,
                user_id TEXT, context TEXT NOT NULL, candidates TEXT NOT NULL, title_shared TEXT NOT NULL,
                title_actions TEXT NOT NULL, model_versions TEXT NOT NULL, deferred INTEGER NOT NULL,
                activated_at REAL)"""
        )
        db.execute("CREATE INDEX IF NOT EXISTS events_created ON events (created_at)")
        db.execute(
            """CREATE TABLE IF NOT EXISTS impressions (
                event_seq INTEGER NOT NULL REFERENCES events(seq), position INTEGER NOT NULL,
                title_id TEXT NOT NULL, title_index INTEGER NOT NULL, title_prob REAL NOT NULL,
                title_explored INTEGER NOT NULL, artwork_id TEXT NOT NULL, artwork_ids TEXT NOT NULL,
                artwork_actions TEXT NOT NULL, artwork_index INTEGER NOT NULL,
                artwork_prob REAL NOT NULL, artwork_explored INTEGER NOT NULL, PRIMARY KEY (event_seq, position))"""
        )
        db.execute(
            """CREATE TABLE IF NOT EXISTS rewards (
                id INTEGER PRIMARY KEY AUTOINCREMENT, event_seq INTEGER NOT NULL REFERENCES events(seq),
                title_id TEXT NOT NULL, value REAL NOT NULL, received_at REAL NOT NULL,
                idempotency_key TEXT UNIQUE)"""
        )
        db.execute("CREATE INDEX IF NOT EXISTS rewards_event ON rewards (event_seq)")
        # A reward counts for a policy only if it arrived while that policy's window was open.
        db.execute(
            """CREATE TABLE IF NOT EXISTS reward_credits (
                reward_id INTEGER NOT NULL REFERENCES rewards(id), policy TEXT NOT NULL,
                PRIMARY KEY (reward_id, policy))"""
        )
        # One row per (policy, event) not yet learned. due_at is NULL until a deferred event is
        # activated; closed_at and labels are set when the learner closes the window.
        db.execute(
            """CREATE TABLE IF NOT EXISTS pending (
                policy TEXT NOT NULL, event_seq INTEGER NOT NULL REFERENCES events(seq), due_at REAL,
                closed_at REAL, labels TEXT, PRIMARY KEY (policy, event_seq))"""
        )
        db.execute("CREATE INDEX IF NOT EXISTS pending_due ON pending (policy, closed_at, due_at)")
        db.execute(
            """CREATE TABLE IF NOT EXISTS learned (
                policy TEXT NOT NULL, event_seq INTEGER NOT NULL, version INTEGER NOT NULL,
                examples INTEGER NOT NULL, PRIMARY KEY (policy, event_seq))"""
        )


def bump(db: sqlite_utils.Database, key: str) -> int:
    """Increment a counter in ``meta`` inside the caller's transaction and return its new value."""
    db.execute("INSERT INTO meta (key, value) VALUES (?, 1) ON CONFLICT(key) DO UPDATE SET value = value + 1", [key])
    return int(db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()[0])
