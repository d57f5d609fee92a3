"""gunicorn reads this file from the working directory: metrics that add up every worker.

prometheus-client decides when it is first imported whether metrics are shared through files, so
the folder is named here, before any worker imports the app (``service.metrics``). It is emptied
once, when the master starts; a worker the master reaps loses its live gauges and keeps its counts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from service import config as settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if "prometheus_client" in sys.modules:
    raise RuntimeError("prometheus_client was imported before gunicorn.conf.py could share metrics between workers")
if not os.environ.get(MULTIPROC_ENV):
    os.environ[MULTIPROC_ENV] = str(Path(settings.load()["DATA_DIR"]) / "metrics")


def on_starting(server: Any) -> None:
    """Start the metrics of this run from zero: remove the files of an earlier run."""
    path = Path(os.environ[MULTIPROC_ENV])
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Drop the live gauges of a worker that exited (kill -9 included); its counters stay counted."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
