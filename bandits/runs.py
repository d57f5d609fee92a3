"""Evaluation runs: a stored request, the background process that works on it, and its report.

``POST /v1/evaluations`` stores a run as ``queued`` and starts ``python -m bandits.runs <id>`` at the
learner's CPU priority, so that serving keeps the CPU; that process marks it ``running``, reports
its progress, and stores the report (``done``) or the reason it could not (``failed``). A thread of
the process touches ``heartbeat_at`` every few seconds; a run whose heartbeat stopped for
``STALE_SECONDS`` (the process was killed, the machine restarted) is reported ``failed``, never left
``running`` for ever.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from typing import Any, Mapping

import sqlite_utils

from bandits import offline
from bandits.storage import connect, write_transaction

log = logging.getLogger("marquee.runs")

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 30.0
PROGRESS_SECONDS = 0.5  # least time between two progress writes
STATUSES = ("queued", "running", "done", "failed")
ACTIVE = ("queued", "running")


def create(db: sqlite_utils.Database, spec: offline.EvaluationSpec, *, now: float | None = None) -> str:
    """Store a queued run of ``spec`` and return its id."""
    now = time.time() if now is None else now
    run_id = f"ev-{uuid.uuid4().hex[:16]}"
    with write_transaction(db):
        db.execute("INSERT INTO evaluations (id, created_at, policy, request, status, heartbeat_at) "
                   "VALUES (?, ?, ?, ?, 'queued', ?)",
                   [run_id, now, spec.policy or "", json.dumps(spec.as_dict()), now])
    return run_id


def _expire_stale(db: sqlite_utils.Database, now: float) -> None:
    """Mark failed every active run whose process stopped giving signs of life."""
    cutoff = now - STALE_SECONDS
    if db.execute("SELECT 1 FROM evaluations WHERE status IN ('queued', 'running') AND heartbeat_at < ? LIMIT 1",
                  [cutoff]).fetchone() is None:
        return
    with write_transaction(db):
        db.execute(
            "UPDATE evaluations SET status = 'failed', finished_at = ?, error = ? "
            "WHERE status IN ('queued', 'running') AND heartbeat_at < ?",
            [now, f"the evaluation process stopped without finishing (no sign of life for {STALE_SECONDS:g} s)",
             cutoff],
        )


def active_count(db: sqlite_utils.Database, *, now: float | None = None) -> int:
    """Return how many runs are queued or running (after expiring the stale ones)."""
    _expire_stale(db, time.time() if now is None else now)
    return int(db.execute("SELECT COUNT(*) FROM evaluations WHERE status IN ('queued', 'running')").fetchone()[0])


def _public(row: Mapping[str, Any], *, with_result: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row["id"], "status": row["status"], "policy": row["policy"] or None, "progress": row["progress"],
        "stage": row["stage"], "created_at": row["created_at"], "started_at": row["started_at"],
        "finished_at": row["finished_at"], "request": json.loads(row["request"]), "error": row["error"],
    }
    if with_result:
        data["result"] = json.loads(row["result"]) if row["result"] else None
    return data


def get(db: sqlite_utils.Database, run_id: str, *, now: float | None = None) -> dict[str, Any] | None:
    """Return a run with its report (None if there is no such run)."""
    _expire_stale(db, time.time() if now is None else now)
    rows = list(db.query("SELECT * FROM evaluations WHERE id = ?", [run_id]))
    return _public(rows[0], with_result=True) if rows else None


def recent(db: sqlite_utils.Database, *, limit: int = 50, now: float | None = None) -> list[dict[str, Any]]:
    """Return the newest runs, without their reports."""
    _expire_stale(db, time.time() if now is None else now)
    return [_public(row, with_result=False)
            for row in db.query("SELECT * FROM evaluations ORDER BY created_at DESC LIMIT ?", [limit])]


class _Reporter:
    """Writes a run's progress at most every ``PROGRESS_SECONDS``, and its heartbeat from a thread."""

    def __init__(self, database: str, run_id: str, *, synchronous: str) -> None:
        self.database, self.run_id, self.synchronous = database, run_id, synchronous
        self.db = connect(database, synchronous=synchronous)
        self._last = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="marquee-evaluation-heartbeat", daemon=True)

    def __enter__(self) -> "_Reporter":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        db = connect(self.database, synchronous=self.synchronous)
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with write_transaction(db):
                db.execute("UPDATE evaluations SET heartbeat_at = ? WHERE id = ?", [time.time(), self.run_id])
        db.conn.close()

    def __call__(self, fraction: float, stage: str) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_SECONDS:
            return
        self._last = now
        with write_transaction(self.db):
            self.db.execute("UPDATE evaluations SET progress = ?, stage = ?, heartbeat_at = ? WHERE id = ?",
                            [round(fraction, 4), stage, time.time(), self.run_id])


def _finish(db: sqlite_utils.Database, run_id: str, *, status: str, result: Any = None, error: str | None = None) -> None:
    with write_transaction(db):
        db.execute(
            "UPDATE evaluations SET status = ?, progress = CASE WHEN ? = 'done' THEN 1.0 ELSE progress END, "
            "stage = NULL, finished_at = ?, result = ?, error = ? WHERE id = ?",
            [status, status, time.time(), json.dumps(result) if result is not None else None, error, run_id],
        )


def run(config: Mapping[str, Any], run_id: str) -> str:
    """Work on a queued run to the end; return its final status.

    A request the log cannot answer (``offline.SpecError``) fails the run with that message; any
    other error fails it as an internal error, is logged with its traceback, and is raised again.
    """
    synchronous = str(config.get("SQLITE_SYNCHRONOUS", "normal"))
    db = connect(config["DATABASE"], synchronous=synchronous)
    with write_transaction(db):
        claimed = db.execute(
            "UPDATE evaluations SET status = 'running', started_at = ?, heartbeat_at = ?, pid = ? "
            "WHERE id = ? AND status = 'queued'", [time.time(), time.time(), os.getpid(), run_id]).rowcount
    if claimed != 1:
        raise LookupError(f"evaluation {run_id!r} does not exist or is not queued")
    row = db.execute("SELECT request FROM evaluations WHERE id = ?", [run_id]).fetchone()
    try:
        spec = offline.parse_spec(json.loads(row[0]))
        with _Reporter(config["DATABASE"], run_id, synchronous=synchronous) as reporter:
            report = offline.evaluate(db, config, spec, progress=reporter)
    except offline.SpecError as exc:
        _finish(db, run_id, status="failed", error=str(exc))
        return "failed"
    except BaseException as exc:
        log.error("evaluation %s failed:\n%s", run_id, traceback.format_exc())
        _finish(db, run_id, status="failed", error=f"internal error: {type(exc).__name__}: {exc}")
        raise
    _finish(db, run_id, status="done", result=report)
    return "done"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bandits.runs <id>``: configuration comes from ``MARQUEE_*`` variables."""
    from bandits.learner import lower_priority
    from service import config as settings

    parser = argparse.ArgumentParser(description="Run one queued Marquee evaluation.")
    parser.add_argument("run_id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [evaluation] %(message)s", stream=sys.stderr)
    config = settings.load()
    lower_priority(str(config.get("LEARNER_PRIORITY", "normal")))
    status = run(config, args.run_id)
    log.info("evaluation %s: %s", args.run_id, status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
