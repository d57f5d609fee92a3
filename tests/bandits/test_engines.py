"""The store on either engine: one writer at a time, all or nothing, the layout version, PostgreSQL's specifics."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from bandits.errors import StorageBusy
from bandits.postgres import LEARNER_LOCK, check_url, lock_held, translate, try_session_lock
from bandits.storage import SCHEMA_VERSION, IntegrityError, SchemaTooNew, connect, unique_violation, write_transaction
from service import config as settings
from service import create_app
from tests.helpers import postgres_schema

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def store(tmp_path, database_url):
    """A fresh store on the engine under test (its target: a SQLite path or a PostgreSQL URL)."""
    return database_url or str(tmp_path / "store.sqlite3")


def test_a_failed_write_transaction_leaves_nothing(store):
    db = connect(store)
    with pytest.raises(ZeroDivisionError), write_transaction(db):
        db.execute("INSERT INTO policies (name, overrides, updated_at) VALUES ('p', '{}', 1.0)")
        raise ZeroDivisionError
    assert db.execute("SELECT COUNT(*) FROM policies").fetchone()[0] == 0
    assert not db.in_transaction
    with write_transaction(db):  # and the store takes the next transaction as usual
        db.execute("INSERT INTO policies (name, overrides, updated_at) VALUES ('p', '{}', 1.0)")
    assert db.execute("SELECT name FROM policies").fetchall() == [("p",)]
    db.close()


def test_writers_take_turns_and_each_reads_what_the_one_before_committed(store):
    """A second writer waits for the first's commit, then reads it: what it decides, it decides on the latest."""
    first, second = connect(store), connect(store)
    inside = threading.Event()
    seen: list[int] = []

    def slow_writer() -> None:
        with write_transaction(first):
            inside.set()
            time.sleep(0.3)
            first.execute("INSERT INTO meta (key, value) VALUES ('counter', 1)")

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert inside.wait(10)
    with write_transaction(second):  # waits for the first to commit
        value = second.execute("SELECT value FROM meta WHERE key = 'counter'").fetchone()
        seen.append(value[0] if value else 0)
        second.execute("UPDATE meta SET value = value + 1 WHERE key = 'counter'")
    thread.join()
    assert seen == [1]
    assert first.execute("SELECT value FROM meta WHERE key = 'counter'").fetchone()[0] == 2
    first.close()
    second.close()


def test_a_duplicate_key_is_told_apart_by_table_and_column(store):
    db = connect(store)
    with write_transaction(db):
        db.execute("INSERT INTO api_keys (name, role, hash, created_at) VALUES ('a', 'admin', 'h', 1.0)")
    with pytest.raises(IntegrityError) as caught, write_transaction(db):
        db.execute("INSERT INTO api_keys (name, role, hash, created_at) VALUES ('b', 'admin', 'h', 1.0)")
    assert unique_violation(caught.value, "api_keys", "hash")
    assert not unique_violation(caught.value, "api_keys", "name")
    assert db.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0] == 1
    db.close()


def test_flags_and_sums_read_back_as_sqlite_gives_them(store):
    db = connect(store)
    with write_transaction(db):
        db.execute(
            "INSERT INTO api_keys (name, role, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)",
            ["k", "reader", "x", 2.5, None],
        )
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ["flag", True])  # a Python bool: 1
    assert db.execute("SELECT value FROM meta WHERE key = 'flag'").fetchone()[0] == 1
    total = db.execute("SELECT SUM(value), AVG(value) FROM meta WHERE key = 'flag'").fetchone()
    assert total == (1, 1.0) and isinstance(total[1], float)
    row = next(db.query("SELECT name, created_at, revoked_at FROM api_keys"))
    assert row == {"name": "k", "created_at": 2.5, "revoked_at": None}
    db.close()


def test_the_schema_is_made_once_and_its_version_recorded(store):
    db = connect(store)
    again = connect(store)  # a second process starting finds everything in place
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    assert set(db.table_names()) == set(again.table_names())
    db.close()
    again.close()


def test_a_store_from_a_newer_marquee_is_refused_and_left_as_it_is(store):
    db = connect(store)
    with write_transaction(db):
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [SCHEMA_VERSION + 1])
    db.close()
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}"):
        connect(store)
    if store.startswith("postgresql"):  # the refused store is as it was: read it past Marquee
        with psycopg.connect(store) as conn:
            stored = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    else:
        import sqlite3

        with sqlite3.connect(store) as conn:
            stored = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert stored == SCHEMA_VERSION + 1


# -- PostgreSQL only --------------------------------------------------------------------------------------


def test_statements_are_translated_for_postgresql():
    assert translate("SELECT a FROM t WHERE b = ? AND c LIKE 'x%?' AND d = :name") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%?' AND d = %(name)s"
    )
    assert translate("SELECT 'it''s ?' , ?") == "SELECT 'it''s ?' , %s"
    assert translate("SELECT x::text, 5 % 2") == "SELECT x::text, 5 %% 2"
    assert translate(
        "CREATE TABLE t (seq INTEGER PRIMARY KEY, v REAL NOT NULL, b BLOB, k TEXT, PRIMARY KEY (k)) WITHOUT ROWID"
    ) == (
        "CREATE TABLE t (seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v DOUBLE PRECISION NOT NULL, "
        "b BYTEA, k TEXT, PRIMARY KEY (k))"
    )
    assert translate("CREATE TABLE r (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER)") == (
        "CREATE TABLE r (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT)"
    )
    assert translate("SELECT 'INTEGER REAL' FROM t") == "SELECT 'INTEGER REAL' FROM t"  # queries keep their words


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/test", "scheme must be postgresql"),
        ("postgresql:///test", "names no host"),
        ("postgresql://root@localhost:port/test", "port is not a number"),
        ("postgresql://root@localhost:5432", "names no database"),
    ],
)
def test_a_malformed_database_url_is_refused_naming_the_setting(url, message, monkeypatch):
    with pytest.raises(ValueError, match=message):
        check_url(url)
    monkeypatch.setenv("MARQUEE_DATABASE_URL", url)
    with pytest.raises(ValueError, match=f"MARQUEE_DATABASE_URL: .*{message}"):
        settings.load()


def test_an_unreachable_server_stops_startup_naming_the_setting_and_hiding_the_password(tmp_path):
    with pytest.raises(RuntimeError, match=r"MARQUEE_DATABASE_URL: cannot connect to PostgreSQL") as caught:
        create_app(
            {"DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://u:secret@127.0.0.1:9/test", "LEARNER": False}
        )
    assert "secret" not in str(caught.value) and "u:***@" in str(caught.value)


def test_the_learner_lock_is_one_per_deployment_and_freed_with_its_session():
    with postgres_schema() as one, postgres_schema() as other:
        connect(one).close()
        held = try_session_lock(one, LEARNER_LOCK)
        assert held is not None and lock_held(one, LEARNER_LOCK)
        assert try_session_lock(one, LEARNER_LOCK) is None  # a second learner of the deployment
        beside = try_session_lock(other, LEARNER_LOCK)  # another deployment's, in its own schema
        assert beside is not None
        held.release()  # the learner's session ends (its process died): the lock is free at once
        assert not lock_held(one, LEARNER_LOCK)
        taken = try_session_lock(one, LEARNER_LOCK)
        assert taken is not None and taken.held()
        taken.release()
        beside.release()


def test_a_writer_that_waits_too_long_for_the_lock_gets_busy(monkeypatch):
    import bandits.postgres as postgres

    monkeypatch.setattr(postgres, "LOCK_TIMEOUT_MS", 200)
    with postgres_schema() as url:
        first, second = connect(url), connect(url)
        first.begin_write()
        try:
            with pytest.raises(StorageBusy, match="busy"), write_transaction(second):
                pass
            assert not second.in_transaction
        finally:
            first.rollback()
        with write_transaction(second):  # free again
            pass
        first.close()
        second.close()


def test_what_only_a_sqlite_file_has_is_refused_on_postgresql_with_the_reason(tmp_path, monkeypatch):
    from bandits.log.maintenance import BackupRefused, backup

    with pytest.raises(BackupRefused, match="pg_dump"):
        backup("postgresql://postgres@127.0.0.1/test", tmp_path, tmp_path / "backup")
    assert not (tmp_path / "backup").exists()
    monkeypatch.setenv("MARQUEE_DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
    monkeypatch.setenv("MARQUEE_MAX_DATABASE_MB", "100")
    with pytest.raises(ValueError, match="MAX_DATABASE_MB caps the SQLite file"):
        settings.load()


def test_a_decision_commits_while_another_writer_holds_the_lock(monkeypatch):
    """On PostgreSQL a transaction that only appends its own rows does not wait for the write lock."""
    import bandits.postgres as postgres

    monkeypatch.setattr(postgres, "LOCK_TIMEOUT_MS", 200)
    with postgres_schema() as url:
        holder, decider = connect(url), connect(url)
        holder.begin_write()  # a reward or the learner, mid-transaction
        try:  # had it waited for the lock, it would have given up with StorageBusy, as the next one does
            with write_transaction(decider, appends_only=True):
                decider.execute("INSERT INTO meta (key, value) VALUES ('decided', 1)")
            with pytest.raises(StorageBusy), write_transaction(decider):  # an exclusive writer still waits
                pass
        finally:
            holder.rollback()
        assert decider.execute("SELECT value FROM meta WHERE key = 'decided'").fetchone() == (1,)
        holder.close()
        decider.close()
