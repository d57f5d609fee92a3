"""Automatic optimization: evaluate a search space of configurations on the recent log, apply one only on evidence.

A policy with ``auto_optimize`` on is optimized every ``AUTO_OPTIMIZE_HOURS`` by the learner
process (``Schedule``); ``POST /v1/optimizations`` starts one at once, with the default search space
or the caller's candidates. An optimization is an evaluation run (``bandits.evaluate.runs``) of the policy's
``AUTO_OPTIMIZE_EVENTS`` most recent closed events, in a background process at the learner's CPU
priority, whose candidates are:

* ``serving options``: the policy's own options and exploration, replayed on the window like the
  others (each event decided before it is learned), so every candidate is judged on one footing;
* the search space (``search_space``): the policy's default options, learning rates, an L2 penalty,
  each interaction left out, and a lower and a higher epsilon.

Every candidate is scored out of sample. The best candidate by DR 95 % lower bound is applied (its
options, exploration and the model it was trained to, through ``runs.install``) only when that bound
is above the serving policy's estimate: its on-policy value, the mean logged reward over the window.
Otherwise the policy is kept as it is. Every
optimization keeps its candidates' estimates (in its evaluation), its decision and its reason, and
an applied one keeps the settings and model it replaced, so that ``rollback`` can put them back.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bandits.deployment import Deployment
from bandits.errors import Rejected
from bandits.evaluate import offline, runs
from bandits.log.rounds import closed_event_count
from bandits.model.exploration import SQUARECB
from bandits.model.policy import (
    DEFAULT_VW_ARGS,
    POLICY_NAMES,
    PolicyConfig,
    latest_model,
    load_policy,
    publish,
    store_overrides,
    stored_overrides,
)
from bandits.model.tried import Tried
from bandits.storage import Database, StorageBusy, StorageError, write_transaction

log = logging.getLogger("marquee.optimize")

SERVING = "serving options"
STATUSES = ("running", "applied", "kept", "failed", "rolled back")
LEARNING_RATES = (0.05, 0.1, 0.2, 0.5)
L2 = "1e-06"
EPSILON_STEPS = (0.5, 2.0)  # the lower and the higher epsilon tried, as multiples of the policy's
EPSILON_RANGE = (0.02, 0.5)  # never tried below or above
DECAY = {"epsilon_decay_after": 100.0, "epsilon_floor": 0.01}  # tried by a policy whose epsilon does not decay
BONUS = 2.0  # the exploration bonus tried by a policy without one
MIN_EVENTS = 200  # closed events a policy's log needs before an optimization starts
MIN_EXPLORED_ROUNDS = 100  # explored decisions a window needs: without exploration no other policy can be estimated
CHECK_SECONDS = 60.0  # how often the learner looks for a policy due


class OptimizationError(Rejected):
    """An optimization cannot start or be rolled back; ``status`` is the HTTP answer (404, 409 or 422)."""


# ---------------------------------------------------------------- the search space


def _option(args: Sequence[str], names: Sequence[str]) -> str | None:
    """Return the value of the first of ``names`` in ``args`` (None if absent)."""
    for index, arg in enumerate(args[:-1]):
        if arg in names:
            return args[index + 1]
    return None


def _without(args: Sequence[str], names: Sequence[str], value: str | None = None) -> list[str]:
    """Return ``args`` without the options ``names`` (with their value), or without just ``names value``."""
    kept: list[str] = []
    index = 0
    while index < len(args):
        if args[index] in names and index + 1 < len(args) and value in (None, args[index + 1]):
            index += 2
            continue
        kept.append(args[index])
        index += 1
    return kept


def _exploration(settings: PolicyConfig, *, epsilon: float | None = None) -> dict[str, Any]:
    """Return the candidate fields of the policy's exploration (with another base ``epsilon`` if given)."""
    bonus = {"exploration_bonus": settings.exploration_bonus} if settings.exploration_bonus else {}
    if settings.exploration == SQUARECB:
        return {
            "exploration": SQUARECB,
            "gamma_scale": settings.gamma_scale,
            "gamma_exponent": settings.gamma_exponent,
            **bonus,
        }
    fields: dict[str, Any] = {
        "exploration": settings.exploration,
        "epsilon": settings.epsilon if epsilon is None else epsilon,
        **bonus,
    }
    if settings.epsilon_decay_after:
        fields.update(epsilon_decay_after=settings.epsilon_decay_after, epsilon_floor=settings.epsilon_floor)
    return fields


def serving_candidate(settings: PolicyConfig) -> dict[str, Any]:
    """Return the candidate that runs the policy's own options and exploration."""
    return {"name": SERVING, "kind": "vw", "vw_args": list(settings.vw_args), **_exploration(settings)}


def search_space(settings: PolicyConfig) -> list[dict[str, Any]]:
    """Return the candidates an optimization of the policy tries besides its own options, as request objects.

    From the policy's options: its default options (when it runs others), each learning rate of
    ``LEARNING_RATES`` it does not use, an L2 penalty, each ``-q`` interaction left out (when it has
    two or more); with its options, its exploration without its bonus (or with ``BONUS``, when it has
    none), epsilon-greedy's base rate halved and doubled within ``EPSILON_RANGE``, and a decaying rate
    (``DECAY``) when the policy's is fixed.
    """
    base = list(settings.vw_args)
    exploration = _exploration(settings)
    tried: list[tuple[str, list[str], dict[str, Any]]] = []
    default = list(DEFAULT_VW_ARGS[settings.name])
    if default != base:
        tried.append(("default options", default, exploration))
    rate = _option(base, ("-l", "--learning_rate"))
    for candidate_rate in LEARNING_RATES:
        if rate is None or float(rate) != candidate_rate:
            tried.append(
                (
                    f"learning rate {candidate_rate:g}",
                    [*_without(base, ("-l", "--learning_rate")), "-l", f"{candidate_rate:g}"],
                    exploration,
                )
            )
    if _option(base, ("--l2",)) is None:
        tried.append((f"L2 {float(L2):g}", [*base, "--l2", L2], exploration))
    if settings.exploration_bonus:
        plain = {key: value for key, value in exploration.items() if key != "exploration_bonus"}
        tried.append(("without the exploration bonus", base, plain))
    else:
        tried.append((f"exploration bonus {BONUS:g}", base, {**exploration, "exploration_bonus": BONUS}))
    pairs = [base[index + 1] for index, arg in enumerate(base[:-1]) if arg in ("-q", "--quadratic")]
    if len(pairs) >= 2:
        for pair in pairs:
            tried.append((f"without -q {pair}", _without(base, ("-q", "--quadratic"), pair), exploration))
    if settings.exploration != SQUARECB:
        low, high = EPSILON_RANGE
        rates = dict.fromkeys(round(min(high, max(low, settings.epsilon * step)), 4) for step in EPSILON_STEPS)
        for epsilon in rates:
            if epsilon != settings.epsilon:
                tried.append((f"epsilon {epsilon:g}", base, _exploration(settings, epsilon=epsilon)))
        if not settings.epsilon_decay_after:
            tried.append((f"epsilon decaying after {DECAY['epsilon_decay_after']:g}", base, {**exploration, **DECAY}))
    unique = {name: (args, fields) for name, args, fields in reversed(tried)}  # a name once (its first entry)
    found = [
        {"name": name, "kind": "vw", "vw_args": args, **fields}
        for name, (args, fields) in reversed(list(unique.items()))
    ]
    return found[: offline.MAX_CANDIDATES - 1]  # the serving options make the last


def check_candidates(settings: PolicyConfig, raw: Any) -> list[dict[str, Any]]:
    """Check a caller's search space: a list of ``vw`` candidates (objects, or VW options as text).

    A candidate given as text, or as an object that names no exploration, gets the policy's exploration.
    Returns the candidates as request objects; raises ``OptimizationError`` (422) naming the first one VW
    or the evaluation refuses.
    """
    if not isinstance(raw, list) or not 1 <= len(raw) <= offline.MAX_CANDIDATES - 1:
        raise OptimizationError(
            f"candidates: must be a list of 1 to {offline.MAX_CANDIDATES - 1} vw candidates "
            "(the serving options are added to them)",
            status=422,
        )
    found = []
    for index, value in enumerate(raw):
        where = f"candidates[{index}]"
        if isinstance(value, str):
            value = {"name": value[:100], "kind": "vw", "vw_args": value, **_exploration(settings)}
        elif (
            isinstance(value, dict)
            and value.get("kind") == "vw"
            and not set(value)
            & {
                "exploration",
                "epsilon",
                "gamma_scale",
                "gamma_exponent",
                "epsilon_decay_after",
                "epsilon_floor",
                "exploration_bonus",
            }
        ):
            value = {**value, **_exploration(settings)}  # it explores as the policy does
        try:
            candidate = offline.parse_candidate(value, where=where)
        except offline.SpecError as exc:
            raise OptimizationError(str(exc), status=422) from None
        if candidate.kind != "vw":
            raise OptimizationError(
                f"{where}.kind: an optimization tries configurations a policy can run: give vw "
                f"candidates (VW options and exploration), not {candidate.kind!r}",
                status=422,
            )
        if candidate.name == SERVING:
            raise OptimizationError(
                f"{where}.name: {SERVING!r} is the policy's own configuration, always tried; "
                "name the candidate otherwise",
                status=422,
            )
        found.append(candidate.as_dict())
    return found


# ---------------------------------------------------------------- starting one


def start(
    db: Database,
    config: Deployment,
    policy: Any,
    *,
    trigger: str,
    candidates: Any = None,
    now: float | None = None,
) -> str:
    """Store an optimization of ``policy`` and its queued evaluation; return the optimization's id.

    The caller starts ``python -m service.workers optimization <id>`` (``run``). ``candidates``: the
    caller's search space (``check_candidates``), or None for ``search_space``.

    Raises:
        OptimizationError: an unknown policy or a bad search space (422); a log too small, or an optimization
            of the policy or ``runs.MAX_ACTIVE`` evaluations already under way (409).
    """
    if policy not in POLICY_NAMES:
        raise OptimizationError(f"policy: must be one of {', '.join(POLICY_NAMES)}, got {policy!r}", status=422)
    now = time.time() if now is None else now
    closed = closed_event_count(db, policy)
    if closed < MIN_EVENTS:
        raise OptimizationError(
            f"policy: the {policy} log holds {closed} events whose reward window closed; an "
            f"optimization needs at least {MIN_EVENTS} to tell configurations apart",
            status=409,
        )
    settings = load_policy(db, config, policy)
    tried = search_space(settings) if candidates is None else check_candidates(settings, candidates)
    try:
        spec = offline.parse_spec(
            {
                "policy": policy,
                "candidates": [serving_candidate(settings), *tried],
                "limit": config.auto_optimize_events,
            }
        )
    except offline.SpecError as exc:
        raise OptimizationError(str(exc), status=422) from None
    _settle(db, now=now)
    optimization_id = f"op-{uuid.uuid4().hex[:16]}"
    with write_transaction(db):  # the checks and both rows in one transaction: two starts cannot both pass
        if db.execute("SELECT 1 FROM optimizations WHERE policy = ? AND status = 'running'", [policy]).fetchone():
            raise OptimizationError(f"an optimization of {policy} is under way; wait for it to finish", status=409)
        active = runs.count_active(db)
        if active >= runs.MAX_ACTIVE:
            raise OptimizationError(
                f"{active} evaluations are queued or running (at most {runs.MAX_ACTIVE}); wait for one to finish",
                status=409,
            )
        run_id = runs.insert(db, spec, now=now)
        db.execute(
            "INSERT INTO optimizations (id, policy, created_at, trigger, evaluation, status) "
            "VALUES (?, ?, ?, ?, ?, 'running')",
            [optimization_id, policy, now, trigger, run_id],
        )
    return optimization_id


def due(db: Database, config: Deployment, *, now: float | None = None) -> list[str]:
    """Return the policies with ``auto_optimize`` on whose last optimization is ``AUTO_OPTIMIZE_HOURS`` old."""
    now = time.time() if now is None else now
    every = config.auto_optimize_hours * 3600.0
    found = []
    for policy in POLICY_NAMES:
        if not load_policy(db, config, policy).auto_optimize:
            continue
        last = db.execute(
            "SELECT MAX(created_at) FROM optimizations WHERE policy = ? AND trigger = 'schedule'", [policy]
        ).fetchone()[0]
        if last is None or now - float(last) >= every:
            found.append(policy)
    return found


class Schedule:
    """Starts the optimizations due, from the learner process, at most once every ``CHECK_SECONDS``.

    ``start(id)`` starts an optimization's process (``service.workers``) once it is stored.
    """

    def __init__(self, *, start: Callable[[str], object], every: float = CHECK_SECONDS) -> None:
        self.start, self.every = start, every
        self.next_at = 0.0  # monotonic time of the next check

    def run_if_due(self, db: Database, config: Deployment) -> list[str]:
        """Start every optimization due (each in its own process); return their ids."""
        if time.monotonic() < self.next_at:
            return []
        self.next_at = time.monotonic() + self.every
        started = []
        for policy in due(db, config):
            try:
                optimization_id = start(db, config, policy, trigger="schedule")
            except OptimizationError as exc:  # busy, or a log too small yet: the next check tries again
                log.info("optimization of %s postponed: %s", policy, exc)
                continue
            except StorageError as exc:  # the learner goes on; the next check tries again
                log.warning("optimization of %s not started: %s", policy, exc)
                continue
            self.start(optimization_id)
            started.append(optimization_id)
        return started


# ---------------------------------------------------------------- running and deciding


def run(config: Deployment, optimization_id: str) -> str:
    """Run an optimization's evaluation, then decide; return its final status (applied, kept or failed)."""
    db = runs.connect_for(config)
    row = db.execute("SELECT evaluation FROM optimizations WHERE id = ?", [optimization_id]).fetchone()
    if row is None:
        raise LookupError(f"optimization {optimization_id!r} does not exist")
    try:
        runs.run(config, row[0])
    finally:
        status = conclude(db, config, optimization_id)
    return status


def _finish(
    db: Database,
    optimization_id: str,
    *,
    status: str,
    reason: str,
    decision: Mapping[str, Any] | None = None,
) -> str:
    with write_transaction(db):
        db.execute(
            "UPDATE optimizations SET status = ?, reason = ?, decision = ?, finished_at = ? "
            "WHERE id = ? AND status = 'running'",
            [status, reason, json.dumps(decision) if decision is not None else None, time.time(), optimization_id],
        )
    log.info("optimization %s: %s: %s", optimization_id, status, reason)
    return status


def _settle(db: Database, *, now: float | None = None) -> None:
    """Mark failed every running optimization whose evaluation failed (its process was killed, say), or ended
    ``runs.STALE_SECONDS`` ago without a decision (the process stopped in between: nothing was applied,
    since an apply records its decision in its own transaction)."""
    now = time.time() if now is None else now
    runs.active_count(db, now=now)  # expires the evaluations whose process stopped
    for optimization_id, status, error in db.execute(
        "SELECT o.id, e.status, e.error FROM optimizations o JOIN evaluations e ON e.id = o.evaluation "
        "WHERE o.status = 'running' AND (e.status = 'failed' OR (e.status = 'done' AND e.finished_at < ?))",
        [now - runs.STALE_SECONDS],
    ).fetchall():
        reason = (
            f"the evaluation failed: {error}"
            if status == "failed"
            else "the optimization process stopped after its evaluation, before deciding; nothing was applied"
        )
        _finish(db, optimization_id, status="failed", reason=reason)


def decide(report: Mapping[str, Any]) -> dict[str, Any]:
    """Return what an optimization makes of its evaluation's report: the candidate to apply, or None, and why.

    The serving estimate is the serving policy's on-policy value: the mean logged reward over the
    window, exploration included (DR of the logged policy, and the tightest estimate there is).
    Eligible are the candidates ``runs.verdict`` finds ``beats logged`` (out of sample, exploring, DR
    lower bound above that value), except the serving options themselves; the best of them by DR
    lower bound is chosen. The serving options' own replay is reported beside it, as the measure of
    how far a configuration replayed from scratch on the window lies from what it earned.
    """
    serving = float(report["mean_reward"])
    entries = {entry["name"]: entry for entry in report["candidates"]}
    verdicts = {name: runs.verdict(entry, serving) for name, entry in entries.items()}
    found: dict[str, Any] = {
        "serving_estimate": serving,
        "verdicts": verdicts,
        "chosen": None,
        "serving_options_dr": entries[SERVING]["estimates"]["dr"] if SERVING in entries else None,
    }
    ranked = sorted((entry["estimates"]["dr"]["ci_low"], name) for name, entry in entries.items() if name != SERVING)
    if not ranked:
        found["reason"] = "kept: no candidate besides the serving options"
        return found
    low, best = ranked[-1]
    found["best"] = {"name": best, "dr": entries[best]["estimates"]["dr"], "verdict": verdicts[best]}
    eligible = [(bound, name) for bound, name in ranked if verdicts[name] == "beats logged"]
    if eligible:
        bound, name = eligible[-1]
        found["chosen"] = name
        found["reason"] = f"{name!r} has a DR lower bound of {bound:.4f}, above the serving estimate {serving:.4f}"
    else:
        found["reason"] = (
            f"kept: no candidate is shown to beat the serving policy (best DR lower bound {low:.4f}, "
            f"{best!r}: {verdicts[best]}; serving estimate {serving:.4f})"
        )
    return found


def conclude(db: Database, config: Deployment, optimization_id: str) -> str:
    """Decide a running optimization whose evaluation ended: apply its winner or keep the policy; return the status.

    Whatever goes wrong, the optimization ends ``failed`` with the reason, not ``running``: an error
    while deciding or applying rolls the apply back (one transaction) and is recorded, then raised.
    """
    try:
        return _conclude(db, config, optimization_id)
    except BaseException as exc:
        log.error("optimization %s could not be decided:\n%s", optimization_id, traceback.format_exc())
        for _ in range(3):  # the database may be busy; the apply, if any, was rolled back
            try:
                _finish(
                    db,
                    optimization_id,
                    status="failed",
                    reason=f"internal error while deciding: {type(exc).__name__}: {exc}; nothing was applied",
                )
                break
            except StorageBusy:
                time.sleep(1.0)
        raise


def _conclude(db: Database, config: Deployment, optimization_id: str) -> str:
    row = db.execute("SELECT policy, evaluation, status FROM optimizations WHERE id = ?", [optimization_id]).fetchone()
    if row is None or row[2] != "running":
        return str(row[2]) if row else "failed"
    policy, run_id = row[0], row[1]
    evaluation = runs.get(db, run_id)
    if evaluation is None or evaluation["status"] != "done":
        error = evaluation["error"] if evaluation else "it was deleted"
        return _finish(db, optimization_id, status="failed", reason=f"the evaluation did not finish: {error}")
    report = evaluation["result"]
    explored = int(report.get("explored_rounds", 0))
    if explored < MIN_EXPLORED_ROUNDS:
        return _finish(
            db,
            optimization_id,
            status="failed",
            reason=f"the window holds {explored} explored decisions of {report['rounds']} (at least "
            f"{MIN_EXPLORED_ROUNDS} are needed): without exploration no other configuration can be "
            "estimated; keep epsilon above 0 (or SquareCB) and the learning mode online",
        )
    decision = decide(report)
    if decision["chosen"] is None:
        return _finish(db, optimization_id, status="kept", reason=decision["reason"], decision=decision)
    try:
        winner = runs.applicable(db, run_id, decision["chosen"])
        with write_transaction(db):
            still = db.execute("SELECT status FROM optimizations WHERE id = ?", [optimization_id]).fetchone()[0]
            if still != "running":  # settled meanwhile (its process was thought dead): apply nothing
                return str(still)
            before, overrides = latest_model(db, policy), stored_overrides(db, policy)
            if before is None:
                raise runs.ApplyRefused(f"the {policy} policy has no model to replace", status=409)
            version = runs.install(db, config, winner)
            db.execute(  # the decision and what it replaced, in the transaction that applies it
                "UPDATE optimizations SET status = 'applied', reason = ?, decision = ?, finished_at = ?, "
                "before_overrides = ?, before_version = ?, before_blob = ?, before_vw_args = ?, before_examples = ?, "
                "before_events = ?, before_tried = ?, after_overrides = ?, after_version = ? WHERE id = ?",
                [
                    decision["reason"],
                    json.dumps(decision),
                    time.time(),
                    json.dumps(overrides),
                    before.version,
                    before.blob,
                    json.dumps(before.vw_args),
                    before.examples_learned,
                    before.events_learned,
                    before.tried,
                    json.dumps(stored_overrides(db, policy)),
                    version,
                    optimization_id,
                ],
            )
    except runs.ApplyRefused as exc:
        return _finish(
            db, optimization_id, status="kept", reason=f"kept: applying was refused: {exc}", decision=decision
        )
    log.info("optimization %s: applied: %s", optimization_id, decision["reason"])
    return "applied"


# ---------------------------------------------------------------- reading and rolling back


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "policy": row["policy"],
        "status": row["status"],
        "trigger": row["trigger"],
        "created_at": row["created_at"],
        "finished_at": row["finished_at"],
        "evaluation": row["evaluation"],
        "reason": row["reason"],
        "decision": json.loads(row["decision"]) if row["decision"] else None,
        "replaced": (
            {"version": row["before_version"], "overrides": json.loads(row["before_overrides"])}
            if row["before_overrides"] is not None
            else None
        ),
        "applied_version": row["after_version"],
        "rolled_back_at": row["rolled_back_at"],
        "rollback_version": row["rollback_version"],
    }


COLUMNS = (
    "id, policy, status, trigger, created_at, finished_at, evaluation, reason, decision, before_overrides, "
    "before_version, after_version, rolled_back_at, rollback_version"
)


def get(db: Database, optimization_id: str) -> dict[str, Any] | None:
    """Return an optimization with its decision and its evaluation's candidates (None if there is none)."""
    _settle(db)
    rows = list(db.query(f"SELECT {COLUMNS} FROM optimizations WHERE id = ?", [optimization_id]))
    if not rows:
        return None
    found = _public(rows[0])
    evaluation = runs.get(db, found["evaluation"])
    found["progress"] = evaluation["progress"] if evaluation else None
    result = evaluation["result"] if evaluation else None
    if result:
        verdicts = (found["decision"] or {}).get("verdicts", {})
        found["rounds"], found["mean_reward"] = result["rounds"], result["mean_reward"]
        found["candidates"] = [
            {
                "name": entry["name"],
                "candidate": entry["candidate"],
                "dr": entry["estimates"]["dr"],
                "scoring": entry.get("scoring"),
                "verdict": verdicts.get(entry["name"]),
            }
            for entry in result["candidates"]
        ]
    return found


def recent(db: Database, *, policy: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Return the newest optimizations, of one policy or all."""
    _settle(db)
    where, params = ("WHERE policy = ?", [policy]) if policy else ("", [])
    return [
        _public(row)
        for row in db.query(
            f"SELECT {COLUMNS} FROM optimizations {where} ORDER BY created_at DESC LIMIT ?", [*params, limit]
        )
    ]


def rollback(db: Database, config: Deployment, optimization_id: str) -> dict[str, Any]:
    """Put back the settings and the model an applied optimization replaced, as a new model version.

    What the policy learned after the optimization is lost with its model: the model put back is the
    one serving before it. Rejected (409) unless the optimization is the policy's latest change: it
    was applied, no later optimization was applied, and the settings are still those it set.

    Raises:
        OptimizationError: with the reason, and nothing changed.
    """
    with write_transaction(db):
        row = db.execute(
            "SELECT policy, status, before_overrides, before_blob, before_vw_args, before_examples, "
            "before_events, after_overrides, before_version, created_at, before_tried FROM optimizations WHERE id = ?",
            [optimization_id],
        ).fetchone()
        if row is None:
            raise OptimizationError(f"optimization {optimization_id!r} does not exist", status=404)
        policy, status, before, blob, vw_args, examples, events, after, version, created_at, tried = row
        if status != "applied":
            raise OptimizationError(
                f"optimization {optimization_id} is {status}; only an applied optimization can be rolled back",
                status=409,
            )
        later = db.execute(
            "SELECT id FROM optimizations WHERE policy = ? AND status = 'applied' AND created_at > ? "
            "ORDER BY created_at DESC LIMIT 1",
            [policy, created_at],
        ).fetchone()
        if later is not None:
            raise OptimizationError(
                f"optimization {later[0]} was applied to {policy} after {optimization_id}; roll that one back first",
                status=409,
            )
        if stored_overrides(db, policy) != json.loads(after):
            raise OptimizationError(
                f"the {policy} policy's settings changed since {optimization_id} applied them; "
                "set them by hand (PUT /v1/policies/{name})",
                status=409,
            )
        store_overrides(db, policy, json.loads(before))
        restored = publish(
            db,
            policy=policy,
            blob=bytes(blob),
            vw_args=json.loads(vw_args),
            events_learned=events,
            examples_learned=examples,
            origin=f"rollback of optimization {optimization_id} (version {version})",
            keep=config.model_versions_kept,
            tried=Tried.loads(tried),
        )
        db.execute(
            "UPDATE optimizations SET status = 'rolled back', rolled_back_at = ?, rollback_version = ? WHERE id = ?",
            [time.time(), restored, optimization_id],
        )
    found = get(db, optimization_id)
    assert found is not None
    return found
