"""Per-process serving state: the loaded models and catalog, exploration randomness, and the learner.

A serving process keeps the newest model of each policy, the policies' settings and a snapshot of
the catalog in memory. Before each decision it reads their version counters (one small query):
a changed catalog or setting is reloaded at once, so a retired title is never chosen after its
DELETE returned. A new model version is not built inside a request: VW holds the GIL while it builds
a workspace (3 to 6 ms, whatever the -b), so a request that arrived meanwhile would wait that long.
Built by a background thread, a version a second of titles and artwork tripled the p99 at 500
rows/s (BENCHMARKS.md). So a request that finds a version due leaves it to be built after its own
answer has been sent (``after_response``), before its gunicorn worker takes the next connection:
meanwhile the other workers take the new ones. A process that serves no request for a second builds
it in its background thread. Every process serves a new version within about a second. The
background thread checkpoints SQLite's WAL, which serving connections never do inside a request's
commit.
Randomness is created per process (after any fork), so gunicorn workers never share an
exploration sequence.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from flask import Flask, Response

from assets.catalog import CATALOG_VERSION, CatalogSnapshot, load_snapshot
from bandits.decide.row import RowDecision
from bandits.deployment import Deployment
from bandits.learn.learner import learner_running, try_lock
from bandits.log.eventlog import log_decision
from bandits.model.policy import (
    POLICIES_VERSION,
    POLICY_NAMES,
    ROW_POLICIES,
    PolicyConfig,
    PolicyError,
    ServingModel,
    latest_model,
    load_policy,
)
from bandits.postgres import STARTING_LOCK, is_url, try_session_lock
from bandits.storage import Database, StorageError, checkpoint, connect
from service import metrics, workers
from service.config import PROJECT_ROOT
from service.db import get_db

log = logging.getLogger("marquee.runtime")

MODEL_POLL_SECONDS = 0.25  # how often a serving process looks for new model versions by itself
IDLE_LOAD_SECONDS = 1.0  # how long a due version waits for a request to build it before the background thread does
CHECKPOINT_SECONDS = 1.0  # how often it copies the WAL into the database file


class ServingState:
    """Models and catalog of one process, refreshed when the database says they changed."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.rng = np.random.default_rng()  # fresh OS entropy in every process
        self.models: dict[str, ServingModel] = {}
        self.snapshot: CatalogSnapshot | None = None
        self.policies: dict[str, PolicyConfig] = {}
        self._policies_version: int | None = None
        self._lock = threading.Lock()
        # The background thread's pause between polls: an Event's wait, which nothing sets, rather than
        # time.sleep, which tests patch (service.runtime's watchdog) while such threads run.
        self._pause = threading.Event()
        self._due_since: float | None = None  # when a newer model version was first seen and not yet loaded
        self._loading = threading.Lock()  # one build of due versions at a time, by a request or the background
        self._background: threading.Thread | None = None
        self._frozen = False

    @staticmethod
    def _versions(db: Database) -> dict[str, int]:
        rows = db.execute(
            "SELECT 'catalog', value FROM meta WHERE key = ? "
            "UNION ALL SELECT 'policies', value FROM meta WHERE key = ? "
            "UNION ALL SELECT policy, MAX(version) FROM models GROUP BY policy",
            [CATALOG_VERSION, POLICIES_VERSION],
        ).fetchall()
        return dict(rows)

    def _stale(self, versions: Mapping[str, int]) -> list[str]:
        """Return the policies whose loaded model is not the newest version."""
        return [
            name
            for name in POLICY_NAMES
            if name in versions and (name not in self.models or self.models[name].version != versions[name])
        ]

    def _refresh_policies(self, db: Database, config: Deployment, versions: Mapping[str, int]) -> None:
        with self._lock:
            if not self.policies or self._policies_version != versions.get("policies"):
                self.policies = {name: load_policy(db, config, name) for name in POLICY_NAMES}
                self._policies_version = versions.get("policies")

    def current_policies(self, db: Database, config: Deployment) -> dict[str, PolicyConfig]:
        """Return the policies' current settings (all a reward or an activation needs; no catalog, no models)."""
        self._refresh_policies(db, config, self._versions(db))
        return self.policies

    def refresh(self, db: Database, config: Deployment, *, wait_for_models: bool = True) -> None:
        """Reload whatever changed; models in the background unless ``wait_for_models`` (or none is loaded)."""
        versions = self._versions(db)
        self._refresh_policies(db, config, versions)
        with self._lock:
            if self.snapshot is None or self.snapshot.version != versions.get("catalog"):
                self.snapshot = load_snapshot(db)
        self._start_background(config)
        stale = self._stale(versions)
        if not stale:
            return
        if wait_for_models or any(name not in self.models for name in stale):
            with self._loading:
                self._load_models(db, stale)
            if not self._frozen:
                # Everything loaded so far (modules, the app, models, catalog) lives as long as the
                # process: keep it out of the cyclic garbage collector, whose full passes over it
                # took ~13 ms and landed on whichever request triggered them.
                gc.freeze()
                self._frozen = True
        else:
            self._mark_due()

    def _mark_due(self) -> None:
        if self._due_since is None:
            self._due_since = time.monotonic()

    @property
    def models_due(self) -> bool:
        """Whether a newer model version was seen and is not loaded yet."""
        return self._due_since is not None

    def load_due(self, db: Database, turns: Path | None = None) -> None:
        """Load one newer model version seen, unless another thread or worker is loading one; log what fails.

        Called after a response has been sent (``after_response``), one policy's version at a time
        (the others on the next responses), and by one worker of the machine at a time (``turns``, a
        lock file the workers share), so that the others stay free to take the new connections. A
        database or model that fails leaves the versions due, for the next request or the background.
        """
        try:
            self._load_due(db, turns=turns, only_one=True)
        except (*StorageError, PolicyError, OSError) as exc:
            log.warning("loading a new model version after a response failed: %s", exc)

    def _load_due(self, db: Database, *, turns: Path | None, only_one: bool) -> None:
        if self._due_since is None or not self._loading.acquire(blocking=False):
            return
        try:
            with _turn(turns) as ours:
                if not ours:  # another worker is loading: this one stays free, and tries after its next answer
                    return
                due_since, self._due_since = self._due_since, None
                try:
                    stale = self._stale(self._versions(db))
                    if stale:
                        self._load_models(db, stale[:1] if only_one else stale)
                        if only_one and len(stale) > 1:
                            self._mark_due()
                except BaseException:
                    self._due_since = due_since
                    raise
        finally:
            self._loading.release()

    def _load_models(self, db: Database, names: list[str]) -> None:
        loaded = {}
        for name in names:
            record = latest_model(db, name)
            if record is not None:
                loaded[name] = ServingModel(record)
        with self._lock:
            models = dict(self.models)
            for name, model in loaded.items():
                if name not in models or models[name].version < model.version:
                    models[name] = model
            self.models = models  # one reference swap: a request sees old or new models, never a mix
        for name, model in models.items():
            metrics.serving(name, model.version)

    def _start_background(self, config: Deployment) -> None:
        if self._background is not None and self._background.is_alive():
            return
        with self._lock:
            if self._background is None or not self._background.is_alive():
                self._background = threading.Thread(
                    target=self._background_forever,
                    args=(config.database, config.sqlite_synchronous),
                    name="marquee-background",
                    daemon=True,
                )
                self._background.start()

    def _background_forever(self, database: str, synchronous: str) -> None:
        """Load new model versions as they appear, and checkpoint the WAL about once a second."""
        db = connect(database, autocheckpoint=False, synchronous=synchronous)
        last_checkpoint = time.monotonic()
        failures = 0
        while True:
            self._pause.wait(timeout=MODEL_POLL_SECONDS * (1 + min(failures, 20)))
            try:
                stale = self._stale(self._versions(db))
                if stale:
                    self._mark_due()
                    due_since = self._due_since
                    if due_since is not None and time.monotonic() - due_since >= IDLE_LOAD_SECONDS:
                        self._load_due(db, turns=None, only_one=False)  # no request took it: this process is idle
                if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                    checkpoint(db)  # SQLite releases the GIL meanwhile; requests go on
                    last_checkpoint = time.monotonic()
                failures = 0
            except (*StorageError, PolicyError, OSError) as exc:
                # A locked or unreadable database, or a model that will not load: keep serving what
                # is loaded, say so, and try again with a growing pause.
                failures += 1
                log.warning("background refresh failed (%d in a row): %s", failures, exc)


_states: dict[tuple[int, str], ServingState] = {}
_states_lock = threading.Lock()


def serving_state(database: str) -> ServingState:
    """Return this process's serving state for a database (a new one after a fork)."""
    key = (os.getpid(), database)
    state = _states.get(key)
    if state is None:
        with _states_lock:
            state = _states.get(key)
            if state is None:
                state = _states[key] = ServingState()
    return state


T = TypeVar("T")


def after_response(app: Flask) -> None:
    """Have a request that found a new model version due load it once its response is sent.

    ``call_on_close`` runs when the server closes the response, after its last byte was written:
    under gunicorn's sync workers, before the worker accepts its next connection.
    """

    turns = Path(app.config["DATA_DIR"]) / "model-loads.lock"

    @app.after_request
    def _load_after_sending(response: Response) -> Response:
        state = _states.get((os.getpid(), app.config["DATABASE"]))
        if state is not None and state.models_due:
            response.call_on_close(functools.partial(state.load_due, get_db(), turns))
        return response


@contextlib.contextmanager
def _turn(path: Path | None) -> Iterator[bool]:
    """Hold the lock file ``path`` if no other process holds it (yield True), else yield False; None: always ours."""
    if path is None:
        yield True
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the file releases the lock


def rank_and_log(
    db: Database,
    config: Deployment,
    *,
    decide: Callable[[ServingState], T],
    decision_of: Callable[[T], RowDecision],
    event_id: str,
    user_id: str | None,
    context: Mapping[str, Any],
    deferred: bool,
    kind: str | None = None,
    learned_by: Sequence[str] = ROW_POLICIES,
) -> tuple[T, ServingState]:
    """The rank use case, for every API that ranks: refresh this process's serving state, decide with
    it (``decide``), log the decision before anything is answered, count it; return what ``decide``
    returned and the state it decided with.
    """
    state = serving_state(config.database)
    state.refresh(db, config, wait_for_models=False)
    made = decide(state)
    decision = decision_of(made)
    log_decision(
        db,
        database=config.database,
        event_id=event_id,
        decision=decision,
        user_id=user_id,
        context=context,
        deferred=deferred,
        policies=state.policies,
        kind=kind,
        learned_by=learned_by,
    )
    metrics.decision(decision.slots)
    return made, state


class LearnerSupervisor:
    """Keeps one learner process running per database, from whichever serving process sees it missing.

    Every serving process runs this watchdog thread. Once a second it tries the learner's lock; if
    nobody holds it, it starts ``python -m service.workers learner`` holding it (passed as ``--lock-fd``), so
    exactly one learner starts however many serving processes see it missing at once. The learner exits
    when the process that started it does, and another watchdog starts a new one within about a second.
    On PostgreSQL the lock is the deployment's advisory lock, seen from every node: the watchdog starts
    a learner when nobody holds it, and the learner takes it itself (``bandits.learn.learner.serve_forever``).
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = time.monotonic()
        self.launched_at = 0.0  # when the current learner process was started
        self.failures = 0  # learners in a row that failed soon after they started
        self.thread = threading.Thread(target=self._run, name="marquee-learner-watchdog", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self.thread.start()

    def _run(self) -> None:
        while True:
            if self.process is not None:
                time.sleep(1.0)
            if self.process is not None and self.process.poll() is None:
                continue
            if self.process is not None:
                self._pause_after(self.process)
            self.process = None  # reaped (or never started)
            try:
                self._start_if_missing()
            except (*StorageError, OSError) as exc:  # the database is unreachable: the next round tries again
                log.warning("learner watchdog: %s", exc)
                time.sleep(1.0)

    def _pause_after(self, process: subprocess.Popen[bytes]) -> None:
        """After a learner that failed soon after it started, wait longer each time before the next (up to a minute).

        A learner that cannot start (a store it cannot open, a model it cannot load) would otherwise be
        started again every second, each start costing a second of CPU that serving needs.
        """
        # A learner killed by a signal (kill -9, the OOM killer) did not fail by itself: start one at once.
        if process.returncode <= 0 or time.monotonic() - self.launched_at >= LEARNER_HEALTHY_SECONDS:
            self.failures = 0
            return
        self.failures += 1
        pause = min(LEARNER_MAX_PAUSE_SECONDS, 2.0**self.failures)
        log.warning("learner exited with status %s after a short run; next start in %.0f s", process.returncode, pause)
        time.sleep(pause)

    def _start_if_missing(self) -> None:
        database = self.config["DATABASE"]
        command = workers.command("learner", "--parent-pid", str(os.getpid()))
        if is_url(database):
            # PostgreSQL: the learner takes the deployment's advisory lock itself, from whichever node; if
            # two nodes start one at once, the second finds the lock taken and exits, and its watchdog waits.
            if learner_running(database):
                time.sleep(1.0)
                return
            # While it starts one, the watchdog holds a second lock, so that no other node starts one too.
            starting = try_session_lock(database, STARTING_LOCK)
            if starting is None:
                time.sleep(1.0)
                return
            try:
                if learner_running(database):  # elected while this watchdog took the starting lock
                    return
                self.process = subprocess.Popen(
                    command, env=workers.child_environment(self.config), cwd=str(PROJECT_ROOT)
                )
                deadline = time.monotonic() + LEARNER_START_GRACE_SECONDS
                while self.process.poll() is None and time.monotonic() < deadline and not learner_running(database):
                    time.sleep(0.05)
            finally:
                starting.release()
        else:
            fd = try_lock(database)
            if fd is None:
                time.sleep(1.0)
                return
            # The new learner inherits the lock itself (a flock belongs to the open file, which the child
            # shares): no other watchdog can start a second learner while this one is still importing.
            try:
                self.process = subprocess.Popen(
                    [*command, "--lock-fd", str(fd)],
                    env=workers.child_environment(self.config),
                    cwd=str(PROJECT_ROOT),
                    pass_fds=(fd,),
                )
            finally:
                os.close(fd)
        self.launched_at = time.monotonic()
        log.info("started learner process %s", self.process.pid)
        time.sleep(0.2)


_supervisors: dict[tuple[int, str], LearnerSupervisor] = {}


LEARNER_START_GRACE_SECONDS = 10.0
LEARNER_HEALTHY_SECONDS = 30.0  # a learner that ran this long before it exited did not fail at start
LEARNER_MAX_PAUSE_SECONDS = 60.0


def learner_starting(config: Mapping[str, Any]) -> bool:
    """Whether this process began supervising the learner so recently that it may still be starting."""
    supervisor = _supervisors.get((os.getpid(), config["DATABASE"]))
    return supervisor is not None and time.monotonic() - supervisor.started_at < LEARNER_START_GRACE_SECONDS


def ensure_learner(config: Mapping[str, Any]) -> None:
    """Start this process's learner watchdog once (per process and database)."""
    key = (os.getpid(), config["DATABASE"])
    if key in _supervisors:
        return
    with _states_lock:
        if key not in _supervisors:
            supervisor = _supervisors[key] = LearnerSupervisor(config)
            supervisor.start()
