"""Marquee's background processes, and how the service starts them.

``python -m service.workers learner [--parent-pid PID] [--lock-fd FD]``: the learner, started by
each serving process's watchdog (``service.runtime.LearnerSupervisor``).
``python -m service.workers evaluation <id>``: one queued evaluation (``bandits.evaluate.runs``).
``python -m service.workers optimization <id>``: one optimization (``bandits.evaluate.optimize``), started by
``POST /v1/optimizations`` or by the learner's schedule.

Each reads the deployment's settings once, here, from the ``MARQUEE_*`` variables its starter set
(``child_environment``), and hands them down; nothing under ``bandits/`` reads them itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bandits.deployment import Deployment
from bandits.evaluate import apprentice, optimize, runs
from bandits.learn import learner
from bandits.storage import Database, Writes
from service import config as settings

log = logging.getLogger(__name__)

WORKERS = ("learner", "evaluation", "optimization")
WORK: dict[str, Callable[[Deployment, str], str]] = {"evaluation": runs.run, "optimization": optimize.run}


def command(worker: str, *args: str) -> list[str]:
    """Return the command line that starts ``worker`` with ``args``."""
    if worker not in WORKERS:
        raise ValueError(f"worker: one of {', '.join(WORKERS)}, got {worker!r}")
    return [sys.executable, "-m", "service.workers", worker, *args]


def child_environment(config: Mapping[str, Any]) -> dict[str, str]:
    """Return the environment of a background process: this app's settings as ``MARQUEE_*``."""
    env = dict(os.environ)
    for name in settings.SETTINGS:
        value = config[name]
        env[f"MARQUEE_{name}"] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.PROJECT_ROOT), env.get("PYTHONPATH", "")]))
    return env


def spawn(config: Mapping[str, Any], worker: str, run_id: str) -> int:
    """Start ``worker`` on ``run_id`` with the settings ``config``; return its pid.

    A thread of this process waits for it, so that it does not linger as a zombie when it ends.
    """
    process = subprocess.Popen(
        command(worker, run_id),
        env=child_environment(config),
        cwd=str(settings.PROJECT_ROOT),
        stdin=subprocess.DEVNULL,
    )
    threading.Thread(target=process.wait, name=f"marquee-{worker}-{run_id}", daemon=True).start()
    log.info("started %s %s in process %s", worker, run_id, process.pid)
    return process.pid


def learner_checks(config: Mapping[str, Any]) -> Callable[[Database, Writes], None]:
    """Return the learner's periodic checks: apprentice policies ready to switch, and optimizations due
    (each started in its own process)."""
    switch = apprentice.SwitchCheck()
    optimizations = optimize.Schedule(start=lambda optimization_id: spawn(config, "optimization", optimization_id))
    deployment = settings.typed(config)

    def checks(db: Database, writes: Writes) -> None:
        switch.run_if_due(db, deployment, writes=writes)
        optimizations.run_if_due(db, deployment)

    return checks


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service.workers", description="Run one of Marquee's processes.")
    chosen = parser.add_subparsers(dest="worker", required=True)
    learning = chosen.add_parser("learner", help="learn from the log until the parent process goes away")
    learning.add_argument("--parent-pid", type=int, default=None, help="exit when this process is no longer the parent")
    learning.add_argument("--lock-fd", type=int, default=None, help="an open descriptor holding the learner lock")
    for worker, what in (("evaluation", "run one queued evaluation"), ("optimization", "run one optimization")):
        chosen.add_parser(worker, help=what).add_argument("id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker the arguments name, with the settings of the ``MARQUEE_*`` variables."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [{args.worker}] %(message)s", stream=sys.stderr)
    logging.getLogger("vowpal_wabbit_next").setLevel(logging.WARNING)  # not VW's banner for every workspace
    config = settings.load()
    deployment = settings.typed(config)
    if args.worker == "learner":
        return learner.serve_forever(
            deployment, parent_pid=args.parent_pid, lock_fd=args.lock_fd, checks=learner_checks(config)
        )
    learner.lower_priority(deployment.learner_priority)
    status = WORK[args.worker](deployment, args.id)
    logging.getLogger(f"marquee.{args.worker}").info("%s %s: %s", args.worker, args.id, status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
