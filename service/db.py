"""Database access for the web app: one connection per thread and process, reused across requests."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from flask import current_app

from bandits.storage import Database, connect

_local = threading.local()


def max_bytes(config: Mapping[str, Any]) -> int:
    """Return the database size cap of ``MAX_DATABASE_MB`` in bytes (0: none)."""
    return int(float(config.get("MAX_DATABASE_MB", 0.0)) * 1024 * 1024)


def open_db(config: Mapping[str, Any]) -> Database:
    """Open a new connection to the configured database, for a command or a background process."""
    return connect(config["DATABASE"], synchronous=str(config["SQLITE_SYNCHRONOUS"]))


def get_db() -> Database:
    """Return this thread's connection to the app's database (opened on first use, again after a fork).

    Serving connections never checkpoint inside a commit; ``service.runtime`` does it in the background.
    On PostgreSQL every thread's database shares the process's pool (``bandits.postgres``).
    """
    path = current_app.config["DATABASE"]
    cap = max_bytes(current_app.config)
    key = (os.getpid(), path, cap)  # apps with different caps on one file (tests) do not share a connection
    connections = getattr(_local, "connections", None)
    if connections is None or getattr(_local, "pid", None) != os.getpid():
        connections = _local.connections = {}
        _local.pid = os.getpid()
    db = connections.get(key)
    if db is None:
        db = connections[key] = connect(
            path, autocheckpoint=False, synchronous=current_app.config["SQLITE_SYNCHRONOUS"], max_bytes=cap
        )
    return db
