"""Database access for the web app: one connection per thread and process, reused across requests."""

from __future__ import annotations

import os
import threading

import sqlite_utils
from flask import current_app

from bandits.storage import connect

_local = threading.local()


def get_db() -> sqlite_utils.Database:
    """Return this thread's connection to the app's database (opened on first use, again after a fork).

    Serving connections never checkpoint inside a commit; ``service.runtime`` does it in the background.
    """
    path = current_app.config["DATABASE"]
    key = (os.getpid(), path)
    connections = getattr(_local, "connections", None)
    if connections is None or getattr(_local, "pid", None) != os.getpid():
        connections = _local.connections = {}
        _local.pid = os.getpid()
    db = connections.get(key)
    if db is None:
        db = connections[key] = connect(path, autocheckpoint=False,
                                         synchronous=current_app.config["SQLITE_SYNCHRONOUS"])
    return db
