"""Soak benchmark: rows and rewards at a fixed rate for ten minutes or more, with exact accounting.

Usage (from the repository root, with the dev requirements installed):

    python -m bench.soak_bench [--minutes 10] [--rate 300] [--window 30] [--workers 2]

The catalog and gunicorn setup of ``bench/rank_bench.py`` (40 titles, 5 posters each, the learner
on). Open-loop Poisson arrivals (``bench/loadgen.py``) at ``--rate`` requests a second: two of every
three rank a row of 10 slots from 10 named candidates for a varying viewer, with an event id the
client chooses; the third rewards one of the titles of the row ranked 60 requests earlier (all 10
candidates are shown, so any of them is in it). Latency is measured from each request's scheduled
time, in windows of ``--window`` seconds, so the table shows p50/p99 over time, with the cores the
workers and the learner used in each window. At the start (after warm-up) and at the end it reads
the resident memory of every process of the service. Afterwards it waits for the learner and checks
the log: every row answered is an event with its 10 impressions, every reward answered is stored,
every event is learned exactly once by each policy, and ``PRAGMA integrity_check`` is ok. Results
print as a Markdown table and are saved under bench/results/.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.loadgen import run
from bench.rank_bench import BODY, cpu_seconds, started_service
from bench.report import cpu_idle, machine, report

SLOTS = 10
REWARD_LAG = 60  # a reward goes to the row ranked this many requests earlier
CANDIDATES = [f"t{index:03d}" for index in range(1, SLOTS + 1)]


def request_for(index: int) -> tuple[str, str, dict[str, Any]]:
    """Return the ``index``-th request of the soak: two ranks, then a reward, over and over."""
    if index % 3 == 2 and index > REWARD_LAG:
        target = index - REWARD_LAG
        target -= 1 if target % 3 == 2 else 0  # a rank's index
        return "POST", f"/v1/events/soak-{target}/reward", {"title_id": CANDIDATES[target % SLOTS], "value": 1.0}
    body = {
        **BODY,
        "user": {"id": f"u-{index % 5000}", "features": {**BODY["user"]["features"], "hour": index % 24}},
        "slots": SLOTS,
        "candidates": CANDIDATES,
        "event_id": f"soak-{index}",
    }
    return "POST", "/v1/rank", body


def memory(pids: list[int]) -> dict[int, int]:
    """Return the resident set size in KiB of each process (0 if it is gone)."""
    found = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            found[pid] = 0
            continue
        found[pid] = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--window", type=float, default=30)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work, (service,), _, _ = started_service(workers=args.workers, seconds=5, prefix="marquee-soak-")
    database = Path(service.database)
    windows: list[dict[str, Any]] = []
    statuses: dict[int, int] = {}
    failures = sent = 0
    try:
        deadline = time.monotonic() + 15
        while len(service.learners()) != 1 and time.monotonic() < deadline:  # the other worker's learner leaves
            time.sleep(0.2)
        roles = {
            pid: ("learner" if pid in service.learners() else "worker" if pid in service.worker_pids() else "master")
            for pid in service.processes()
        }
        at_start = memory(list(roles))
        workers = [pid for pid, role in roles.items() if role == "worker"]
        learners = [pid for pid, role in roles.items() if role == "learner"]
        started = time.monotonic()
        while time.monotonic() - started < args.minutes * 60:
            offset = sent

            def make(index: int, offset: int = offset) -> tuple[str, str, dict[str, Any]]:
                return request_for(offset + index)

            cpu = (cpu_seconds(workers), cpu_seconds(learners))
            result = run("127.0.0.1", service.port, rate=args.rate, seconds=args.window, make=make, seed=len(windows))
            elapsed = result.elapsed  # the requests' bytes are made before the window's clock starts
            sent += len(result.latencies) + result.failures
            failures += result.failures
            for status, count in result.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
            latency = np.array(result.latencies) * 1000
            windows.append(
                {
                    "at_s": round(time.monotonic() - started),
                    "requests": len(latency) + result.failures,
                    "p50_ms": round(float(np.percentile(latency, 50)), 1),
                    "p99_ms": round(float(np.percentile(latency, 99)), 1),
                    "max_ms": round(float(latency.max()), 1),
                    "errors": result.failures + sum(n for s, n in result.statuses.items() if s not in (200, 201)),
                    "worker_cores": round((cpu_seconds(workers) - cpu[0]) / elapsed, 2),
                    "learner_cores": round((cpu_seconds(learners) - cpu[1]) / elapsed, 3),
                    "generator_cores": round(result.cpu_seconds / elapsed, 3),
                }
            )
        at_end = memory(list(roles))
        deadline = time.monotonic() + 300
        db = sqlite3.connect(database)
        while time.monotonic() < deadline and db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]:
            time.sleep(1)
        events = db.execute("SELECT COUNT(*) FROM events WHERE id LIKE 'soak-%'").fetchone()[0]
        impressions = db.execute(
            "SELECT COUNT(*) FROM impressions i JOIN events e ON e.seq = i.event_seq WHERE e.id LIKE 'soak-%'"
        ).fetchone()[0]
        rewards = db.execute(
            "SELECT COUNT(*) FROM rewards r JOIN events e ON e.seq = r.event_seq WHERE e.id LIKE 'soak-%'"
        ).fetchone()[0]
        learned = {
            policy: n
            for policy, n in db.execute(
                "SELECT l.policy, COUNT(*) FROM learned l JOIN events e ON e.seq = l.event_seq "
                "WHERE e.id LIKE 'soak-%' GROUP BY l.policy"
            )
        }
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        db.close()
    finally:
        service.stop()
    ranks_sent = sum(1 for index in range(sent) if request_for(index)[1] == "/v1/rank")
    p99s = [w["p99_ms"] for w in windows]
    summary = {
        "command": f"python -m bench.soak_bench --minutes {args.minutes:g} --rate {args.rate:g} --window "
        f"{args.window:g} "
        f"--workers {args.workers}",
        "machine": machine(platform.platform(), cpu_idle()),
        "date": time.strftime("%Y-%m-%d"),
        "requests": sent,
        "rows_sent": ranks_sent,
        "rewards_sent": sent - ranks_sent,
        "answered_200_201": statuses.get(200, 0) + statuses.get(201, 0),
        "errors": failures + sum(n for s, n in statuses.items() if s not in (200, 201)),
        "statuses": statuses,
        "p99_ms_per_window": p99s,
        "p99_ms_first_last_worst": (p99s[0], p99s[-1], max(p99s)),
        "p50_ms_per_window": [w["p50_ms"] for w in windows],
        "worker_cores_per_window": [w["worker_cores"] for w in windows],
        "learner_cores_per_window": [w["learner_cores"] for w in windows],
        "generator_cores_per_window": [w["generator_cores"] for w in windows],
        "rss_kib_start": {f"{roles[pid]} {pid}": kib for pid, kib in at_start.items()},
        "rss_kib_end": {f"{roles[pid]} {pid}": kib for pid, kib in at_end.items()},
        "rows_logged": events,
        "impressions_logged": impressions,
        "rewards_stored": rewards,
        "learned_per_policy": learned,
        "integrity_check": integrity,
        "accounting_holds": (
            events == statuses.get(200, 0)
            and impressions == SLOTS * events
            and rewards == statuses.get(201, 0)
            and all(n == events for n in learned.values())
            and len(learned) == 2
            and integrity == "ok"
        ),
    }
    report("soak", summary)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
