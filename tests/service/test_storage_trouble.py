"""A full disk or a read-only database: a 503 with Retry-After, nothing half-stored, service again once it clears."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bandits.storage import SQLiteDatabase, connect
from service import create_app
from tests.helpers import add_catalog, table_counts


def full_app(data: Path, *, headroom_mb: float):
    size_mb = Path(data / "marquee.sqlite3").stat().st_size / (1024 * 1024)
    return create_app({"DATA_DIR": str(data), "LEARNER": False, "MAX_DATABASE_MB": size_mb + headroom_mb})


def test_a_full_database_answers_503_and_stores_nothing_half(tmp_path: Path):
    data = tmp_path / "data"
    setup = create_app({"DATA_DIR": str(data), "LEARNER": False})
    add_catalog(setup.test_client(), titles=6)
    connect(str(data / "marquee.sqlite3")).execute("PRAGMA wal_checkpoint(TRUNCATE)")
    app = full_app(data, headroom_mb=0.25)
    client = app.test_client()
    answered: list[dict] = []
    refused = None
    for _ in range(5000):  # bounded: the cap is reached long before
        response = client.post(
            "/v1/rank", json={"slots": 3, "user": {"id": "u" * 100, "features": {"note": "x" * 200}}}
        )
        if response.status_code != 200:
            refused = response
            break
        answered.append(response.get_json())
    assert refused is not None and answered, "the cap was never reached"
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "database or disk is full" in refused.get_json()["error"]["message"]
    db = connect(str(data / "marquee.sqlite3"))
    counts = table_counts(db)
    # Exactly the rows answered were logged, each whole; the refused one left nothing behind.
    assert counts["events"] == len(answered) and counts["impressions"] == 3 * len(answered)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Reads go on; writes keep being refused, and a reward is refused the same way.
    assert client.get("/v1/titles").status_code == 200
    reward = client.post(
        f"/v1/events/{answered[0]['event_id']}/reward",
        json={"title_id": answered[0]["slots"][0]["title_id"], "value": 1},
    )
    assert reward.status_code in (201, 503)  # a small reward may still fit in the last page
    before = table_counts(db)
    again = client.post("/v1/rank", json={"slots": 3, "user": {"id": "u" * 100, "features": {"note": "x" * 200}}})
    assert again.status_code == 503 and table_counts(db)["events"] == before["events"]
    # Raising the cap (or pruning) brings service back, with nothing lost.
    roomy = full_app(data, headroom_mb=8).test_client()
    assert roomy.post("/v1/rank", json={"slots": 3}).status_code == 200
    assert table_counts(db)["events"] >= before["events"] + 1
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_read_only_database_answers_503_and_reads_go_on(tmp_path: Path, monkeypatch):
    """As when the file or its disk turns read-only (root ignores file modes, so the connection is opened read-only)."""
    data = tmp_path / "data"
    app = create_app({"DATA_DIR": str(data), "LEARNER": False})
    client = app.test_client()
    add_catalog(client, titles=4)
    event = client.post("/v1/rank", json={"slots": 2}).get_json()
    path = data / "marquee.sqlite3"
    connect(str(path)).execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = table_counts(connect(str(path)))
    read_only = SQLiteDatabase(
        sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    )
    from service.views import catalog, decisions

    for module in (decisions, catalog):
        monkeypatch.setattr(module, "get_db", lambda: read_only)
    response = client.post("/v1/rank", json={"slots": 2})
    assert response.status_code == 503 and "readonly" in response.get_json()["error"]["message"]
    reward = client.post(
        f"/v1/events/{event['event_id']}/reward", json={"title_id": event["slots"][0]["title_id"], "value": 1}
    )
    assert reward.status_code == 503
    assert client.get("/v1/titles").status_code == 200
    assert client.get(f"/v1/events/{event['event_id']}").status_code == 200
    monkeypatch.undo()
    assert table_counts(connect(str(path))) == before
    assert client.post("/v1/rank", json={"slots": 2}).status_code == 200  # writable again: serving resumes


def test_a_write_lock_held_too_long_is_a_503_after_bounded_retries(tmp_path: Path, monkeypatch):
    """Another process holds SQLite's write lock: requests retry for BUSY_TIMEOUT_MS, then answer 503, never 500."""
    from bandits import storage

    app = create_app({"DATA_DIR": str(tmp_path / "data"), "LEARNER": False})
    client = app.test_client()
    add_catalog(client, titles=3)
    event = client.post("/v1/rank", json={"slots": 2}).get_json()
    monkeypatch.setattr(storage, "BUSY_TIMEOUT_MS", 300)
    holder = sqlite3.connect(app.config["DATABASE"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a real write lock, as a stuck writer would hold it
    try:
        before = holder.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        response = client.post("/v1/rank", json={"slots": 2})
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert "busy" in response.get_json()["error"]["message"]
        reward = client.post(
            f"/v1/events/{event['event_id']}/reward", json={"title_id": event["slots"][0]["title_id"], "value": 1}
        )
        assert reward.status_code == 503
        assert client.get("/v1/titles").status_code == 200  # reads are not blocked by a writer (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    db = connect(app.config["DATABASE"])
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == before
    assert client.post("/v1/rank", json={"slots": 2}).status_code == 200  # the lock is gone: served again
