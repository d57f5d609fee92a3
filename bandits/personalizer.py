"""Azure Personalizer's administration objects on Marquee's machinery: evaluations, feature importances, logs, model.

Personalizer's clients name their evaluations and feature importances themselves (``PUT
/evaluations/{id}``); this module keeps each name beside what Marquee made of it (table
``personalizer_items``): an evaluation is an evaluation run of the ``actions`` policy
(``bandits.evaluate.runs``) over the request's time range, with the logged policy (Personalizer's
``Online``), the first action offered (``Baseline``), uniform draws (``Random``), the request's
policies (``Custom``, from Personalizer's learning-policy arguments) and, with
``enablePolicyOptimization``, the search space of automatic optimization (``OfflineExperimentation``,
``bandits.evaluate.optimize``). A feature importance is ``bandits.reports.explain.importance`` over the range's
decisions, computed when it is created. Results come back in the shapes of Personalizer's
``2022-09-01-preview`` API.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bandits.deployment import Deployment
from bandits.errors import Conflict, MarqueeError, NotFound
from bandits.evaluate import offline, optimize, runs
from bandits.log import maintenance
from bandits.log.rounds import closed_event_count
from bandits.model.policy import ACTIONS, PolicyError, ServingModel, latest_model, load_policy, parse_vw_args
from bandits.reports import explain
from bandits.storage import Database, write_transaction

EVALUATION, IMPORTANCE = "evaluation", "featureImportance"
# Personalizer's learning-policy arguments that are no VW option Marquee takes: its explore reduction
# (Marquee explores itself, by ``--epsilon``) and input formats (Marquee writes VW text itself).
IGNORED_ARGUMENTS = ("--cb_explore_adf", "--cb_adf", "--dsjson", "--json")
BASELINES = {"logged": "Online", "default": "Baseline", "uniform": "Random"}
STATUS = {"queued": "Running", "running": "Running", "done": "Succeeded", "failed": "Failed"}
IMPORTANCE_DECISIONS = 2000  # the most recent decisions of the range a feature importance explains
OPTIMIZED = "optimization: "  # the names of the search space's candidates in an evaluation (OfflineExperimentation)


class Refused(MarqueeError):
    """A request Personalizer's API describes that Marquee cannot carry out; ``code`` is Personalizer's."""

    def __init__(self, message: str, *, code: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.status = code, status


def iso(seconds: float | None) -> str | None:
    """Format unix seconds as Personalizer's UTC times (``2019-01-19T00:00:00.000000Z``)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(value: Any, *, where: str) -> float:
    """Read an ISO 8601 time (``Z``, an offset, or none for UTC; 0 to 7 fractional digits) as unix seconds."""
    if not isinstance(value, str):
        raise Refused(f"{where}: must be an ISO 8601 date and time such as 2019-01-19T00:00:00Z", code="BadRequest")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most 6 fractional digits; .NET writes 7
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(
            f"{where}: {value!r} is not an ISO 8601 date and time such as 2019-01-19T00:00:00Z", code="BadRequest"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def read_arguments(arguments: str, *, where: str = "arguments") -> tuple[list[str], float | None]:
    """Read Personalizer's learning-policy arguments as (VW options for ``--cb_adf``, ``--epsilon`` or None).

    Raises:
        Refused: an argument is not shell text, ``--epsilon`` has no number in [0, 1], or VW (or
            Marquee's allow-list) refuses the options.
    """
    try:
        words = shlex.split(arguments)
    except ValueError as exc:
        raise Refused(f"{where}: {exc}", code="InvalidPolicyConfiguration") from None
    vw_args: list[str] = []
    epsilon: float | None = None
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--epsilon":
            try:
                epsilon = float(words[index + 1])
            except (IndexError, ValueError):
                epsilon = -1.0
            if not 0.0 <= epsilon <= 1.0:
                raise Refused(f"{where}: --epsilon needs a number in [0, 1]", code="InvalidPolicyConfiguration")
            index += 2
            continue
        if word not in IGNORED_ARGUMENTS:
            vw_args.append(word)
        index += 1
    try:
        return parse_vw_args(vw_args), epsilon
    except PolicyError as exc:
        raise Refused(str(exc).replace("vw_args:", f"{where}:", 1), code="InvalidPolicyConfiguration") from None


def write_arguments(vw_args: Sequence[str], epsilon: float) -> str:
    """Write VW options and an epsilon as Personalizer's learning-policy arguments."""
    return " ".join(shlex.quote(arg) for arg in ["--cb_explore_adf", "--epsilon", f"{epsilon:g}", *vw_args])


# ---------------------------------------------------------------- stored items


def _item(db: Database, kind: str, item_id: str) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM personalizer_items WHERE kind = ? AND id = ?", [kind, item_id]))
    if not rows:
        what = "Evaluation" if kind == EVALUATION else "FeatureImportance"
        raise Refused(f"{what} {item_id!r} does not exist", code=f"{what}NotFound", status=404)
    return rows[0]


def _check_free(db: Database, kind: str, item_id: str) -> None:
    if db.execute("SELECT 1 FROM personalizer_items WHERE kind = ? AND id = ?", [kind, item_id]).fetchone():
        what = "Evaluation" if kind == EVALUATION else "FeatureImportance"
        raise Refused(
            f"{what} {item_id!r} exists; delete it first or choose another id", code=f"{what}AlreadyExists", status=409
        )


def _insert(
    db: Database,
    kind: str,
    item_id: str,
    *,
    name: str,
    start: float,
    end: float,
    run_id: str | None = None,
    result: Any = None,
    request: Any = None,
) -> None:
    """Store an item inside the caller's write transaction; a taken id is a 409 (``...AlreadyExists``)."""
    _check_free(db, kind, item_id)
    db.execute(
        "INSERT INTO personalizer_items (kind, id, name, created_at, start_time, end_time, run_id, result, "
        "request) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            kind,
            item_id,
            name,
            time.time(),
            start,
            end,
            run_id,
            json.dumps(result) if result is not None else None,
            json.dumps(request),
        ],
    )


def _time_range(body: Mapping[str, Any]) -> tuple[float, float]:
    start = parse_instant(body.get("startTime"), where="startTime")
    end = parse_instant(body.get("endTime"), where="endTime")
    if end <= start:
        raise Refused("endTime: must be later than startTime", code="BadRequest")
    return start, end


def _name(body: Mapping[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 256:
        raise Refused("name: must be text of 1 to 256 characters", code="BadRequest")
    return name


# ---------------------------------------------------------------- evaluations


def create_evaluation(db: Database, config: Deployment, evaluation_id: str, body: Mapping[str, Any]) -> str:
    """Check a Personalizer evaluation request, store it with a queued evaluation run; return the run's id.

    Raises:
        Refused: a bad field (400), no closed decision in the range (400 ``NoLogsExistInDateRange``),
            the id taken (409), or ``runs.MAX_ACTIVE`` evaluations under way (429).
    """
    unknown = sorted(
        set(body)
        - {"name", "startTime", "endTime", "policies", "enablePolicyOptimization", "enableOfflineExperimentation"}
    )
    if unknown:
        raise Refused(
            f"{unknown[0]}: not a field of an evaluation (fields: name, startTime, endTime, policies, "
            "enablePolicyOptimization)",
            code="InvalidEvaluationContract",
        )
    name = _name(body)
    start, end = _time_range(body)
    policies = body.get("policies") or []
    if not isinstance(policies, list):
        raise Refused("policies: must be a list of {name, arguments}", code="InvalidEvaluationContract")
    settings = load_policy(db, config, ACTIONS)
    candidates: list[dict[str, Any]] = [
        {"name": "logged", "kind": "logged"},
        {"name": "default", "kind": "default"},
        {"name": "uniform", "kind": "uniform"},
    ]
    for index, policy in enumerate(policies):
        if (
            not isinstance(policy, dict)
            or not isinstance(policy.get("name"), str)
            or not isinstance(policy.get("arguments"), str)
            or not 0 < len(policy["name"]) <= 100
        ):
            raise Refused(
                f"policies[{index}]: must be {{name (1 to 100 characters), arguments}}", code="InvalidPolicyContract"
            )
        if policy["name"] in [candidate["name"] for candidate in candidates]:
            raise Refused(
                f"policies[{index}].name: {policy['name']!r} is used twice or names a baseline "
                f"({', '.join(BASELINES)})",
                code="DuplicateCustomPolicyNames",
            )
        vw_args, epsilon = read_arguments(policy["arguments"], where=f"policies[{index}].arguments")
        candidates.append(
            {
                "name": policy["name"],
                "kind": "vw",
                "vw_args": vw_args,
                "epsilon": settings.epsilon if epsilon is None else epsilon,
            }
        )
    optimizing = bool(body.get("enablePolicyOptimization", body.get("enableOfflineExperimentation", False)))
    if optimizing:
        room = offline.MAX_CANDIDATES - len(candidates)
        candidates += [
            {**candidate, "name": f"{OPTIMIZED}{candidate['name']}"}
            for candidate in [optimize.serving_candidate(settings), *optimize.search_space(settings)][:room]
        ]
    if len(candidates) > offline.MAX_CANDIDATES:
        raise Refused(f"policies: at most {offline.MAX_CANDIDATES - 3} policies", code="InvalidEvaluationContract")
    if closed_event_count(db, ACTIONS, since=start, until=end) < 2:
        raise Refused(
            f"startTime: no closed decisions of the actions policy were logged from {iso(start)} to {iso(end)}",
            code="NoLogsExistInDateRange",
        )
    try:
        spec = offline.parse_spec({"policy": ACTIONS, "candidates": candidates, "since": start, "until": end})
    except offline.SpecError as exc:
        raise Refused(str(exc), code="InvalidEvaluationContract") from None
    runs.active_count(db)  # expires runs whose process died, so that they do not count below
    with write_transaction(db):  # the checks, the run and the item in one transaction: two PUTs cannot both pass
        _check_free(db, EVALUATION, evaluation_id)
        active = runs.count_active(db)
        if active >= runs.MAX_ACTIVE:
            raise Refused(
                f"{active} evaluations are under way (at most {runs.MAX_ACTIVE}); try again when one is done",
                code="TooManyRequests",
                status=429,
            )
        run_id = runs.insert(db, spec)
        _insert(
            db,
            EVALUATION,
            evaluation_id,
            name=name,
            start=start,
            end=end,
            run_id=run_id,
            request={"policies": policies, "enablePolicyOptimization": optimizing},
        )
    return run_id


def _policy_result(entry: Mapping[str, Any], *, arguments: str) -> dict[str, Any]:
    dr = entry["estimates"]["dr"]
    name = entry["name"]
    source = BASELINES.get(name) or ("OfflineExperimentation" if name.startswith(OPTIMIZED) else "Custom")
    shown = {"logged": "Online policy", "default": "Baseline policy", "uniform": "Random policy"}.get(name, name)
    return {
        "name": shown,
        "arguments": arguments,
        "policySource": source,
        "summary": {"expectedReward": dr["value"], "confidenceInterval": [dr["ci_low"], dr["ci_high"]]},
        "timeseries": {
            "data": [
                {
                    "timeStamp": iso(point["until"]),
                    "expectedReward": point["dr"]["value"],
                    "confidenceInterval": [point["dr"]["ci_low"], point["dr"]["ci_high"]],
                }
                for point in entry.get("over_time", [])
                if "dr" in point
            ]
        },
    }


def _details(row: Mapping[str, Any], status: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "startTime": iso(row["start_time"]),
        "endTime": iso(row["end_time"]),
        "creationTime": iso(row["created_at"]),
        "status": status,
    }


def evaluation(db: Database, config: Deployment, evaluation_id: str) -> dict[str, Any]:
    """Return a Personalizer evaluation: details, status, and once done each policy's DR estimate and series."""
    row = _item(db, EVALUATION, evaluation_id)
    run = runs.get(db, row["run_id"])
    if run is None:
        raise Refused(f"the evaluation run of {evaluation_id!r} is gone", code="EvaluationNotFound", status=404)
    found = {**_details(row, STATUS[run["status"]]), "evaluationType": "Manual"}
    if run["status"] == "failed":
        found["description"] = run["error"]
    report = run["result"]
    if report is None:
        return found
    settings = report["policy_settings"]
    arguments = {"logged": write_arguments(settings["vw_args"], settings["epsilon"]), "default": "", "uniform": ""}
    values = []
    for entry in report["candidates"]:
        candidate = entry["candidate"]
        text = arguments.get(entry["name"]) or write_arguments(
            candidate.get("vw_args", []), candidate.get("epsilon", 0.0)
        )
        values.append(_policy_result(entry, arguments=text))
    minutes = (report["last_decision_at"] - report["first_decision_at"]) / 60.0 / offline.TIME_BUCKETS
    serving = f"{OPTIMIZED}{optimize.SERVING}"  # the policy's own options replayed: never the optimal policy
    decision = optimize.decide(
        {
            **report,
            "candidates": [
                {**entry, "name": optimize.SERVING if entry["name"] == serving else entry["name"]}
                for entry in report["candidates"]
            ],
        }
    )
    found.update(
        optimalPolicy=decision["chosen"] or "Online policy",
        description=f"{report['rounds']} decisions of {report['events']} rankings; {decision['reason']}",
        content={
            "startTime": iso(row["start_time"]),
            "endTime": iso(row["end_time"]),
            "intervalInMinutes": max(1, round(minutes)),
            "value": values,
        },
    )
    return found


def evaluations(db: Database, *, top: int | None = None, skip: int = 0) -> list[dict[str, Any]]:
    """Return Personalizer's list of evaluations, newest first."""
    runs.active_count(db)  # a run whose process died is failed here as in its own answer
    rows = list(
        db.query(
            "SELECT p.*, e.status AS run_status FROM personalizer_items p LEFT JOIN evaluations e "
            "ON e.id = p.run_id WHERE p.kind = ? ORDER BY p.created_at DESC LIMIT ? OFFSET ?",
            [EVALUATION, -1 if top is None else top, skip],
        )
    )
    return [
        {**_details(row, STATUS.get(row["run_status"] or "failed", "Failed")), "evaluationType": "Manual"}
        for row in rows
    ]


def delete_evaluation(db: Database, evaluation_id: str) -> None:
    """Delete a finished evaluation, its run and the models its candidates were trained to."""
    row = _item(db, EVALUATION, evaluation_id)
    run = runs.get(db, row["run_id"])
    if run is not None and run["status"] in runs.ACTIVE:
        raise Refused(
            f"Evaluation {evaluation_id!r} is running; delete it when it is done",
            code="OperationNotAllowed",
            status=409,
        )
    with write_transaction(db):
        db.execute("DELETE FROM personalizer_items WHERE kind = ? AND id = ?", [EVALUATION, evaluation_id])
        if not db.execute("SELECT 1 FROM optimizations WHERE evaluation = ?", [row["run_id"]]).fetchone():
            db.execute("DELETE FROM evaluation_models WHERE run_id = ?", [row["run_id"]])
            db.execute("DELETE FROM evaluations WHERE id = ?", [row["run_id"]])


def apply_from_evaluation(db: Database, config: Deployment, body: Mapping[str, Any]) -> None:
    """Apply a policy of a Personalizer evaluation, with ``runs.apply``'s evidence rules."""
    evaluation_id, name = body.get("evaluationId"), body.get("policyName")
    if not isinstance(evaluation_id, str) or not isinstance(name, str):
        raise Refused("evaluationId and policyName: both are required text", code="BadRequest")
    row = _item(db, EVALUATION, evaluation_id)
    candidate = {"Online policy": "logged", "Baseline policy": "default", "Random policy": "uniform"}.get(name, name)
    try:
        runs.apply(db, config, row["run_id"], candidate)
    except runs.ApplyRefused as exc:
        raise Refused(
            str(exc),
            code="OperationNotAllowed" if exc.status != 404 else "EvaluationNotFound",
            status=400 if exc.status == 422 else exc.status,
        ) from None


# ---------------------------------------------------------------- feature importances


def create_importance(db: Database, config: Deployment, importance_id: str, body: Mapping[str, Any]) -> None:
    """Explain the ``actions`` policy's newest model on the range's most recent decisions; store the scores."""
    unknown = sorted(set(body) - {"name", "startTime", "endTime"})
    if unknown:
        raise Refused(
            f"{unknown[0]}: not a field of a feature importance (fields: name, startTime, endTime)",
            code="InvalidContract",
        )
    name = _name(body)
    start, end = _time_range(body)
    rounds = offline.policy_rounds(db, config, ACTIONS, since=start, until=end, limit=IMPORTANCE_DECISIONS)
    if len(rounds) == 0:
        raise Refused(
            f"startTime: no closed decisions of the actions policy were logged from {iso(start)} to {iso(end)}",
            code="NoLogsExistInDateRange",
        )
    record = latest_model(db, ACTIONS)
    assert record is not None
    examples = [(rounds.shared[i], rounds.actions(i)[int(rounds.chosen[i])]) for i in range(len(rounds))]
    found = explain.importance(explain.explainer_for(ServingModel(record)), examples)
    top = max((item["mean_abs_contribution"] for item in found), default=0.0) or 1.0
    scores = [
        {"namespace": item["namespace"], "featureName": item["feature"], "score": item["mean_abs_contribution"] / top}
        for item in found
    ]
    with write_transaction(db):
        _insert(
            db,
            IMPORTANCE,
            importance_id,
            name=name,
            start=start,
            end=end,
            result={"featureScores": scores, "decisions": len(examples), "modelVersion": record.version},
        )


def importance(db: Database, importance_id: str) -> dict[str, Any]:
    """Return a Personalizer feature importance: details and each feature's score (the largest is 1)."""
    row = _item(db, IMPORTANCE, importance_id)
    result = json.loads(row["result"])
    return {
        **_details(row, "Succeeded"),
        "featureScores": result["featureScores"],
        "description": f"model version {result['modelVersion']} explained on {result['decisions']} decisions",
    }


def importances(db: Database, *, top: int | None = None, skip: int = 0) -> list[dict[str, Any]]:
    """Return Personalizer's list of feature importances, newest first."""
    return [
        _details(row, "Succeeded")
        for row in db.query(
            "SELECT * FROM personalizer_items WHERE kind = ? ORDER BY created_at DESC LIMIT ? OFFSET ?",
            [IMPORTANCE, -1 if top is None else top, skip],
        )
    ]


def delete_importance(db: Database, importance_id: str) -> None:
    """Delete a feature importance."""
    _item(db, IMPORTANCE, importance_id)
    with write_transaction(db):
        db.execute("DELETE FROM personalizer_items WHERE kind = ? AND id = ?", [IMPORTANCE, importance_id])


# ---------------------------------------------------------------- model and logs


def model_properties(db: Database) -> dict[str, Any]:
    """Return when the ``actions`` model was started (its newest version not made by the learner) and last changed."""
    rows = db.execute("SELECT created_at, origin FROM models WHERE policy = ? ORDER BY version", [ACTIONS]).fetchall()
    if not rows:
        raise Refused("the actions policy has no model yet", code="ResourceNotFound", status=404)
    started = [created for created, origin in rows if origin != "learner"]
    return {"creationTime": iso(started[-1] if started else rows[0][0]), "lastModifiedTime": iso(rows[-1][0])}


def log_properties(db: Database) -> dict[str, Any]:
    """Return the time range of the ``actions`` policy's logged decisions."""
    first, last = db.execute("SELECT MIN(created_at), MAX(created_at) FROM events WHERE kind = ?", [ACTIONS]).fetchone()
    if first is None:
        raise Refused("no decision of the actions policy is logged", code="LogsPropertiesNotFound", status=404)
    return {"dateRange": {"from": iso(first), "to": iso(last)}}


def delete_logs(db: Database) -> int:
    """Delete the ``actions`` policy's logged decisions but those not yet learned or activated; return how many."""
    return maintenance.prune(db, older_than=time.time() + 1.0, kind=ACTIONS, keep_deferred=True).events


def shown(db: Database, event_id: str, *, multislot: bool) -> dict[str | None, str]:
    """Return what an event of this API showed: slot id (None for a single-slot ranking) -> action id."""
    rows = db.execute(
        "SELECT i.slot_id, i.title_id, e.kind FROM events e JOIN impressions i ON i.event_seq = e.seq "
        "WHERE e.id = ? ORDER BY i.position",
        [event_id],
    ).fetchall()
    if not rows or rows[0][2] != ACTIONS:
        raise NotFound(f"eventId: no ranking has the event id {event_id!r}")
    if (rows[0][0] is not None) != multislot:
        kind, prefix = ("multi-slot", "/multislot") if rows[0][0] is not None else ("single-slot", "")
        raise Conflict(
            f"eventId: {event_id!r} is a {kind} ranking; use {prefix}/events/{event_id}/reward and "
            f"{prefix}/events/{event_id}/activate"
        )
    return {slot_id: str(action_id) for slot_id, action_id, _ in rows}


def edited_at(db: Database) -> str:
    """Return when the actions policy's settings last changed, as Personalizer writes times."""
    row = db.execute("SELECT updated_at FROM policies WHERE name = ?", [ACTIONS]).fetchone()
    when = datetime.fromtimestamp(row[0] if row else 0.0, tz=UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
