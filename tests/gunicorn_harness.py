"""Run Marquee under real gunicorn on a temporary data folder, and talk to it over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """Return every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _parent(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Service:
    """A gunicorn master with its workers and learner, on one data folder."""

    def __init__(
        self, data_dir: Path, *, workers: int = 2, env: dict[str, str] | None = None, database_url: str = ""
    ) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.env = {**os.environ, "MARQUEE_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT), **(env or {})}
        if database_url:
            self.env["MARQUEE_DATABASE_URL"] = database_url
        # What bandits.storage.connect opens to look at the service's store from the test.
        self.database = database_url or str(data_dir / "marquee.sqlite3")
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "gunicorn.log"
        data_dir.parent.mkdir(parents=True, exist_ok=True)

    def flask(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return result.stdout

    def start(self) -> None:
        self.port = free_port()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-w",
                    str(self.workers),
                    "-b",
                    f"127.0.0.1:{self.port}",
                    "--graceful-timeout",
                    "5",
                    "wsgi:app",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/healthz")[0] in (200, 503):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()  # nothing outlives a failed start
        raise RuntimeError(f"gunicorn did not start; see {self.log}")

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 30
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            payload = None if body is None else json.dumps(body)
            all_headers = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=payload, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data else None)
        finally:
            conn.close()

    def wait_learned(self, event_id: str, *, policy: str, key: str, seconds: float = 30.0) -> dict[str, Any]:
        """Poll ``GET /v1/events/{id}`` until ``policy`` learned the event; return it (the deadline guards a hang)."""
        deadline = time.monotonic() + seconds
        while True:
            _, body = self.request("GET", f"/v1/events/{event_id}", headers={"X-API-Key": key})
            if body["learned_in_versions"].get(policy) is not None:
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.2)

    def request_raw(
        self, method: str, path: str, timeout: float = 30, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Send a request without a body; return the status and the body's bytes (for images and pages)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def processes(self) -> list[int]:
        assert self.process is not None
        return [self.process.pid, *children(self.process.pid)]

    def worker_pids(self) -> list[int]:
        """Return the gunicorn workers: the master's own children (learners are the workers' children)."""
        assert self.process is not None
        return [
            pid
            for pid in children(self.process.pid)
            if "service.workers learner" not in cmdline(pid) and _parent(pid) == self.process.pid
        ]

    def learners(self) -> list[int]:
        return [pid for pid in self.processes() if "service.workers learner" in cmdline(pid)]

    def kill_all(self) -> None:
        """kill -9 the master, the workers and the learner at once, and wait until they are gone."""
        pids = self.processes()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert self.process is not None
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pids = self.processes()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pid in pids:  # nothing may outlive the master
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


SETTINGS = {"MARQUEE_REWARD_WAIT_SECONDS": "1", "MARQUEE_LEARNER_INTERVAL_SECONDS": "0.2", "MARQUEE_EPSILON": "0.2"}


class Traffic:
    """Rank and reward over HTTP, remembering every slot and reward the service acknowledged."""

    def __init__(self, service: Service, seed: int) -> None:
        self.service = service
        self.rng = random.Random(seed)
        self.slots: dict[tuple[str, int], tuple[str, str, float, float]] = {}
        self.credited: dict[str, int] = {"titles": 0, "artwork": 0}
        self.failures = 0

    def one(self) -> None:
        segment = self.rng.choice(["night-owl", "family"])
        status, body = self.service.request(
            "POST",
            "/v1/rank",
            {
                "user": {
                    "id": f"u{self.rng.randrange(50)}",
                    "features": {"segment": segment, "hour": self.rng.randrange(24)},
                },
                "slots": 4,
            },
        )
        assert status == 200, body
        for slot in body["slots"]:
            self.slots[(body["event_id"], slot["position"])] = (
                slot["title_id"],
                slot["artwork_id"],
                slot["title_probability"],
                slot["artwork_probability"],
            )
        clicked = body["slots"][self.rng.randrange(4)]
        if self.rng.random() < 0.5:
            status, receipt = self.service.request(
                "POST", f"/v1/events/{body['event_id']}/reward", {"title_id": clicked["title_id"], "value": 1.0}
            )
            assert status == 201, receipt
            for policy in receipt["credited_policies"]:
                self.credited[policy] += 1

    def run(self, count: int) -> None:
        for _ in range(count):
            self.one()


def wait_until_learned(db, expected_events: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
        learned = db.execute("SELECT COUNT(*) FROM learned").fetchone()[0]
        if pending == 0 and learned == 2 * expected_events:
            return
        time.sleep(0.2)
    raise AssertionError(f"not learned in time: pending={pending} learned={learned} expected={2 * expected_events}")


def check_accounting(db, traffic: Traffic, *, events: int, cut_requests: int = 0) -> None:
    logged = {
        (row[0], row[1]): (row[2], row[3], row[4], row[5])
        for row in db.execute(
            "SELECT e.id, i.position, i.title_id, i.artwork_id, i.title_prob, i.artwork_prob "
            "FROM impressions i JOIN events e ON e.seq = i.event_seq"
        )
    }
    for key, slot in traffic.slots.items():  # every slot a response promised is in the log, as promised
        assert logged[key] == slot
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == events
    for policy in ("titles", "artwork"):
        learned_events, learned_examples = db.execute(
            "SELECT COUNT(*), SUM(examples) FROM learned WHERE policy = ?", [policy]
        ).fetchone()
        assert learned_events == events  # every learnable impression, once (primary key: never twice)
        assert learned_examples == len(logged)
        model = db.execute(
            "SELECT examples_learned, events_learned FROM models WHERE policy = ? ORDER BY version DESC LIMIT 1",
            [policy],
        ).fetchone()
        assert model == (len(logged), events)  # the checkpoint holds exactly what the log says was learned
        credited = db.execute("SELECT COUNT(*) FROM reward_credits WHERE policy = ?", [policy]).fetchone()[0]
        # A reward whose response a kill cut off may be stored without the client knowing.
        assert traffic.credited[policy] <= credited <= traffic.credited[policy] + cut_requests
    if db.dialect == "sqlite":
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def one_learner(service: Service, timeout: float = 15) -> list[int]:
    """Return the learner's pid once exactly one runs (a second one started by the other worker exits at the lock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = service.learners()
        if len(found) == 1:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not exactly one learner: {service.learners()}")
