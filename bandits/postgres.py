"""PostgreSQL as Marquee's store: the same tables, statements and guarantees as the SQLite file.

Marquee's statements are written once, in the SQL both engines share, with SQLite's parameter
style (``?`` and ``:name``). ``translate`` rewrites what differs on the way to PostgreSQL: the
parameter markers, and in table definitions the column types (``INTEGER`` -> ``BIGINT``, ``REAL``
-> ``DOUBLE PRECISION``, ``BLOB`` -> ``BYTEA``, an ``INTEGER PRIMARY KEY`` -> an identity column,
``WITHOUT ROWID`` dropped). Nothing else is rewritten: a statement that needs more is written in
the common dialect at its call site.

Write transactions keep SQLite's rule of one writer at a time, across every process and node: each
takes the transaction-scoped advisory lock ``WRITE_LOCK`` first, so that what a transaction reads
(an open reward window, a learner's progress) is what it commits against, and a waiting writer
gives up after ``lock_timeout`` as a busy SQLite file does. A transaction that only appends rows of
its own (a decision: ``storage.write_transaction(appends_only=True)``) skips the lock and commits
beside the others. Statements outside a transaction run in autocommit on a connection borrowed from
the process's pool for that statement alone; a write transaction keeps one connection for its
thread until it commits or rolls back.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.adapt import Dumper
from psycopg.types.numeric import FloatLoader
from psycopg_pool import ConnectionPool, PoolTimeout

from bandits.errors import StorageBusy, StorageUnreachable

SCHEMES = ("postgresql", "postgres")
# Advisory locks are keyed (scope, lock): scope is a hash of the schema the deployment's tables are in
# (``scope_of``), so that deployments in separate schemas of one database never wait for each other.
WRITE_LOCK = 1  # every write transaction holds it until it commits or rolls back
LEARNER_LOCK = 2  # the deployment's one learner holds it for as long as its session lasts
STARTING_LOCK = 3  # a node starting a learner holds it until the learner holds LEARNER_LOCK
# A learner's session on a host that vanished (power, network) is dropped after about idle +
# interval * count seconds of silence, and its lock with it; a process that dies is noticed at once.
KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
LOCK_TIMEOUT_MS = 10_000  # as SQLite's busy timeout: a writer waits this long for the lock, then gives up
CONNECT_TIMEOUT_S = 5
POOL_SIZE = 8  # connections a process keeps to one server at most: its threads, the learner's writer
POOL_WAIT_S = 3  # a request waits this long for a connection (all in use, or the server gone), then gets a 503


def is_url(target: str | object) -> bool:
    """Whether a database target names a PostgreSQL server rather than a SQLite file."""
    return isinstance(target, str) and target.split("://", 1)[0] in SCHEMES and "://" in target


def check_url(url: str) -> None:
    """Raise ValueError naming what is wrong with a PostgreSQL URL (without connecting)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"the scheme must be postgresql://, got {parts.scheme or 'none'!r}")
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError("the URL names no host (postgresql://user@host:port/database)")
    try:
        parts.port  # noqa: B018 (parsing it is the check)
    except ValueError as exc:
        raise ValueError(f"the port is not a number ({exc})") from None
    if not parts.path.strip("/"):
        raise ValueError("the URL names no database (postgresql://user@host:port/database)")


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def scope_of(conn: psycopg.Connection[Any]) -> int:
    """The advisory locks' first key for the schema this connection's tables are in (31 bits, so >= 0)."""
    row = conn.execute("SELECT current_schema()").fetchone()
    schema = row[0] if row and row[0] else ""
    return zlib.crc32(schema.encode("utf-8")) & 0x7FFF_FFFF


class SessionLock:
    """An advisory lock held by a connection of its own, for as long as that connection lives."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def held(self) -> bool:
        """Whether the session, and so the lock, is still alive (a round trip to the server)."""
        try:
            self.conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def release(self) -> None:
        self.conn.close()


def try_session_lock(url: str, lock: int) -> SessionLock | None:
    """Take ``lock`` for a new session without waiting; None if another session holds it."""
    conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, **KEEPALIVES)
    try:
        got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", [scope_of(conn), lock]).fetchone()
    except BaseException:
        conn.close()
        raise
    if not (got and got[0]):
        conn.close()
        return None
    return SessionLock(conn)


def lock_held(url: str, lock: int) -> bool:
    """Whether some session holds ``lock`` for the deployment ``url`` names (without taking it)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = %s AND objid = %s AND objsubid = 2",
            [scope_of(conn), lock],
        ).fetchone()
    return bool(row and row[0])


class _BoolAsInteger(Dumper):
    """Python booleans go to Marquee's integer flag columns as 0 and 1, as SQLite stores them."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_dumper(bool, _BoolAsInteger)
    # SUM and AVG of integers are NUMERIC in PostgreSQL: read them as floats, as SQLite gives them.
    conn.adapters.register_loader("numeric", FloatLoader)
    conn.autocommit = True


_TYPES = (
    (
        re.compile(r"\b(\w+) INTEGER PRIMARY KEY( AUTOINCREMENT)?"),
        r"\1 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT ROWID\b"), ")"),
)
_DDL = re.compile(r"^\s*(CREATE\s+TABLE|ALTER\s+TABLE)", re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@lru_cache(maxsize=1024)
def translate(statement: str) -> str:
    """Rewrite one statement in SQLite's dialect for PostgreSQL (see the module's docstring)."""
    ddl = bool(_DDL.match(statement))
    out: list[str] = []
    plain: list[str] = []  # text outside quotes since the last literal, rewritten when the literal starts

    def flush() -> None:
        text = "".join(plain)
        if ddl:
            for pattern, replacement in _TYPES:
                text = pattern.sub(replacement, text)
        out.append(text)
        plain.clear()

    i, n = 0, len(statement)
    while i < n:
        char = statement[i]
        if char in "'\"":
            end = i + 1
            while end < n and not (statement[end] == char and statement[end + 1 : end + 2] != char):
                end += 2 if statement[end] == char else 1
            flush()
            out.append(statement[i : end + 1].replace("%", "%%"))
            i = end + 1
            continue
        if char == "?":
            plain.append("%s")
        elif char == "%":
            plain.append("%%")
        elif char == ":" and i + 1 < n and statement[i + 1] != ":" and (i == 0 or statement[i - 1] != ":"):
            name = _NAME.match(statement, i + 1)
            if name is None:
                plain.append(char)
            else:
                plain.append(f"%({name.group()})s")
                i = name.end()
                continue
        else:
            plain.append(char)
        i += 1
    flush()
    return "".join(out)


class Rows:
    """A statement's result, read whole before its connection went back to the pool (a DB-API cursor's reading side)."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int, description: Any) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount
        self.description = description

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rest, self._next = self._rows[self._next :], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row


class _Shared:
    """A process's pool for one URL, shared by every ``PostgresDatabase`` of that process opened on it."""

    def __init__(self, url: str) -> None:
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            num_workers=1,
            timeout=POOL_WAIT_S,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
            configure=_configure,
            check=ConnectionPool.check_connection,  # a connection the server dropped is replaced, not handed out
            open=False,
            name="marquee",
        )
        try:  # one connection first, so that a wrong URL fails at once with the server's reason
            with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as probe:
                self.scope = scope_of(probe)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConnectionError(f"cannot connect to PostgreSQL at {redacted(url)}: {reason}") from None
        try:
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout:
            self.pool.close()
            raise ConnectionError(f"cannot connect to PostgreSQL at {redacted(url)}: no connection in time") from None
        self.users = 0


_shared: dict[tuple[int, str], _Shared] = {}
_shared_lock = threading.Lock()


def close_pools(url: str | None = None) -> None:
    """Close this process's pools (of ``url`` only, if given): every database opened on them stops working."""
    with _shared_lock:
        for key in [key for key in _shared if url is None or key[1] == url]:
            _shared.pop(key).pool.close()


class PostgresDatabase:
    """Marquee's tables on a PostgreSQL server, through the process's pool of connections to it.

    Every ``PostgresDatabase`` a process opens on one URL shares one pool (``POOL_SIZE`` connections
    at most); the pool closes when the last of them does. ``new`` says whether this one opened it.
    """

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        check_url(url)
        self.url = url
        self._local = threading.local()
        self._trace: Callable[[str], None] | None = None
        self._key = (os.getpid(), url)
        with _shared_lock:
            shared = _shared.get(self._key)
            self.new = shared is None
            if shared is None:
                shared = _shared[self._key] = _Shared(url)
            shared.users += 1
        self._shared: _Shared | None = shared
        self.pool = shared.pool
        self.scope = shared.scope

    # -- statements ---------------------------------------------------------------------------------------

    def _pinned(self) -> psycopg.Connection[Any] | None:
        return getattr(self._local, "conn", None)

    def trace(self, callback: Callable[[str], None] | None) -> None:
        """Call ``callback`` with the text of every statement this database runs (None: stop)."""
        self._trace = callback

    def _send(self, conn: psycopg.Connection[Any], statement: str, params: Any = None) -> psycopg.Cursor[Any]:
        if self._trace is not None:
            self._trace(statement)
        return conn.execute(statement, params)

    def _run(self, conn: psycopg.Connection[Any], statement: str, params: Any) -> Rows:
        cursor = self._send(conn, translate(statement), params if params else None)
        rows = cursor.fetchall() if cursor.description is not None else []
        return Rows(rows, cursor.rowcount, cursor.description)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's transaction's connection, or one borrowed from the pool for one statement."""
        conn = self._pinned()
        if conn is not None:
            yield conn
            return
        try:
            borrowed = self.pool.connection()
            conn = borrowed.__enter__()
        except PoolTimeout as exc:
            raise StorageUnreachable(str(exc)) from exc
        try:
            yield conn
        except BaseException as exc:
            borrowed.__exit__(type(exc), exc, exc.__traceback__)
            raise
        borrowed.__exit__(None, None, None)

    def execute(self, statement: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Rows:
        with self._connection() as conn:
            return self._run(conn, statement, params)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]] | Iterator[Sequence[Any]]) -> None:
        if self._trace is not None:
            self._trace(statement)
        with self._connection() as conn, conn.cursor() as cursor:
            cursor.executemany(translate(statement), list(rows))

    def query(self, statement: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        result = self.execute(statement, params)
        names = [column.name for column in result.description or ()]
        for row in result.fetchall():
            yield dict(zip(names, row, strict=True))

    def table_names(self) -> list[str]:
        return [row[0] for row in self.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]

    def columns(self, table: str) -> set[str]:
        """The names of a table's columns."""
        found = self.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            [table],
        )
        return {row[0] for row in found}

    # -- transactions -----------------------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._pinned() is not None

    def begin_write(self, *, exclusive: bool = True) -> None:
        """Start this thread's write transaction; if ``exclusive``, take the deployment's write lock (``WRITE_LOCK``).

        A transaction that is not exclusive only appends rows of its own (``storage.write_transaction``).
        """
        if self._pinned() is not None:
            raise RuntimeError("a write transaction is already open on this thread")
        try:
            conn = self.pool.getconn()
        except PoolTimeout as exc:
            raise StorageUnreachable(str(exc)) from exc
        try:
            self._send(conn, "BEGIN")
            if exclusive:
                self._send(conn, f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                self._send(conn, "SELECT pg_advisory_xact_lock(%s, %s)", [self.scope, WRITE_LOCK])
        except psycopg.errors.LockNotAvailable as exc:
            conn.rollback()
            self.pool.putconn(conn)
            raise StorageBusy("another writer held the write lock for too long") from exc
        except BaseException:
            if not conn.closed:
                conn.rollback()
            self.pool.putconn(conn)
            raise
        self._local.conn = conn

    def _release(self, finish: str) -> None:
        conn = self._pinned()
        if conn is None:
            if finish == "COMMIT":
                raise RuntimeError("COMMIT without a write transaction")
            return  # a failed COMMIT has already rolled back and let the connection go
        self._local.conn = None
        try:
            if finish == "COMMIT":
                self._send(conn, "COMMIT")
            elif not conn.closed:
                self._send(conn, "ROLLBACK")
        except BaseException:
            if not conn.closed:
                conn.rollback()
            raise
        finally:
            self.pool.putconn(conn)

    def commit(self) -> None:
        self._release("COMMIT")

    def rollback(self) -> None:
        self._release("ROLLBACK")

    def close(self) -> None:
        """Let go of the pool, closing it if this was the last database of the process using it."""
        with _shared_lock:
            shared, self._shared = self._shared, None
            if shared is None:
                return
            shared.users -= 1
            if shared.users == 0 and _shared.get(self._key) is shared:
                del _shared[self._key]
                shared.pool.close()
