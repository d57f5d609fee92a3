"""Evaluation runs: a stored request, the background process that works on it, and its report.

``POST /v1/evaluations`` stores a run as ``queued`` and starts ``python -m service.workers evaluation <id>``
(``run``) at the learner's CPU priority, so that serving keeps the CPU; that process marks it ``running``, reports
its progress, and stores the report (``done``) or the reason it could not (``failed``). A thread of
the process touches ``heartbeat_at`` every few seconds; a run whose heartbeat stopped for
``STALE_SECONDS`` (the process was killed, the machine restarted) is reported ``failed``, never left
``running`` for ever.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bandits.deployment import Deployment
from bandits.errors import Rejected
from bandits.evaluate import offline
from bandits.evaluate.passes import Trained
from bandits.model import policy as policies
from bandits.model.exploration import SQUARECB
from bandits.model.tried import Tried
from bandits.storage import Database, connect, write_transaction

log = logging.getLogger("marquee.runs")

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 30.0
PROGRESS_SECONDS = 0.5  # least time between two progress writes
STATUSES = ("queued", "running", "done", "failed")
ACTIVE = ("queued", "running")
MAX_ACTIVE = 2  # evaluations queued or running at once; each takes a core while it runs


def connect_for(config: Deployment) -> Database:
    """Open the configured database as a background process does."""
    return connect(config.database, synchronous=config.sqlite_synchronous)


def create(db: Database, spec: offline.EvaluationSpec, *, now: float | None = None) -> str:
    """Store a queued run of ``spec`` and return its id."""
    with write_transaction(db):
        return insert(db, spec, now=now)


def insert(db: Database, spec: offline.EvaluationSpec, *, now: float | None = None) -> str:
    """Store a queued run of ``spec`` inside the caller's write transaction; return its id."""
    now = time.time() if now is None else now
    run_id = f"ev-{uuid.uuid4().hex[:16]}"
    db.execute(
        "INSERT INTO evaluations (id, created_at, policy, request, status, heartbeat_at) "
        "VALUES (?, ?, ?, ?, 'queued', ?)",
        [run_id, now, spec.policy or "", json.dumps(spec.as_dict()), now],
    )
    return run_id


def _expire_stale(db: Database, now: float) -> None:
    """Mark failed every active run whose process stopped giving signs of life."""
    cutoff = now - STALE_SECONDS
    if (
        db.execute(
            "SELECT 1 FROM evaluations WHERE status IN ('queued', 'running') AND heartbeat_at < ? LIMIT 1", [cutoff]
        ).fetchone()
        is None
    ):
        return
    with write_transaction(db):
        db.execute(
            "UPDATE evaluations SET status = 'failed', finished_at = ?, error = ? "
            "WHERE status IN ('queued', 'running') AND heartbeat_at < ?",
            [
                now,
                f"the evaluation process stopped without finishing (no sign of life for {STALE_SECONDS:g} s)",
                cutoff,
            ],
        )


def active_count(db: Database, *, now: float | None = None) -> int:
    """Return how many runs are queued or running (after expiring the stale ones)."""
    _expire_stale(db, time.time() if now is None else now)
    return count_active(db)


def count_active(db: Database) -> int:
    """Return how many runs are queued or running, as stored (inside a caller's transaction, say)."""
    return int(db.execute("SELECT COUNT(*) FROM evaluations WHERE status IN ('queued', 'running')").fetchone()[0])


def _public(row: Mapping[str, Any], *, with_result: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row["id"],
        "status": row["status"],
        "policy": row["policy"] or None,
        "progress": row["progress"],
        "stage": row["stage"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "request": json.loads(row["request"]),
        "error": row["error"],
    }
    if with_result:
        data["result"] = json.loads(row["result"]) if row["result"] else None
    return data


def get(db: Database, run_id: str, *, now: float | None = None) -> dict[str, Any] | None:
    """Return a run with its report (None if there is no such run)."""
    _expire_stale(db, time.time() if now is None else now)
    rows = list(db.query("SELECT * FROM evaluations WHERE id = ?", [run_id]))
    return _public(rows[0], with_result=True) if rows else None


def recent(db: Database, *, limit: int = 50, now: float | None = None) -> list[dict[str, Any]]:
    """Return the newest runs, without their reports."""
    _expire_stale(db, time.time() if now is None else now)
    return [
        _public(row, with_result=False)
        for row in db.query("SELECT * FROM evaluations ORDER BY created_at DESC LIMIT ?", [limit])
    ]


class _Reporter:
    """Writes a run's progress at most every ``PROGRESS_SECONDS``, and its heartbeat from a thread."""

    def __init__(self, database: str, run_id: str, *, synchronous: str) -> None:
        self.database, self.run_id, self.synchronous = database, run_id, synchronous
        self.db = connect(database, synchronous=synchronous)
        self._last = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="marquee-evaluation-heartbeat", daemon=True)

    def __enter__(self) -> _Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        db = connect(self.database, synchronous=self.synchronous)
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with write_transaction(db):
                db.execute("UPDATE evaluations SET heartbeat_at = ? WHERE id = ?", [time.time(), self.run_id])
        db.close()

    def __call__(self, fraction: float, stage: str) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_SECONDS:
            return
        self._last = now
        with write_transaction(self.db):
            self.db.execute(
                "UPDATE evaluations SET progress = ?, stage = ?, heartbeat_at = ? WHERE id = ?",
                [round(fraction, 4), stage, time.time(), self.run_id],
            )


def _finish(
    db: Database,
    run_id: str,
    *,
    status: str,
    result: Any = None,
    error: str | None = None,
    trained: Mapping[str, Trained] | None = None,
) -> None:
    with write_transaction(db):
        if trained:
            db.executemany(
                "INSERT INTO evaluation_models (run_id, candidate, blob, tried) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run_id, candidate) DO UPDATE SET blob = excluded.blob, tried = excluded.tried",
                [(run_id, name, model.blob, model.tried) for name, model in trained.items()],
            )
        db.execute(
            "UPDATE evaluations SET status = ?, progress = CASE WHEN ? = 'done' THEN 1.0 ELSE progress END, "
            "stage = NULL, finished_at = ?, result = ?, error = ? WHERE id = ?",
            [status, status, time.time(), json.dumps(result) if result is not None else None, error, run_id],
        )


def run(config: Deployment, run_id: str) -> str:
    """Work on a queued run to the end; return its final status.

    A request the log cannot answer (``offline.SpecError``) fails the run with that message; any
    other error fails it as an internal error, is logged with its traceback, and is raised again.
    """
    synchronous = config.sqlite_synchronous
    db = connect_for(config)
    with write_transaction(db):
        claimed = db.execute(
            "UPDATE evaluations SET status = 'running', started_at = ?, heartbeat_at = ?, pid = ? "
            "WHERE id = ? AND status = 'queued'",
            [time.time(), time.time(), os.getpid(), run_id],
        ).rowcount
    if claimed != 1:
        raise LookupError(f"evaluation {run_id!r} does not exist or is not queued")
    row = db.execute("SELECT request FROM evaluations WHERE id = ?", [run_id]).fetchone()
    try:
        spec = offline.parse_spec(json.loads(row[0]))
        trained: dict[str, Trained] = {}
        with _Reporter(config.database, run_id, synchronous=synchronous) as reporter:
            report = offline.evaluate(db, config, spec, progress=reporter, trained=trained)
    except offline.SpecError as exc:
        _finish(db, run_id, status="failed", error=str(exc))
        return "failed"
    except BaseException as exc:
        log.error("evaluation %s failed:\n%s", run_id, traceback.format_exc())
        _finish(db, run_id, status="failed", error=f"internal error: {type(exc).__name__}: {exc}")
        raise
    _finish(db, run_id, status="done", result=report, trained=trained)
    return "done"


# ---------------------------------------------------------------- applying a winner


class ApplyRefused(Rejected):
    """A candidate of an evaluation cannot be applied; ``status`` is the HTTP answer (404, 409 or 422)."""


APPLICABLE_KINDS = ("vw", "model")
# The settings an evaluation's verdict depends on, and their values in reports written before they existed.
EXPLORATION_KEYS = (
    "vw_args",
    "epsilon",
    "exploration",
    "gamma_scale",
    "gamma_exponent",
    "epsilon_decay_after",
    "epsilon_floor",
    "exploration_bonus",
)
EXPLORATION_BEFORE = {
    "exploration": "epsilon-greedy",
    "gamma_scale": 10.0,
    "gamma_exponent": 0.5,
    "epsilon_decay_after": 0.0,
    "epsilon_floor": 0.0,
    "exploration_bonus": 0.0,
}


def verdict(entry: Mapping[str, Any], mean_reward: float) -> str:
    """Return what ``apply`` makes of a report's candidate on its evidence alone.

    ``baseline`` (not a configuration), ``never explores`` (epsilon-greedy at 0), ``in sample`` (a stored
    model scored on decisions it may have learned: its estimate flatters it), ``not shown better`` (DR lower
    bound not above the logged policy's estimate, the mean logged reward), ``fragile interval`` (the bound
    is above it, but the weight tail holds too few rewarded rounds for the interval to be trusted:
    ``offline.weight_tail``) or ``beats logged``.
    """
    candidate = entry["candidate"]
    if candidate["kind"] not in APPLICABLE_KINDS:
        return "baseline"
    if candidate.get("exploration", "epsilon-greedy") == "epsilon-greedy" and not candidate.get("epsilon"):
        return "never explores"
    if entry.get("in_sample"):
        return "in sample"
    if entry["estimates"]["dr"]["ci_low"] <= mean_reward:
        return "not shown better"
    return "fragile interval" if entry.get("weight_tail", {}).get("fragile") else "beats logged"


def _interval_text(estimate: Mapping[str, Any]) -> str:
    return f"{estimate['value']:.4f} [{estimate['ci_low']:.4f}, {estimate['ci_high']:.4f}]"


@dataclass(frozen=True)
class Winner:
    """A candidate of a finished evaluation that its evidence allows to apply (``applicable``)."""

    run_id: str
    name: str
    candidate: offline.Candidate
    policy: str
    report: Mapping[str, Any]
    evidence: Mapping[str, Any]


def applicable(db: Database, run_id: str, candidate_name: Any) -> Winner:
    """Return a candidate of a finished evaluation if its evidence allows to apply it (see ``apply``).

    Raises:
        ApplyRefused: with the reason.
    """
    found = get(db, run_id)
    if found is None:
        raise ApplyRefused(f"evaluation {run_id!r} does not exist", status=404)
    if not isinstance(candidate_name, str):
        raise ApplyRefused("candidate: must be the name of one of the evaluation's candidates", status=422)
    if found["status"] != "done":
        raise ApplyRefused(
            f"evaluation {run_id!r} is {found['status']}; only a finished evaluation can be applied", status=409
        )
    report = found["result"]
    entries = {entry["name"]: entry for entry in report["candidates"]}
    if candidate_name not in entries:
        raise ApplyRefused(
            f"candidate: {candidate_name!r} is not a candidate of {run_id} (candidates: {', '.join(entries)})",
            status=422,
        )
    entry = entries[candidate_name]
    candidate = offline.parse_candidate(entry["candidate"])
    policy = report["policy"]
    if policy is None:
        raise ApplyRefused(
            f"candidate: evaluation {run_id} was of a dataset no Marquee policy logged; "
            "evaluate the candidate on a policy's log to apply it",
            status=422,
        )
    dr, baseline = entry["estimates"]["dr"], float(report["mean_reward"])
    found_verdict = verdict(entry, baseline)
    if found_verdict == "baseline":
        raise ApplyRefused(
            f"candidate: {candidate_name!r} is a {candidate.kind} baseline, not a configuration a "
            "policy runs; apply a vw or model candidate",
            status=422,
        )
    if found_verdict == "in sample":
        raise ApplyRefused(
            f"candidate: {candidate_name!r} is model version {entry['candidate'].get('version')} scored on "
            f"{entry.get('in_sample_rounds')} decisions logged before it was published, which it may have learned: "
            "its estimate flatters it. Evaluate a vw candidate with the same options (scored progressively, each "
            "decision before it is learned), or only decisions logged after the version (since), and apply that",
            status=422,
        )
    if found_verdict == "fragile interval":
        tail = entry["weight_tail"]
        raise ApplyRefused(
            f"candidate: {candidate_name!r} rests on {tail['rounds']} decisions weighted above {tail['threshold']:g} "
            f"({tail['weight_share']:.0%} of the weight), of which only {tail['rewarded']} were rewarded: its interval "
            "cannot see the variance of that tail and may claim more than the log shows; evaluate on more decisions",
            status=409,
        )
    if found_verdict == "never explores":
        raise ApplyRefused(
            f"candidate: {candidate_name!r} never explores (epsilon 0): the policy would stop learning anything "
            "it does not already prefer, and its log could no longer evaluate other policies; evaluate the "
            "candidate with the exploration the policy should keep (e.g. epsilon 0.05) and apply that",
            status=422,
        )
    if found_verdict == "not shown better":
        raise ApplyRefused(
            f"refused: {candidate_name!r} is not shown to beat the logged policy: its DR estimate "
            f"{_interval_text(dr)} has a lower bound at or below the logged policy's {baseline:.4f} on "
            f"{report['rounds']} decisions; nothing was changed",
            status=409,
        )
    return Winner(
        run_id=run_id,
        name=candidate_name,
        candidate=candidate,
        policy=policy,
        report=report,
        evidence={"candidate_dr": dr, "logged_dr": baseline, "decisions": report["rounds"]},
    )


def install(db: Database, config: Deployment, winner: Winner) -> int:
    """Store a winner's settings and publish its model, inside the caller's write transaction; return the version.

    Raises:
        ApplyRefused: (409) the policy's settings changed since the evaluation, or the model is gone.
    """
    policy, candidate, report = winner.policy, winner.candidate, winner.report
    settings = policies.load_policy(db, config, policy)
    then = report["policy_settings"]
    now = settings.as_dict()
    changed = [
        f"{key} {then.get(key, EXPLORATION_BEFORE.get(key))} -> {now[key]}"
        for key in EXPLORATION_KEYS
        if now[key] != then.get(key, EXPLORATION_BEFORE.get(key))
    ]
    if changed:
        raise ApplyRefused(
            f"the {policy} policy's settings changed since the evaluation ({', '.join(changed)}); evaluate again",
            status=409,
        )
    if candidate.kind == "vw":
        row = db.execute(
            "SELECT blob, tried FROM evaluation_models WHERE run_id = ? AND candidate = ?", [winner.run_id, winner.name]
        ).fetchone()
        if row is None:
            raise ApplyRefused(
                f"the model {winner.name!r} was trained to is not stored with {winner.run_id}; evaluate again",
                status=409,
            )
        blob, tried, vw_args = bytes(row[0]), row[1], list(candidate.vw_args)
        learned = (int(report["events"]), int(report["rounds"]))  # the window it was trained on
    else:
        try:
            _, blob, _, tried = offline.model_blob(db, policy, candidate.version)
        except offline.SpecError as exc:
            raise ApplyRefused(f"{exc}; evaluate again", status=409) from None
        record = db.execute(
            "SELECT vw_args, events_learned, examples_learned FROM models WHERE policy = ? AND version = ?",
            [policy, candidate.version],
        ).fetchone()
        vw_args = json.loads(record[0]) or settings.vw_args
        learned = (int(record[1]), int(record[2]))  # as scored: exploration depends on what the model learned
    overrides = {
        **policies.stored_overrides(db, policy),
        "vw_args": vw_args,
        "exploration": candidate.exploration,
        "exploration_bonus": candidate.exploration_bonus,
    }
    if candidate.exploration == SQUARECB:
        overrides.update(gamma_scale=candidate.gamma_scale, gamma_exponent=candidate.gamma_exponent)
    else:  # the rate as evaluated: a candidate without a decay was scored at a fixed rate
        overrides.update(
            epsilon=candidate.epsilon,
            epsilon_decay_after=candidate.epsilon_decay_after,
            epsilon_floor=candidate.epsilon_floor,
        )
    policies.store_overrides(db, policy, overrides)
    return policies.publish(
        db,
        policy=policy,
        blob=blob,
        vw_args=vw_args,
        events_learned=learned[0],
        examples_learned=learned[1],
        origin=f"evaluation {winner.run_id}: {winner.name}",
        keep=config.model_versions_kept,
        tried=Tried.loads(tried),
    )


def apply(db: Database, config: Deployment, run_id: str, candidate_name: Any) -> dict[str, Any]:
    """Make a candidate of a finished evaluation the policy's configuration and newest model.

    Applied only if the candidate's DR 95% lower bound is above the logged policy's DR estimate (which
    is the mean logged reward), the candidate keeps exploring (SquareCB, or epsilon above 0), it was
    scored out of sample, and the policy's settings are still those the log was evaluated under. A
    ``vw`` candidate brings its options, its exploration and the model it was trained to on the
    evaluated decisions; a ``model`` candidate its exploration and a copy of that stored version.

    Raises:
        ApplyRefused: with the reason, and nothing changed.
    """
    winner = applicable(db, run_id, candidate_name)
    with write_transaction(db):
        version = install(db, config, winner)
    return {
        "evaluation": run_id,
        "candidate": candidate_name,
        "policy": winner.policy,
        "version": version,
        "settings": policies.load_policy(db, config, winner.policy).as_dict(),
        "evidence": dict(winner.evidence),
    }
