"""Real gunicorn, two workers, one store: exact accounting, one learner, new models served, kill -9.

Each test runs on a SQLite file and on PostgreSQL (``BACKENDS``, tests/conftest.py).
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from pathlib import Path

import pytest

from bandits.storage import connect
from tests.gunicorn_harness import SETTINGS, Service, Traffic, check_accounting, one_learner, wait_until_learned

pytestmark = pytest.mark.slow
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def service(tmp_path: Path, database_url: str):
    svc = Service(tmp_path / "data", env=SETTINGS, database_url=database_url)
    svc.flask("demo-catalog", "--titles", "12", "--seed", "3")
    svc.start()
    yield svc
    svc.stop()


def test_two_workers_one_learner_every_impression_learned_once(service, tmp_path):
    status, health = service.request("GET", "/healthz")  # right after start: healthy, learner on its way
    assert status == 200 and health["learner"] in ("starting", "running"), health
    traffic = Traffic(service, seed=1)
    traffic.run(150)
    db = connect(service.database)
    wait_until_learned(db, 150)
    check_accounting(db, traffic, events=150)
    (learner,) = one_learner(service)  # the second worker's learner found the lock taken and left
    last_cpu = max(os.sched_getaffinity(0))  # the learner keeps to it (MARQUEE_LEARNER_CPU=last), every thread
    assert {tuple(os.sched_getaffinity(int(t))) for t in os.listdir(f"/proc/{learner}/task")} == {(last_cpu,)}

    newest = {row[0]: row[1] for row in db.execute("SELECT policy, MAX(version) FROM models GROUP BY policy")}
    assert newest["titles"] >= 1 and newest["artwork"] >= 1
    seen: dict[int, dict[str, int]] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (len(seen) < 2 or any(v != newest for v in seen.values())):
        status, health = service.request("GET", "/healthz")
        assert status == 200 and health["learner"] == "running"
        seen[health["process"]] = {name: p["serving_version"] for name, p in health["policies"].items()}
    assert len(seen) == 2, seen  # both workers answered
    assert all(versions == newest for versions in seen.values()), (seen, newest)


def test_kill_9_during_traffic_loses_nothing_and_learns_nothing_twice(service, tmp_path):
    traffic = Traffic(service, seed=2)
    traffic.run(60)
    errors: list[BaseException] = []
    stop = threading.Event()

    def background() -> None:
        while not stop.is_set():
            try:
                traffic.one()
            except (OSError, http.client.HTTPException, ValueError, AssertionError) as exc:  # cut by the kill
                traffic.failures += 1
                errors.append(exc)
                return

    thread = threading.Thread(target=background)
    thread.start()
    time.sleep(1.5)
    old_learners = one_learner(service)
    service.kill_all()
    stop.set()
    thread.join(timeout=30)

    db = connect(service.database)
    version_at_kill = db.execute("SELECT MAX(version) FROM models WHERE policy = 'titles'").fetchone()[0]
    service.start()
    traffic.run(60)
    events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    acknowledged = len({event for event, _ in traffic.slots})
    assert acknowledged <= events <= acknowledged + traffic.failures
    wait_until_learned(db, events)
    # An event whose response the kill cut off may be logged without the client knowing; every
    # acknowledged slot is there, and every logged event is learned exactly once.
    check_accounting(db, traffic, events=events, cut_requests=traffic.failures)
    assert db.execute("SELECT MAX(version) FROM models WHERE policy = 'titles'").fetchone()[0] > version_at_kill
    learners = one_learner(service)
    assert learners != old_learners


def test_kill_9_of_a_worker_and_of_the_learner_while_serving(service, tmp_path):
    """The master replaces the worker, a serving process restarts the learner; nothing acknowledged is lost."""
    import signal

    traffic = Traffic(service, seed=5)
    traffic.run(40)
    stop = threading.Event()
    served = [0]

    def background() -> None:
        while not stop.is_set() and served[0] < 5000:  # bounded
            try:
                traffic.one()
                served[0] += 1
            except (OSError, http.client.HTTPException, ValueError, AssertionError):  # a request the kill cut off
                traffic.failures += 1

    thread = threading.Thread(target=background)
    thread.start()
    try:
        learner = one_learner(service)
        workers = service.worker_pids()
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(1.0)
        os.kill(learner[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and service.learners() in ([], learner):
            time.sleep(0.2)
        at_restart = served[0]
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert served[0] > at_restart  # serving went on after both kills
    new_learner = one_learner(service)
    assert new_learner != learner
    new_workers = service.worker_pids()
    assert len(new_workers) == 2 and workers[0] not in new_workers
    db = connect(service.database)
    events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    acknowledged = len({event for event, _ in traffic.slots})
    assert acknowledged <= events <= acknowledged + traffic.failures
    wait_until_learned(db, events)
    check_accounting(db, traffic, events=events, cut_requests=traffic.failures)


def test_workers_starting_together_start_one_learner(tmp_path, database_url):
    """The watchdog hands its lock to the learner it starts: a second learner never starts only to exit at the lock."""
    svc = Service(tmp_path / "data", workers=3, env=SETTINGS, database_url=database_url)
    svc.flask("demo-catalog", "--titles", "4", "--seed", "3")
    svc.start()
    try:
        counts, answered = [], set()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            if len(answered) < 3:  # a worker starts its learner watchdog at its first request
                answered.add(svc.request("GET", "/healthz")[1]["process"])
            counts.append(len(svc.learners()))
            time.sleep(0.02)
        assert len(answered) == 3
        assert max(counts) == 1 and counts[-1] == 1, counts
        status, health = svc.request("GET", "/healthz")
        assert status == 200 and health["learner"] == "running"
    finally:
        svc.stop()


def test_the_learner_process_fits_taste_classes_that_the_workers_send(tmp_path, database_url):
    tastes_on = {
        **SETTINGS,
        "MARQUEE_TASTE_CLASSES": "2",
        "MARQUEE_TASTE_MIN_IMPRESSIONS": "6",
        "MARQUEE_TASTE_REFIT_EVENTS": "40",
        "MARQUEE_TASTE_REFIT_SECONDS": "0",
    }
    svc = Service(tmp_path / "data", env=tastes_on, database_url=database_url)
    svc.flask("demo-catalog", "--titles", "12", "--seed", "3")
    svc.start()
    try:
        for n in range(48):  # 6 viewers, 8 rows of 3 each; a viewer answers the row's first slot
            status, body = svc.request("POST", "/v1/rank", {"user": {"id": f"v{n % 6}", "features": {}}, "slots": 3})
            assert status == 200, body
            reward = {"title_id": body["slots"][0]["title_id"], "type": "click"}
            assert svc.request("POST", f"/v1/events/{body['event_id']}/reward", reward)[0] == 201
        deadline = time.monotonic() + 60
        shown: dict = {}
        while time.monotonic() < deadline and not shown.get("fits"):
            status, shown = svc.request("GET", "/v1/tastes", headers={"Content-Type": "application/json"})
            time.sleep(0.2)
        assert shown["fits"] and shown["fits"][0]["viewers_placed"] == 6, shown
        status, body = svc.request("POST", "/v1/rank", {"user": {"id": "v0", "features": {}}, "slots": 3})
        assert status == 200, body
        db = connect(svc.database)
        try:
            line = db.execute("SELECT title_shared FROM events WHERE id = ?", [body["event_id"]]).fetchone()[0]
        finally:
            db.close()
        assert "|K c" in line, line
    finally:
        svc.stop()
