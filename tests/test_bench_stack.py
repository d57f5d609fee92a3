"""The rank benchmark's stand-in stacks answer like the rank does, so their throughput is a fair bound."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bench.empty_app import ROW, bare
from bench.empty_app import app as flask_stand_in
from bench.rank_bench import BODY

BACKENDS = ("sqlite",)  # log_only times the SQLite file's writes, whatever MARQUEE_TEST_BACKEND says


def call_bare(body: bytes) -> tuple[str, dict[str, str], Any]:
    """Call the plain WSGI app once; return its status line, headers and decoded body."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/rank",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    payload = b"".join(bare(environ, start_response))
    assert int(seen["headers"]["Content-Length"]) == len(payload)
    return seen["status"], seen["headers"], json.loads(payload)


def test_both_stacks_answer_the_benchmark_request_with_the_same_row() -> None:
    status, headers, answer = call_bare(json.dumps(BODY).encode())
    assert status.startswith("200") and headers["Content-Type"] == "application/json"
    flask_answer = flask_stand_in.test_client().post("/v1/rank", json=BODY)
    assert flask_answer.status_code == 200
    assert answer == flask_answer.get_json() == ROW
    assert len(answer["slots"]) == BODY["slots"]


@pytest.mark.parametrize("body", [b"[1, 2]", b'"row"', b"7"])
def test_both_stacks_refuse_a_body_that_is_not_an_object(body: bytes) -> None:
    assert call_bare(body)[0].startswith("422")
    assert flask_stand_in.test_client().post("/v1/rank", data=body, content_type="application/json").status_code == 422


def test_the_bare_stack_parses_the_body_and_fails_on_broken_json() -> None:
    with pytest.raises(json.JSONDecodeError):
        call_bare(b"{not json")


def test_the_wal_meter_counts_every_frame_across_checkpoints(tmp_path):
    """bench.walmeter against the WAL file itself: frames written in three stretches, two checkpoints between."""
    import sqlite3

    from bench.walmeter import FrameCounter, WalMeter

    database = tmp_path / "meter.sqlite3"
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("PRAGMA journal_mode = wal")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE t (x TEXT)")
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    meter = FrameCounter(database)
    last = meter.sample(None)
    written = 0
    for stretch, commits in enumerate((40, 7, 25)):
        if stretch:
            writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the next commit starts the WAL over
        for commit in range(commits):
            writer.execute("INSERT INTO t VALUES (?)", ["x" * (300 + 500 * (commit % 9))])
            if commit % 3 == 0:
                last = meter.sample(last)
        last = meter.sample(last)
        wal = database.with_name(database.name + "-wal").stat().st_size
        written += (wal - 32) // (meter.page_size + 24)
    assert written > 72 and meter.frames == written
    assert meter.bytes == written * (meter.page_size + 24)
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with WalMeter(database, every=0.001) as threaded:
        for _ in range(20):
            writer.execute("INSERT INTO t VALUES (?)", ["y" * 2000])
    wal = database.with_name(database.name + "-wal").stat().st_size
    assert threaded.frames == (wal - 32) // (threaded.page_size + 24) >= 20


def test_the_wal_meter_leaves_this_processs_sqlite_locks_alone(tmp_path):
    """Reading -shm in a process with a connection open would drop that connection's locks (POSIX): it must not."""
    import sqlite3

    from bench.walmeter import WalMeter

    database = tmp_path / "locks.sqlite3"
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA journal_mode = wal")
    connection.execute("CREATE TABLE t (x TEXT)")
    shm = database.with_name(database.name + "-shm")

    def held() -> int:  # this process's POSIX locks on -shm (/proc/locks: "... POSIX ADVISORY READ pid dev:inode ...")
        inode = f":{shm.stat().st_ino} "
        return sum(
            1 for line in Path("/proc/locks").read_text().splitlines() if f" {os.getpid()} " in line and inode in line
        )

    before = held()
    assert before >= 1  # the connection's shared lock on the wal-index
    with WalMeter(database, every=0.001) as meter:
        for _ in range(5):
            connection.execute("INSERT INTO t VALUES ('x')")
    assert meter.frames >= 5
    assert held() == before
    connection.close()


def test_the_log_only_bound_logs_whole_decisions_on_a_copy_and_leaves_the_service_file_alone(
    app, client, monkeypatch
) -> None:
    """``bench.rank_bench.log_only`` times what a rank commits (the event, its impressions, its reward
    windows) and does it on a copy: the file the service serves from keeps every row it had, and no more."""
    import sqlite3

    from bandits.log import eventlog
    from bench import rank_bench
    from tests.helpers import add_catalog

    add_catalog(client, titles=BODY["slots"] + 2)

    monkeypatch.setenv("MARQUEE_DATA_DIR", "")  # log_only points both at the service's folder; restored afterwards
    monkeypatch.setenv("MARQUEE_DATABASE_URL", "")
    tables = ("events", "impressions", "pending")

    def counts() -> tuple[int, ...]:
        with contextlib.closing(sqlite3.connect(app.config["DATABASE"])) as check:
            return tuple(check.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables)

    before = counts()
    logged: list[tuple[int, int, int]] = []
    log_decision = eventlog.log_decision

    def counting(db: Any, **kwargs: Any) -> int:
        seq = log_decision(db, **kwargs)
        logged.append(
            (
                seq,
                db.execute("SELECT count(*) FROM impressions WHERE event_seq = ?", [seq]).fetchone()[0],
                db.execute("SELECT count(*) FROM pending WHERE event_seq = ?", [seq]).fetchone()[0],
            )
        )
        return seq

    monkeypatch.setattr(eventlog, "log_decision", counting)
    measured = rank_bench.log_only(Path(app.config["DATA_DIR"]), seconds=0.3)
    assert logged and len({seq for seq, _, _ in logged}) == len(logged)  # every row its own committed event
    assert {(slots, windows) for _, slots, windows in logged} == {(BODY["slots"], 2)}  # titles and artwork
    assert measured["ms_per_row"] == pytest.approx(1000 / measured["rows_per_second"])
    assert counts() == before == (0, 0, 0)  # the service's own file: not one row added
