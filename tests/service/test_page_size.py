"""Pages of a new SQLite file: 1 KiB, so that a decision's commit writes less than half the WAL.

A file made with 4 KiB pages before keeps them and serves as before; the same decisions, made on both
in one test, are compared by the bytes each adds to its write-ahead log (deterministic for a given
page size: no clock involved).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bandits import storage
from service import create_app, runtime
from tests.helpers import add_catalog, table_counts

ROWS = 40


def serve(data: Path) -> tuple[int, int, dict[str, int]]:
    """Make ``ROWS`` decisions on the store in ``data``; return its page size, WAL bytes a decision, row counts."""
    app = create_app({"DATA_DIR": str(data), "LEARNER": False, "REWARD_WAIT_SECONDS": 60.0})
    client = app.test_client()
    add_catalog(client, titles=8)
    db = storage.connect(app.config["DATABASE"])
    wal = Path(app.config["DATABASE"] + "-wal")
    for index in range(3):  # models loaded, blocks stored: only the decisions' own writes are measured
        assert client.post("/v1/rank", json={"user": {"id": f"w{index}"}, "slots": 4}).status_code == 200
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert wal.stat().st_size == 0
    for index in range(ROWS):
        body = {"user": {"id": f"u{index % 7}", "features": {"hour": index % 24}}, "slots": 4}
        assert client.post("/v1/rank", json=body).status_code == 200
    page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    counts = table_counts(db)
    db.close()
    return page_size, wal.stat().st_size // ROWS, counts


def test_a_new_file_has_small_pages_and_writes_less_than_half_the_wal_of_one_with_4_kib_pages(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "CHECKPOINT_SECONDS", float("inf"))  # the WAL only grows while measured
    older = tmp_path / "older"
    older.mkdir()
    made_before = sqlite3.connect(older / "marquee.sqlite3")  # a store made with SQLite's default pages
    made_before.execute("PRAGMA page_size = 4096")
    made_before.execute("PRAGMA journal_mode = WAL")
    made_before.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    made_before.close()

    new_pages, new_wal, new_counts = serve(tmp_path / "new")
    old_pages, old_wal, old_counts = serve(older)

    assert (new_pages, old_pages) == (storage.PAGE_SIZE, 4096) == (1024, 4096)
    assert new_counts == old_counts  # the same decisions, every row kept on either
    assert new_counts["impressions"] == (ROWS + 3) * 4
    assert new_wal < 0.5 * old_wal, (new_wal, old_wal)
