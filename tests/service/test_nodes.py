"""Two nodes on one PostgreSQL database: one learner for both, taken over when its node is killed, nothing lost.

Each node is a gunicorn deployment of its own (its own data folder, master, workers and learner
watchdog), as on two hosts; they share only the database.
"""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

import pytest

from bandits.storage import connect
from tests.gunicorn_harness import SETTINGS, Service, Traffic, check_accounting, wait_until_learned
from tests.helpers import postgres_schema

pytestmark = pytest.mark.slow


class Both:
    """What the traffic of several nodes acknowledged, summed (the shape check_accounting reads)."""

    def __init__(self, *traffics: Traffic) -> None:
        self.slots = {key: slot for traffic in traffics for key, slot in traffic.slots.items()}
        self.credited = {policy: sum(t.credited[policy] for t in traffics) for policy in ("titles", "artwork")}
        self.failures = sum(t.failures for t in traffics)


def learner_nodes(nodes: list[Service]) -> list[Service]:
    return [node for node in nodes if node.learners()]


def wait_for_one_learner(nodes: list[Service], timeout: float = 30) -> Service:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = learner_nodes(nodes)
        if len(found) == 1 and len(found[0].learners()) == 1:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"not exactly one learner: {[(n.data_dir, n.learners()) for n in nodes]}")


def serving_versions(node: Service) -> dict[int, dict[str, int]]:
    """Poll a node's workers until each has answered; return the model version each serves, per policy."""
    seen: dict[int, dict[str, int]] = {}
    for _ in range(50):
        status, health = node.request("GET", "/healthz")
        assert status == 200, health
        seen[health["process"]] = {name: p["serving_version"] for name, p in health["policies"].items()}
        if len(seen) == node.workers:
            break
    return seen


@pytest.fixture
def nodes(tmp_path: Path):
    with postgres_schema() as url:
        started = [Service(tmp_path / name / "data", env=SETTINGS, database_url=url) for name in ("a", "b")]
        started[0].flask("demo-catalog", "--titles", "12", "--seed", "3")
        for node in started:
            node.start()
        try:
            yield started
        finally:
            for node in started:
                node.stop()


def test_two_nodes_one_learner_taken_over_after_kill_9_nothing_lost_or_learned_twice(nodes):
    a, b = nodes
    traffic = {node.data_dir: Traffic(node, seed=seed) for seed, node in enumerate(nodes, start=11)}
    for _ in range(40):  # both nodes serve; each node's workers start their learner watchdogs
        for node in nodes:
            traffic[node.data_dir].one()
    leader = wait_for_one_learner(nodes)
    survivor = b if leader is a else a

    stop = threading.Event()

    def background(node: Service) -> None:
        while not stop.is_set():
            try:
                traffic[node.data_dir].one()
            except (OSError, http.client.HTTPException, ValueError, AssertionError):  # cut by the kill
                traffic[node.data_dir].failures += 1
                return

    threads = [threading.Thread(target=background, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    leader.kill_all()  # the whole node: master, workers and the learner, at once
    killed_at = time.monotonic()
    new_leader = wait_for_one_learner([survivor], timeout=30)
    takeover_seconds = time.monotonic() - killed_at
    time.sleep(1.0)  # the survivor goes on serving under its own learner
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert new_leader is survivor and takeover_seconds < 15, takeover_seconds

    db = connect(a.database)
    leader.start()  # the killed node comes back, as a follower: the survivor keeps the learner
    for _ in range(20):
        for node in nodes:
            traffic[node.data_dir].one()
    both = Both(*traffic.values())
    events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    acknowledged = len({event for event, _ in both.slots})
    assert acknowledged <= events <= acknowledged + both.failures
    wait_until_learned(db, events)
    check_accounting(db, both, events=events, cut_requests=both.failures)
    assert wait_for_one_learner(nodes) is survivor

    newest = {row[0]: row[1] for row in db.execute("SELECT policy, MAX(version) FROM models GROUP BY policy")}
    deadline = time.monotonic() + 10
    while True:  # every worker of both nodes serves the newest model within about a second of it
        seen = {(node.data_dir, pid): v for node in nodes for pid, v in serving_versions(node).items()}
        if len(seen) == 4 and all(versions == newest for versions in seen.values()):
            break
        assert time.monotonic() < deadline, (seen, newest)
        time.sleep(0.2)
    db.close()
