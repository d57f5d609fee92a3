"""Backups while serving, running from a backup, and pruning old decisions without losing anything else."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from bandits.learn.learner import Retention
from bandits.log import maintenance
from bandits.storage import connect
from tests.gunicorn_harness import SETTINGS, Service, Traffic
from tests.helpers import table_counts


@pytest.mark.slow
def test_a_backup_taken_under_load_is_whole_and_runs(tmp_path: Path):
    service = Service(tmp_path / "data", env=SETTINGS)
    service.flask("demo-catalog", "--titles", "12", "--seed", "3")
    service.start()
    traffic = Traffic(service, seed=4)
    stop = threading.Event()
    served = [0]
    errors: list[BaseException] = []

    def load() -> None:
        try:
            while not stop.is_set() and served[0] < 3000:  # bounded, whatever happens
                traffic.one()
                served[0] += 1
        except BaseException as exc:  # reported by the test below, not lost with the thread
            errors.append(exc)

    worker = threading.Thread(target=load)
    try:
        traffic.run(50)
        worker.start()
        time.sleep(0.5)
        before = served[0]
        out = service.flask("backup", str(tmp_path / "copy"))
        after = served[0]
        stop.set()
        worker.join(timeout=60)
    finally:
        stop.set()
        service.stop()
    assert not errors, errors
    assert after > before  # rows were being served while the backup ran
    assert "integrity ok" in out and "MARQUEE_DATA_DIR=" in out
    copy = connect(str(tmp_path / "copy" / "marquee.sqlite3"))
    live = connect(service.env["MARQUEE_DATA_DIR"] + "/marquee.sqlite3")
    events = copy.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert 50 <= events <= live.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    # A snapshot: every copied event has all its impressions, every copied reward its event.
    assert (
        copy.execute(
            "SELECT COUNT(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM impressions i WHERE i.event_seq = e.seq)"
        ).fetchone()[0]
        == 0
    )
    assert copy.execute("SELECT COUNT(*) FROM impressions").fetchone()[0] == 4 * events
    assert (
        copy.execute(
            "SELECT COUNT(*) FROM rewards r WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.seq = r.event_seq)"
        ).fetchone()[0]
        == 0
    )
    for path, digest in copy.execute("SELECT path, sha256 FROM artworks"):
        assert hashlib.sha256((tmp_path / "copy" / path).read_bytes()).hexdigest() == digest
    # Restoring is running from the copy: it serves, shows the copied artwork and learns what was pending.
    restored = Service(tmp_path / "copy", env=SETTINGS)
    restored.start()
    try:
        status, body = restored.request("POST", "/v1/rank", {"slots": 3})
        assert status == 200
        image = restored.request_raw("GET", body["slots"][0]["artwork_url"])
        assert image[0] == 200 and len(image[1]) > 1000
        deadline = time.monotonic() + 30
        while (
            copy.execute("SELECT COUNT(*) FROM pending WHERE due_at IS NOT NULL").fetchone()[0]
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert copy.execute("SELECT COUNT(*) FROM pending WHERE due_at IS NOT NULL").fetchone()[0] == 0
    finally:
        restored.stop()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # a PostgreSQL store is backed up by its server
def test_a_backup_never_overwrites(app, tmp_path, catalog):
    runner = app.test_cli_runner()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    result = runner.invoke(args=["backup", str(tmp_path / "taken")])
    assert result.exit_code == 1 and "exists and is not an empty folder" in result.output
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    result = runner.invoke(args=["backup", str(tmp_path / "fresh")])
    assert result.exit_code == 0, result.output
    assert "18 artwork masters" in result.output  # six titles, three posters each


def rows(client, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        body = client.post("/v1/rank", json={"slots": 2}).get_json()
        client.post(
            f"/v1/events/{body['event_id']}/reward", json={"title_id": body["slots"][0]["title_id"], "value": 1}
        )
        ids.append(body["event_id"])
    return ids


def age(db, event_ids: list[str], days: float) -> None:
    marks = ",".join("?" * len(event_ids))
    db.execute(f"UPDATE events SET created_at = created_at - ? WHERE id IN ({marks})", [days * 86400, *event_ids])


def test_prune_removes_old_learned_decisions_only(app, client, db, learner, catalog):
    old = rows(client, 30)
    learner.run_once(now=time.time() + 61)  # learned: prunable once old
    waiting = rows(client, 5)  # not learned yet: kept whatever their age
    deferred = client.post("/v1/rank", json={"slots": 2, "defer_activation": True}).get_json()["event_id"]
    recent = rows(client, 10)
    age(db, old + waiting + [deferred], days=40)
    before = table_counts(db)
    summary = maintenance.prune(db, older_than=time.time() - 30 * 86400, batch=7)
    assert (summary.events, summary.impressions, summary.rewards) == (31, 62, 30)
    assert summary.batches == 5  # 31 events, 7 at a time
    after = table_counts(db)
    assert before["events"] - after["events"] == 31 and after["events"] == 15
    assert before["learned"] - after["learned"] == 60  # two policies for each learned event
    for event_id in old + [deferred]:
        assert client.get(f"/v1/events/{event_id}").status_code == 404
    for event_id in waiting + recent:
        assert client.get(f"/v1/events/{event_id}").status_code == 200
    assert (
        db.execute("SELECT COUNT(*) FROM reward_credits WHERE reward_id NOT IN (SELECT id FROM rewards)").fetchone()[0]
        == 0
    )
    if db.dialect == "sqlite":
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # The waiting events are learned as usual afterwards, and serving goes on.
    assert learner.run_once(now=time.time() + 61)["titles"].events == 15
    assert client.post("/v1/rank", json={"slots": 2}).status_code == 200


def test_the_newest_event_is_kept_however_old(client, db, catalog, learner):
    only = rows(client, 3)
    learner.run_once(now=time.time() + 61)
    age(db, only, days=400)
    summary = maintenance.prune(db, older_than=time.time() - 86400)
    assert summary.events == 2 and client.get(f"/v1/events/{only[-1]}").status_code == 200
    new = client.post("/v1/rank", json={"slots": 2}).get_json()["event_id"]
    seqs = [row[0] for row in db.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == sorted(set(seqs)) and len(seqs) == 2 and client.get(f"/v1/events/{new}").status_code == 200


def test_the_learner_prunes_on_its_schedule(client, db, catalog, learner):
    old = rows(client, 4)
    learner.run_once(now=time.time() + 61)
    rows(client, 1)
    age(db, old, days=10)
    retention = Retention(7.0, every=3600)
    assert retention.run_if_due(db).events == 4
    assert retention.run_if_due(db) is None  # not due again for an hour
    assert Retention(0.0).run_if_due(db) is None  # retention off


def test_prune_command(app, client, db, catalog, learner):
    old = rows(client, 3)
    rows(client, 1)
    learner.run_once(now=time.time() + 61)
    age(db, old, days=3)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["prune"]).exit_code == 2  # no --days and retention off
    result = runner.invoke(args=["prune", "--days", "2"])
    assert result.exit_code == 0 and "pruned 3 events older than 2 days" in result.output
