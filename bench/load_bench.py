"""Service load benchmark: a rank and reward mix from wrk against gunicorn, with the VW-only ceiling.

Usage (from the repository root, with the dev requirements installed and Debian's wrk):

    python -m bench.load_bench [--seconds 30] [--connections 8] [--reward-share 0.5] [--workers 2]

It builds the same catalog as ``bench/rank_bench.py`` (40 titles, 5 posters each) in a temporary
folder, starts gunicorn with ``--workers`` workers and the learner, and measures in one run:

1. the VW-only ceiling: the row decisions alone (``bench.rank_bench.vw_only``), times the workers;
2. the mix: wrk, closed loop, ``--connections`` connections over 2 threads, running
   ``bench/rank_reward.lua``: rows of 10 slots for varying viewers, and after a row's answer, with
   probability ``--reward-share``, a reward for one of its titles. Throughput of rows, rewards and
   all requests, latency percentiles over all requests, failures;
3. the log against what was answered: every row answered 200 must be an event in SQLite, every
   reward answered 201 a stored reward, counted after the run.

The learner runs throughout, as in production (at idle CPU priority, so under full load it mostly
waits), and the table gives how long, once the last row's reward window had closed, it took to
learn the backlog. Results print as a Markdown table and are saved under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.rank_bench import measured, started_service, wait_for_learner
from bench.report import cpu_idle, machine, report

SCRIPT = Path(__file__).resolve().parent / "rank_reward.lua"
REWARD_WAIT_SECONDS = 10.0  # the service's default reward window


def mix(port: int, *, seconds: float, connections: int, reward_share: float) -> dict[str, Any]:
    """Run wrk with the rank and reward script; return the script's JSON totals."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--timeout",
            "10s",
            "-s",
            str(SCRIPT),
            f"http://127.0.0.1:{port}",
            "--",
            str(reward_share),
            "10",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(text for text in reversed(out.splitlines()) if text.startswith("{"))
    result: dict[str, Any] = json.loads(line)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--reward-share", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    work, (service,), ceiling, _ = started_service(workers=args.workers, seconds=args.seconds, prefix="marquee-load-")
    try:
        database = sqlite3.connect(service.database)
        events_before = database.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        loaded = measured(
            [service],
            "mix",
            lambda: mix(
                service.port, seconds=args.seconds, connections=args.connections, reward_share=args.reward_share
            ),
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_cores = (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / loaded["seconds"]
        time.sleep(REWARD_WAIT_SECONDS)  # until the last row's window closed: from then on it is the learner's backlog
        catch_up = wait_for_learner(service)
        events = database.execute("SELECT COUNT(*) FROM events").fetchone()[0] - events_before
        stored_rewards = database.execute("SELECT COUNT(*) FROM rewards").fetchone()[0]
        database.close()
    finally:
        service.stop()
    seconds = loaded["seconds"]
    ceiling_n = ceiling["rows_per_second"] * args.workers
    rows_per_second = loaded["ranks"] / seconds
    unanswered = loaded["rank_sent"] + loaded["reward_sent"] - loaded["requests"]
    result = {
        "command": (
            f"python -m bench.load_bench --seconds {args.seconds:g} --connections {args.connections} "
            f"--reward-share {args.reward_share:g} --workers {args.workers}"
        ),
        "machine": machine(platform.platform(), cpu_idle()),
        "date": time.strftime("%Y-%m-%d"),
        "vw_only_rows_per_second_one_core": round(ceiling["rows_per_second"], 1),
        "vw_only_ceiling_rows_per_second": round(ceiling_n, 1),
        "requests_per_second": round(loaded["requests"] / seconds, 1),
        "rows_per_second": round(rows_per_second, 1),
        "rewards_per_second": round(loaded["rewards"] / seconds, 1),
        "rows_share_of_vw_ceiling": round(rows_per_second / ceiling_n, 3),
        "p50_ms": round(loaded["p50_ms"], 2),
        "p95_ms": round(loaded["p95_ms"], 2),
        "p99_ms": round(loaded["p99_ms"], 2),
        "max_ms": round(loaded["max_ms"], 2),
        "failed_answers": loaded["failed"],
        "socket_errors": loaded["socket_errors"],
        "rows_answered_200": loaded["ranks"],
        "rows_logged": events,
        "rewards_answered_201": loaded["rewards"],
        "rewards_stored": stored_rewards,
        "rows_and_rewards_sent_unanswered": unanswered,
        # Requests in flight when wrk stopped may have been served without wrk reading the answer.
        "log_holds_every_answer": (
            loaded["ranks"] <= events <= loaded["ranks"] + unanswered
            and loaded["rewards"] <= stored_rewards <= loaded["rewards"] + unanswered
        ),
        "mix_cpu_cores_serving": loaded["mix_cpu_cores_serving"],
        "mix_cpu_cores_learner": loaded["mix_cpu_cores_learner"],
        "mix_cpu_cores_wrk": round(wrk_cores, 2),
        "learner_backlog_learned_after_last_window_s": round(catch_up, 1),
    }
    report("load", result)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
