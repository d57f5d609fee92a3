"""The learner: learns every impression whose reward window closed, exactly once, in time order.

One learner runs per database (an exclusive ``flock`` on ``<database>.learner.lock``). Each step
for a policy has three phases:

1. *close* (write transaction): mark due ``pending`` rows closed; from then on no reward can be
   credited to them, so their labels are fixed;
2. *learn* (no lock held): read the labels, learn the closed rows, in (due time, event) order, into
   the newest model, and serialize it;
3. *commit* (write transaction): publish the new model version, record every learned event and delete
   its ``pending`` row, all at once.

Serving waits for SQLite's write lock whenever the learner holds it, so both transactions hold it
for plain statements only: every read, every VW call and the model's serialization happen outside.
The learner runs at idle CPU priority, but its transactions run on a thread at normal priority
(``PriorityWrites``), so that serving processes busy on the other cores cannot stall it mid-transaction.

A crash between 1 and 3 leaves closed rows behind; the next step learns them again from the last
published model, which did not contain them, so nothing is learned twice or lost. If another model
version was published meanwhile (an import or a reset), the step's work is discarded and redone on it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import vowpal_wabbit_next as vw

from bandits.deployment import Deployment
from bandits.learn import tastes as taste_classes
from bandits.log.labels import closed_labels, mode_of, offered_titles
from bandits.log.maintenance import PruneSummary, prune
from bandits.model.policy import (
    ACTIONS,
    APPRENTICE,
    ARTWORK,
    LOGGING_ONLY,
    POLICY_NAMES,
    TITLES,
    PolicyConfig,
    latest_model,
    latest_versions,
    load_policy,
    new_workspace,
    publish,
)
from bandits.model.tried import Tried
from bandits.postgres import LEARNER_LOCK, SessionLock, is_url, lock_held, try_session_lock
from bandits.storage import Database, StorageBusy, Writes, connect, inline, write_transaction
from bandits.vw import blocks, features
from bandits.vw.options import learns_chosen_alone, model_options
from bandits.vw.workspace import CACHED_ACTION_LINES, TextExamples

log = logging.getLogger("marquee.learner")

T = TypeVar("T")


@dataclass
class StepResult:
    """What one learning step did for one policy."""

    policy: str
    events: int = 0
    examples: int = 0
    version: int | None = None
    discarded: bool = False


CLOSE_CHUNK = 200  # windows closed per write transaction: one UPDATE, well under a millisecond


def _close_due(db: Database, cfg: PolicyConfig, *, now: float, limit: int, writes: Writes = inline) -> int:
    """Phase 1: close the reward windows of up to ``limit`` due events, oldest first; return how many closed.

    Each chunk is one UPDATE and nothing else, because serving waits for the write lock while the
    learner holds it (and the learner may run at idle CPU priority, where a long transaction is
    easily preempted). Closing fixes the labels: from then on no reward is credited to the window,
    so ``closed_labels`` reads them afterwards without the lock. The aggregation rule and default
    reward in force at the close are recorded with each window, so a retried step learns the same labels.
    Each chunk's transaction is run by ``writes``.
    """
    rule = json.dumps(
        {"aggregation": cfg.aggregation, "default_reward": cfg.default_reward, "reward_values": cfg.reward_values}
    )

    def close(chunk: int) -> int:
        with write_transaction(db):
            return int(
                db.execute(
                    "UPDATE pending SET closed_at = ?, labels = ? WHERE policy = ? AND event_seq IN ("
                    "SELECT event_seq FROM pending WHERE policy = ? AND closed_at IS NULL AND due_at IS NOT NULL "
                    "AND due_at <= ? ORDER BY due_at, event_seq LIMIT ?)",
                    [now, rule, cfg.name, cfg.name, now, chunk],
                ).rowcount
            )

    closed = 0
    while closed < limit:
        count = writes(partial(close, min(CLOSE_CHUNK, limit - closed)))
        if count <= 0:
            break
        closed += count
    return closed


@dataclass(frozen=True, slots=True)
class Labelled:
    """One logged decision with its label: what a model learns from it.

    ``lines`` are the action lines of the decision's block (unlabelled), ``offered`` the indices of
    those it chose from, in the order offered, and ``chosen`` the index of the one it chose.
    """

    shared: str
    lines: Sequence[str]
    offered: Sequence[int]
    chosen: int
    cost: float
    probability: float

    def chosen_line(self) -> str:
        """The chosen action's line, unlabelled."""
        return self.lines[self.chosen]

    def labelled_line(self) -> str:
        """The chosen action's line with its CB label."""
        return features.labeled(self.lines[self.chosen], cost=self.cost, probability=self.probability)

    def example(self) -> list[str]:
        """The whole VW example: the shared line, then every action offered, the chosen one labelled."""
        lines, chosen = self.lines, self.chosen
        return [self.shared, *(self.labelled_line() if index == chosen else lines[index] for index in self.offered)]


def title_decisions(
    event: Mapping[str, Any],
    impressions: Sequence[Mapping[str, Any]],
    rewards: list[float],
    lines_of: Mapping[str, list[str]],
) -> list[Labelled]:
    """Return a row's title decisions, one per slot, as logged, each with its label."""
    lines = lines_of[event["title_block"]]
    left = list(range(len(lines)))
    decisions = []
    for impression, reward in zip(impressions, rewards):
        chosen = impression["title_index"]
        decisions.append(
            Labelled(
                shared=features.with_position(event["title_shared"], impression["position"]),
                lines=lines,
                offered=offered_titles(impression, left),
                chosen=chosen,
                cost=features.cost_of(reward),
                probability=impression["title_prob"],
            )
        )
        left.remove(chosen)
    return decisions


def artwork_decisions(
    event: Mapping[str, Any],
    impressions: Sequence[Mapping[str, Any]],
    rewards: list[float],
    lines_of: Mapping[str, list[str]],
) -> list[Labelled]:
    """Return a row's artwork decisions, one per shown title, as logged, each with its label."""
    lines = lines_of[event["title_block"]]
    decisions = []
    for impression, reward in zip(impressions, rewards):
        artworks = lines_of[impression["artwork_block"]]
        decisions.append(
            Labelled(
                shared=features.artwork_shared(event["title_shared"], lines[impression["title_index"]]),
                lines=artworks,
                offered=range(len(artworks)),
                chosen=impression["artwork_index"],
                cost=features.cost_of(reward),
                probability=impression["artwork_prob"],
            )
        )
    return decisions


def action_decisions(
    event: Mapping[str, Any],
    impressions: Sequence[Mapping[str, Any]],
    rewards: list[float],
    lines_of: Mapping[str, list[str]],
) -> list[Labelled]:
    """Return the decisions over inline actions (one pick each; no slot position), each with its label."""
    lines = lines_of[event["title_block"]]
    return [
        Labelled(
            shared=impression.get("shared") or event["title_shared"],  # a multi-slot ranking's slot has its own
            lines=lines,
            offered=offered_titles(impression, list(range(len(lines)))),
            chosen=impression["title_index"],
            cost=features.cost_of(reward),
            probability=impression["title_prob"],
        )
        for impression, reward in zip(impressions, rewards)
    ]


DECISION_BUILDERS = {TITLES: title_decisions, ARTWORK: artwork_decisions, ACTIONS: action_decisions}
IMITATION_ACTIONS = 10  # actions a decision that served the baseline teaches: the baseline and up to 9 others


def apprentice_examples(examples: Sequence[list[str]], *, default_reward: float, seed: int) -> list[list[str]]:
    """Return what apprentice decisions teach: the baseline's worth, and to prefer it where it earns something.

    A decision that served the baseline (the first action offered) becomes full-information
    examples, each labelled with probability 1: the baseline at the reward it earned, and every
    other action offered at ``default_reward``, what a shown action earns without a reward. The
    model so learns to prefer the baseline wherever the baseline earns more than nothing, and only
    there: it imitates the caller's choice as far as the rewards back it. A decision drawn by
    ``apprentice_exploration`` (another action served) is learned as an Online one, at its logged
    probability; those are what can teach the model to beat the baseline. Of a decision with more
    than ``IMITATION_ACTIONS`` actions, the baseline and ``IMITATION_ACTIONS - 1`` others drawn
    with ``seed`` are taught, which keeps the learner's work per decision bounded.
    """
    rng = random.Random(seed)
    taught = []
    default_cost = features.cost_of(default_reward)
    for example in examples:
        shared, actions = example[0], example[1:]
        label = features.label_of(actions[0]) if actions else None
        if label is None:  # explored: another action was served
            taught.append(example)
            continue
        cost = label[0]
        plain = [features.unlabeled(line) for line in actions]
        indices = list(range(len(plain)))
        if len(indices) > IMITATION_ACTIONS:
            indices = [0, *sorted(rng.sample(indices[1:], IMITATION_ACTIONS - 1))]
        for index in indices:
            lines = list(plain)
            lines[index] = features.labeled(plain[index], cost=cost if index == 0 else default_cost, probability=1.0)
            taught.append([shared, *lines])
    return taught


class Learner:
    """Learns closed impressions into new model versions for every policy."""

    def __init__(self, db: Database, config: Deployment, *, writes: Writes = inline) -> None:
        self.db = db
        self.config = config
        self.writes = writes  # runs the write transactions (PriorityWrites in the learner process)
        self._workspaces: dict[str, tuple[int, vw.Workspace, Tried | None]] = {}

    def _workspace(self, policy: str) -> tuple[int, vw.Workspace, Tried | None, Any]:
        record = latest_model(self.db, policy)
        if record is None:
            raise RuntimeError(f"policy {policy!r} has no model; the service creates version 0 at start")
        cached = self._workspaces.get(policy)
        if cached is None or cached[0] != record.version:
            cached = (record.version, new_workspace(record.vw_args, model_data=record.blob), Tried.loads(record.tried))
            self._workspaces[policy] = cached
        return cached[0], cached[1], cached[2], record

    def step(self, policy: str, *, now: float | None = None) -> StepResult:
        """Close due windows, learn every closed event of ``policy`` and publish one new version."""
        now = time.time() if now is None else now
        cfg = load_policy(self.db, self.config, policy)
        batch = self.config.learner_batch
        _close_due(self.db, cfg, now=now, limit=batch, writes=self.writes)
        closed = list(
            self.db.query(
                "SELECT p.event_seq, e.title_shared, e.title_block, e.modes FROM pending p "
                "JOIN events e ON e.seq = p.event_seq WHERE p.policy = ? AND p.closed_at IS NOT NULL "
                "ORDER BY p.due_at, p.event_seq LIMIT ?",
                [policy, batch],
            )
        )
        impressions: dict[int, list[dict[str, Any]]] = {}
        if closed:
            seqs = [event["event_seq"] for event in closed]
            for row in self.db.query(
                "SELECT event_seq, position, title_index, title_prob, artwork_block, artwork_index, artwork_prob, "
                "offered, shared "
                f"FROM impressions WHERE event_seq IN ({','.join('?' * len(seqs))}) ORDER BY event_seq, position",
                seqs,
            ):
                impressions.setdefault(row["event_seq"], []).append(row)
        result = StepResult(policy=policy)
        if not closed:
            return result
        keys = {event["title_block"] for event in closed}
        keys.update(row["artwork_block"] for rows in impressions.values() for row in rows)
        lines_of = blocks.load(self.db, keys)
        base_version, workspace, tried, record = self._workspace(policy)
        # Learning changes the workspace in place: until the commit succeeds it is no longer the
        # published version, so it must not be found in the cache by a retry.
        self._workspaces.pop(policy, None)
        chosen_alone = learns_chosen_alone(model_options(record.blob))
        examples_of = TextExamples(workspace, cached_actions=CACHED_ACTION_LINES, chosen_alone=chosen_alone)
        build = DECISION_BUILDERS[policy]
        labels = closed_labels(self.db, policy, [event["event_seq"] for event in closed])
        learned_rows = []
        for event in closed:
            rewards = labels[event["event_seq"]]
            mode = mode_of(event, policy)
            decisions = [] if mode == LOGGING_ONLY else build(event, impressions[event["event_seq"]], rewards, lines_of)
            if mode == APPRENTICE:
                examples = apprentice_examples(
                    [decision.example() for decision in decisions],
                    default_reward=cfg.default_reward,
                    seed=event["event_seq"],
                )
                for example in examples:
                    examples_of.learn(example)
                    if tried is not None:
                        tried.learn(example)
                learned_rows.append((event["event_seq"], len(examples)))
                continue
            for decision in decisions:
                if chosen_alone:
                    examples_of.learn_chosen(decision.shared, decision.labelled_line(), actions=len(decision.offered))
                else:
                    examples_of.learn(decision.example())
                if tried is not None:
                    tried.learn_action(decision.chosen_line())
            learned_rows.append((event["event_seq"], len(decisions)))
        result.events = len(learned_rows)
        result.examples = sum(n for _, n in learned_rows)
        blob = workspace.serialize() if result.examples else b""

        def commit() -> int | None:
            """Publish and record the step; None if another version was published meanwhile."""
            with write_transaction(self.db):
                if latest_versions(self.db).get(policy) != base_version:
                    return None
                if result.examples:
                    version = publish(
                        self.db,
                        policy=policy,
                        blob=blob,
                        vw_args=record.vw_args,
                        events_learned=record.events_learned + result.events,
                        examples_learned=record.examples_learned + result.examples,
                        origin="learner",
                        keep=self.config.model_versions_kept,
                        tried=tried,
                    )
                else:  # logging-only decisions: recorded as done, the model unchanged
                    version = base_version
                self.db.executemany(
                    "INSERT INTO learned (policy, event_seq, version, examples) VALUES (?, ?, ?, ?)",
                    [(policy, seq, version, n) for seq, n in learned_rows],
                )
                self.db.executemany(
                    "DELETE FROM pending WHERE policy = ? AND event_seq = ?", [(policy, seq) for seq, _ in learned_rows]
                )
            return version

        version = self.writes(commit)
        if version is None:  # an import or reset published a version meanwhile: redo this work on top of it
            result.discarded = True
            return result
        self._workspaces[policy] = (version, workspace, tried)
        result.version = version
        return result

    def run_once(self, *, now: float | None = None) -> dict[str, StepResult]:
        """Learn everything due for every policy (in batches); return per-policy totals."""
        batch = self.config.learner_batch
        totals: dict[str, StepResult] = {}
        for policy in POLICY_NAMES:
            total = totals[policy] = StepResult(policy=policy)
            while True:
                step = self.step(policy, now=now)
                if step.discarded:
                    continue
                total.events += step.events
                total.examples += step.examples
                total.version = step.version if step.version is not None else total.version
                if step.events < batch:
                    break
        return totals


def lock_path(database: str | Path) -> Path:
    """Return the path of the learner's lock file for a database."""
    return Path(f"{database}.learner.lock")


def try_lock(database: str | Path) -> int | None:
    """Take the learner lock without waiting; return the open descriptor, or None if another holds it."""
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def learner_running(database: str | Path) -> bool:
    """Whether a learner holds the deployment's learner lock (looked at without taking it for long)."""
    if is_url(database):
        return lock_held(str(database), LEARNER_LOCK)
    fd = try_lock(database)
    if fd is None:
        return True
    os.close(fd)
    return False


def lower_priority(priority: str) -> None:
    """Make the calling thread yield the CPU to serving: ``idle`` (SCHED_IDLE), ``low`` (nice 10) or ``normal``.

    On Linux both the scheduling policy and the nice value belong to the thread; threads started
    afterwards by this one inherit them, threads started before keep their own (``PriorityWrites``).
    """
    if priority == "idle" and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    elif priority in ("idle", "low"):
        os.nice(10)
    elif priority != "normal":
        raise ValueError(f"LEARNER_PRIORITY must be idle, low or normal, got {priority!r}")


def keep_to_one_cpu(choice: str) -> int | None:
    """Keep every thread of this process, and those it starts later, on one CPU; return it (None: ``any``).

    ``choice``: ``last`` (the last CPU the process may use), a CPU number, or ``any`` (no change).
    The learner's VW updates and log reads run in bursts once a second at idle priority; wherever the
    OS put them, the serving request that preempted them found that core's caches full of the learner's
    data. Kept to one CPU, the learner leaves the others' caches to serving: measured at 500 rows/s on
    two cores, p99 7.9 to 9.7 ms in five runs against 9.3 to 14.1 unpinned (BENCHMARKS.md).
    """
    if choice == "any" or not hasattr(os, "sched_setaffinity"):
        return None
    cpu = max(os.sched_getaffinity(0)) if choice == "last" else int(choice)
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except FileNotFoundError:  # no /proc: this thread, and the threads it starts from now on
        threads = [0]
    for thread in threads:
        try:
            os.sched_setaffinity(thread, {cpu})
        except ProcessLookupError:  # a thread that ended since the listing
            continue
    return cpu


class PriorityWrites:
    """Runs the learner's write transactions on a thread that keeps the priority the process started with.

    The learner learns at idle CPU priority, so that it only takes CPU time serving leaves. While it
    holds SQLite's write lock, though, every serving process that logs a decision waits for it, and
    a thread at idle priority is preempted by each busy serving process in turn: measured at 500
    rows/s on two cores, its commit transactions took 6 to 8 ms of CPU but held the lock 30 to 40 ms,
    and serving waited up to 85 ms. Made before ``lower_priority``, this thread keeps normal priority,
    so the lock is held only as long as the statements take. The calling thread waits meanwhile,
    holding no GIL, so only the transaction runs at normal priority.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="marquee-learner-writes")
        self.thread_id = self._pool.submit(threading.get_native_id).result()  # started now, before the priority drops

    def __call__(self, work: Callable[[], T], /) -> T:
        """Run ``work`` (a write transaction) on the writer thread and return its result or raise its error."""
        return self._pool.submit(work).result()

    def close(self) -> None:
        """Stop the writer thread."""
        self._pool.shutdown(wait=True)


class Retention:
    """Prunes decisions older than ``days`` (0: never) at most once every ``every`` seconds."""

    def __init__(self, days: float, *, every: float = 3600.0) -> None:
        self.days = days
        self.every = every
        self.next_at = 0.0  # monotonic time of the next prune: the first round prunes

    def run_if_due(self, db: Database, *, now: float | None = None, writes: Writes = inline) -> PruneSummary | None:
        """Prune if retention is on and the last prune is ``every`` seconds old; return what it removed."""
        if self.days <= 0 or time.monotonic() < self.next_at:
            return None
        self.next_at = time.monotonic() + self.every
        return prune(db, older_than=(time.time() if now is None else now) - self.days * 86400.0, writes=writes)


def serve_forever(
    config: Deployment,
    *,
    parent_pid: int | None = None,
    lock_fd: int | None = None,
    checks: Callable[[Database, Writes], object],
) -> int:
    """Run the learner until the parent process goes away; return an exit code.

    ``checks(db, writes)`` runs after each learning step: the periodic work of the layers above the
    learner (apprentice switches, optimizations due), composed by ``service.workers``.

    ``lock_fd`` is the learner lock taken by the process that started this one (``try_lock``);
    without it the learner takes the lock itself, and exits if another learner holds it. On
    PostgreSQL the lock is an advisory lock held by a session of the learner's own, for every node
    of the deployment; the learner exits when that session ends (the server restarted, the network
    failed), since another node may then have taken the lock, and its supervisor starts a new one.
    """
    session: SessionLock | None = None
    if is_url(config.database):
        session = try_session_lock(config.database, LEARNER_LOCK)
        elected = session is not None
    else:
        elected = (try_lock(config.database) if lock_fd is None else lock_fd) is not None
    if not elected:
        log.info("another learner holds the lock; exiting")
        return 0
    cpu = keep_to_one_cpu(config.learner_cpu)
    writes = PriorityWrites()
    lower_priority(config.learner_priority)
    db = connect(
        config.database,
        synchronous=config.sqlite_synchronous,
        max_bytes=config.max_bytes,
    )
    learner = Learner(db, config, writes=writes)
    log.info("learner started (pid %s%s)", os.getpid(), "" if cpu is None else f", on CPU {cpu}")
    try:
        _learn_until_orphaned(
            db,
            config,
            learner,
            writes,
            parent_pid=parent_pid,
            checks=checks,
            elected=(lambda: True) if session is None else session.held,
        )
    finally:
        writes.close()
        if session is not None:
            session.release()
    return 0


def _learn_until_orphaned(
    db: Database,
    config: Deployment,
    learner: Learner,
    writes: Writes,
    *,
    parent_pid: int | None,
    checks: Callable[[Database, Writes], object],
    elected: Callable[[], bool],
) -> None:
    """Learn, run the checks and prune, once every interval, while ``parent_pid`` is the parent and ``elected()``."""
    interval = config.learner_interval_seconds
    retention = Retention(config.retention_days)
    while True:
        if parent_pid is not None and os.getppid() != parent_pid:
            log.info("parent process is gone; learner exiting")
            return
        if not elected():
            log.warning("the learner lock's session ended; exiting so that one learner is elected again")
            return
        started = time.monotonic()
        try:
            results = learner.run_once()
            checks(db, writes)
            pruned = retention.run_if_due(db, writes=writes)
            if pruned is not None and pruned.events:
                log.info(
                    "retention: pruned %d events (%d impressions, %d rewards) in %d batches",
                    pruned.events,
                    pruned.impressions,
                    pruned.rewards,
                    pruned.batches,
                )
            refitted = taste_classes.refit_if_due(db, config, writes=writes)
            if refitted is not None:
                log.info(
                    "taste classes: fit %d placed %d of %d viewers (%d impressions, decisions up to %d)",
                    refitted.fit,
                    refitted.placed,
                    refitted.viewers,
                    refitted.impressions,
                    refitted.last_event,
                )
        except StorageBusy as exc:
            log.warning("database busy, retrying next round: %s", exc)
            results = {}
        for result in results.values():
            if result.events:
                log.info(
                    "policy %s: learned %d events (%d examples) -> version %s",
                    result.policy,
                    result.events,
                    result.examples,
                    result.version,
                )
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
