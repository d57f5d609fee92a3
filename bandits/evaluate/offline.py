"""Offline policy evaluation on a log of decisions: rounds, a cross-fitted reward model, candidate policies.

A *round* is one logged decision of one policy: for ``artwork``, the choice of a shown title's artwork
among that title's artworks; for ``titles``, the choice of one slot's title among the candidates not
placed in earlier slots (the row's earlier slots are taken as logged). Each round keeps the VW lines
the decision saw, the chosen action, its logged probability and the reward the policy was credited.

For every candidate policy the evaluation computes, per round, its probability of the logged action
and its expected reward under the reward model, and feeds them to the estimators of
``bandits.evaluate.estimators`` (IPS, SNIPS, DM, DR). The titles policy's values are per slot decision, given
the earlier slots as they were logged: what a candidate would earn choosing each slot in its place.

The reward model is a VW squared-loss regressor of the reward on the very lines the decisions used
(shared and action features), with the policy's own interactions. VW rather than a NumPy or
scikit-learn model because the features are sparse hashed text with crosses: VW reads them as
logged, in one pass, in memory that does not grow with the catalog, and a model of another kind
would need a second feature encoding that could drift from the one the policies learn from. Not
VW's own ``--cb_adf --cb_type dm``: measured on the simulated audience of the tests, its predictions
were worse than the mean reward even on the rounds it was trained on (R^2 -0.42 for titles), where
the plain regressor's were not. The model is cross-fitted over time-ordered folds:
the rounds of a fold are predicted by a model trained on the other folds only, so DR's correction is
not fitted to the very rewards it corrects, and a fold is a contiguous stretch of time, so that
events close in time (one viewer's session, one day's catalog) fall on one side.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bandits.deployment import Deployment
from bandits.errors import SpecError
from bandits.evaluate import estimators
from bandits.evaluate import passes as vw_passes
from bandits.evaluate.candidates import (
    CANDIDATE_FIELDS,
    CANDIDATE_KINDS,
    DEFAULT_CANDIDATES,
    SHORTHANDS,
    Candidate,
    candidate_exploration,
    parse_candidate,
)
from bandits.evaluate.passes import Progress, quiet
from bandits.log import datasets
from bandits.log.rounds import Rounds, Spill, closed_seqs, concatenate, from_log, iter_from_log, parse_time
from bandits.model.policy import POLICY_NAMES, load_policy
from bandits.storage import Database

ESTIMATORS = ("ips", "snips", "dm", "dr")
# The interval of IPS, SNIPS and DR (bandits.evaluate.estimators): it sees an unrewarded weight tail.
INTERVAL = "likelihood"
MAX_SEGMENTS = 20  # segment values reported, the most frequent first
MIN_SEGMENT_ROUNDS = 30  # smaller segments are counted but not estimated
TIME_BUCKETS = 10  # contiguous stretches of events in the "over time" series
# Re-exported: the candidates are read here for the callers of an evaluation, and the log's rounds.
__all__ = [
    "from_log",
    "CANDIDATE_FIELDS",
    "CANDIDATE_KINDS",
    "DEFAULT_CANDIDATES",
    "SHORTHANDS",
    "Candidate",
    "candidate_exploration",
    "parse_candidate",
]


# ---------------------------------------------------------------- reward model


# Policy options a reward model leaves out, with the number of values each takes.
REGRESSOR_DROPS = {"--cb_type": 1, "--clip_p": 1, "-l": 1, "--learning_rate": 1}
# Measured on the simulated audience of tests/bandits/evaluate/test_offline.py, cross-fitted over two folds: at VW's
# default rate (0.5) the regressor's R^2 was 0.00 (artwork) and 0.00 (titles), at 0.1 it was 0.16
# and 0.11, at 0.02 0.14 and 0.10; a second and third pass changed it by less than 0.01.
REGRESSOR_LEARNING_RATE = 0.1


def regressor_args(vw_args: Sequence[str]) -> list[str]:
    """Return VW options for a squared-loss reward regressor with the policy's features and interactions.

    The policy's ``--cb_type`` and ``--clip_p`` have no meaning for a plain regressor (they are left
    out), and its learning rate is tuned for the policy's updates (replaced by ``REGRESSOR_LEARNING_RATE``).
    """
    args: list[str] = []
    skip = 0
    for arg in vw_args:
        if skip:
            skip -= 1
        elif arg in REGRESSOR_DROPS:
            skip = REGRESSOR_DROPS[arg]
        else:
            args.append(arg)
    return [*args, "-l", str(REGRESSOR_LEARNING_RATE)]


@dataclass(frozen=True)
class RewardModel:
    """Cross-fitted predictions of the reward of the rounds' actions, and how well they fit."""

    q_logged: np.ndarray  # (n,) predicted reward of every round's logged action
    vw_args: list[str]
    folds: int
    passes: int
    mse: float  # mean squared error of the predictions on the logged actions
    baseline_mse: float  # the same for predicting every fold's reward by the other folds' mean
    # (total actions,) predicted reward of every action, clipped to the range of observed rewards; None
    # when an evaluation keeps them in its passes' files (``evaluate``)
    q: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """Return the model's description and fit as JSON-ready data."""
        return {
            "vw_args": self.vw_args,
            "folds": self.folds,
            "passes": self.passes,
            "mse": self.mse,
            "baseline_mse": self.baseline_mse,
            "r_squared": 1.0 - self.mse / self.baseline_mse if self.baseline_mse > 0 else None,
        }


def reward_model_guidance(r_squared: float | None) -> str:
    """Say what a reward model's R² means for reading DR (BENCHMARKS.md, "Do the intervals hold the truth?").

    DR stays unbiased whatever the fit, since the logged probabilities are exact; the fit decides how
    much narrower than IPS its interval is. Rewards that are mostly 0 and sometimes 1 cap R² low:
    the true expected rewards themselves reached only 0.13 to 0.16 on plays at about 10 %.
    """
    if r_squared is None or not math.isfinite(r_squared) or r_squared <= 0:
        return (
            "the reward model predicts no better than the mean reward: DR stays unbiased but is no narrower "
            "than IPS here; read SNIPS beside it"
        )
    if r_squared < 0.1:
        return "the reward model explains a little: DR is somewhat narrower than IPS; DR is the estimate to read"
    return "the reward model fits well for rewards this noisy: DR is clearly the estimate to read"


def fit_reward_model(
    rounds: Rounds, *, vw_args: Sequence[str], folds: int = 2, passes: int = 1, progress: Progress = quiet
) -> RewardModel:
    """Predict every action's reward, each round by a model trained on the other time-ordered folds.

    The model is a VW squared-loss regressor of the reward on the shared and action features of the
    logged action (``regressor_args``). Folds are contiguous runs of events (all rounds of an event
    in one fold), in time order (``bandits.evaluate.passes.fold_predictions``).
    """
    _check_folds(folds, rounds.n_events)
    args = regressor_args(vw_args)
    parts = [
        q
        for k in range(folds)
        for q in vw_passes.fold_predictions(
            vw_passes.InMemory(rounds),
            fold=k,
            folds=folds,
            n_events=rounds.n_events,
            rounds=len(rounds),
            args=args,
            passes=passes,
            progress=_fold_progress(progress, k, folds),
        )
    ]
    q = np.concatenate(parts) if parts else np.zeros(0)
    np.clip(q, rounds.reward.min(), rounds.reward.max(), out=q)
    q_logged = q[rounds.logged_flat]
    fit = _fit(rounds, q_logged, folds)
    return RewardModel(
        q=q,
        q_logged=q_logged,
        vw_args=args,
        folds=folds,
        passes=passes,
        mse=fit["mse"],
        baseline_mse=fit["baseline_mse"],
    )


def _fold_progress(progress: Progress, fold: int, folds: int) -> Progress:
    """Map one fold's progress onto the reward model's."""
    return lambda fraction, stage: progress((fold + fraction) / folds, stage)


def _check_folds(folds: int, n_events: int) -> None:
    if folds < 2:
        raise SpecError(f"folds: at least 2, got {folds!r}")
    if n_events < folds:
        raise SpecError(f"folds: {folds} folds need at least {folds} events, the range holds {n_events}")


def _fit(rounds: Rounds | Columns, q_logged: np.ndarray, folds: int) -> dict[str, float]:
    """Return the reward model's mean squared error, and the baseline's: each fold's reward by the others' mean."""
    fold = vw_passes.fold_of(rounds.event_index, folds, rounds.n_events)
    baseline_se = 0.0
    for k in range(folds):
        test = fold == k
        baseline_se += float(np.sum((rounds.reward[~test].mean() - rounds.reward[test]) ** 2))
    return {
        "mse": float(np.mean((q_logged - rounds.reward) ** 2)),
        "baseline_mse": baseline_se / len(rounds),
    }


# ---------------------------------------------------------------- candidate policies


def fixed_pmf(kind: str, sizes: np.ndarray) -> np.ndarray:
    """Return the distribution of a candidate that learns nothing (``uniform``, ``default``) over ``sizes`` actions."""
    if kind == "uniform":
        return np.repeat(1.0 / sizes, sizes)
    if kind == "default":
        pmf = np.zeros(int(sizes.sum()))
        pmf[np.cumsum(sizes) - sizes] = 1.0
        return pmf
    raise ValueError(f"a {kind} candidate's distribution depends on a model")


def target_distribution(
    rounds: Rounds,
    candidate: Candidate,
    *,
    model_blob: bytes | None = None,
    model_examples: int = 0,
    model_tried: str | None = None,
    trained: dict[str, vw_passes.Trained] | None = None,
    progress: Progress = quiet,
) -> np.ndarray | None:
    """Return the candidate's probability of every action of every round, flat; None for ``logged``.

    ``model_blob`` is the stored model of a ``model`` candidate, ``model_examples`` the examples it
    has learned (SquareCB's exploration depends on them), ``model_tried`` its counts of the actions it
    learned (an exploration bonus rests on them). A ``vw`` candidate's model, once it
    has learned every round, is put in ``trained`` under the candidate's name if given
    (``bandits.evaluate.passes.candidate_pmf``).
    """
    if candidate.kind == "logged":
        return None
    if candidate.kind in ("uniform", "default"):
        return fixed_pmf(candidate.kind, rounds.sizes)
    parts = list(
        vw_passes.candidate_pmf(
            vw_passes.InMemory(rounds),
            candidate,
            rounds=len(rounds),
            model_blob=model_blob,
            model_examples=model_examples,
            model_tried=model_tried,
            trained=trained,
            progress=progress,
        )
    )
    return np.concatenate(parts) if parts else np.zeros(0)


# ---------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Columns:
    """The numbers of every round of an evaluation, without its lines: what the estimators read.

    An evaluation holds these (about 40 bytes a decision) while its rounds' lines stay in a spill
    file (``bandits.log.rounds.Spill``); ``Rounds`` has the same attributes, so the estimates below
    take either.
    """

    event_index: np.ndarray  # (n,) int32
    created_at: np.ndarray  # (n,) float64
    sizes: np.ndarray  # (n,) int32: actions offered
    chosen: np.ndarray  # (n,) int32: the logged action, as an offset within the round's actions
    pscore: np.ndarray  # (n,) float64
    reward: np.ndarray  # (n,) float64

    def __len__(self) -> int:
        return int(self.pscore.size)

    @property
    def n_events(self) -> int:
        """The number of events the rounds come from."""
        return int(self.event_index[-1]) + 1 if len(self) else 0


@dataclass(frozen=True)
class Scores:
    """Per-round inputs of the estimators for one candidate."""

    target_prob: np.ndarray  # (n,) the candidate's probability of the logged action
    q_target: np.ndarray  # (n,) the reward model's expected reward under the candidate
    q_logged: np.ndarray  # (n,) the reward model's prediction for the logged action


def scores_of(
    sizes: np.ndarray, chosen: np.ndarray, pscore: np.ndarray, q: np.ndarray, pmf: np.ndarray | None
) -> Scores:
    """Return the scores of rounds of ``sizes`` actions from flat predictions ``q`` and a flat distribution ``pmf``.

    For the logging policy itself (``pmf`` None) the probability is the logged one and the expected
    reward is the model's prediction for the logged action: one draw from the logging policy, so its
    mean is an unbiased estimate of the model's expectation under that policy.
    """
    starts = np.cumsum(sizes, dtype=np.int64) - sizes
    logged = starts + chosen
    q_logged = q[logged]
    if pmf is None:  # views, not copies: no estimate writes into its inputs
        return Scores(target_prob=np.asarray(pscore, dtype=float), q_target=q_logged, q_logged=q_logged)
    q_target = np.add.reduceat(pmf * q, starts) if sizes.size else np.zeros(0)
    return Scores(target_prob=pmf[logged], q_target=q_target, q_logged=q_logged)


def candidate_scores(rounds: Rounds, model: RewardModel, pmf: np.ndarray | None) -> Scores:
    """Return the candidate's probability of each logged action and its expected reward under the model."""
    if model.q is None:
        raise ValueError("the reward model's predictions of every action are not in memory")
    return scores_of(rounds.sizes, rounds.chosen, rounds.pscore, model.q, pmf)


def estimates(
    rounds: Rounds | Columns, scores: Scores, mask: np.ndarray | None = None, *, names: Sequence[str] = ESTIMATORS
) -> dict[str, Any]:
    """Return IPS, SNIPS, DM and DR (or those ``names`` asks for) with 95% intervals over the rounds in ``mask``.

    IPS, SNIPS and DR take the empirical likelihood interval (``INTERVAL``), which allows for heavily
    weighted decisions that happened not to be rewarded; DM the normal one.
    """
    select = slice(None) if mask is None else mask
    reward, pscore = rounds.reward[select], rounds.pscore[select]
    target, q_target = scores.target_prob[select], scores.q_target[select]
    result: dict[str, Any] = {}
    for name in names:
        if name == "ips":
            result[name] = estimators.ips(reward=reward, pscore=pscore, target_prob=target, interval=INTERVAL).as_dict()
        elif name == "dm":
            result[name] = estimators.dm(q_target=q_target).as_dict()
        elif name == "dr":
            result[name] = estimators.dr(
                reward=reward,
                pscore=pscore,
                target_prob=target,
                q_logged=scores.q_logged[select],
                q_target=q_target,
                interval=INTERVAL,
            ).as_dict()
        elif name == "snips":
            try:
                result[name] = estimators.snips(
                    reward=reward, pscore=pscore, target_prob=target, interval=INTERVAL
                ).as_dict()
            except ValueError as exc:  # the candidate gives no logged action any probability
                result[name] = {"estimator": "snips", "value": None, "undefined": str(exc)}
        else:
            raise ValueError(f"estimator: one of {', '.join(ESTIMATORS)}, got {name!r}")
    return result


LARGE_WEIGHT = 10.0  # an importance weight above this makes a round one of the tail
MIN_TAIL_REWARDS = 5  # rewarded tail rounds below which an estimate rests on too few
MIN_TAIL_SHARE = 0.05  # the share of the total weight the tail must carry to matter


def weight_tail(rounds: Rounds | Columns, scores: Scores, *, default_reward: float = 0.0) -> dict[str, Any]:
    """Return the rounds whose importance weight (target / logged probability) exceeds ``LARGE_WEIGHT``.

    ``fragile`` when that tail carries at least ``MIN_TAIL_SHARE`` of the total weight and fewer than
    ``MIN_TAIL_REWARDS`` of its rounds were rewarded (got another reward than ``default_reward``, what a
    decision without any reward is credited): the estimate then rests on a handful of decisions. The
    report's likelihood intervals allow for such a tail (normal ones covered the true value 0.74 to
    0.87 of the time there: BENCHMARKS.md, "Do the intervals hold the truth?"), but apply and
    optimization still pass such a candidate over until more decisions settle it.
    """
    weight = scores.target_prob / rounds.pscore
    tail = weight > LARGE_WEIGHT
    share = float(weight[tail].sum() / weight.sum()) if weight.sum() > 0 else 0.0
    rewarded = int((rounds.reward[tail] != default_reward).sum())
    return {
        "threshold": LARGE_WEIGHT,
        "rounds": int(tail.sum()),
        "rewarded": rewarded,
        "weight_share": share,
        "max_weight": float(weight.max()) if weight.size else 0.0,
        "fragile": bool(tail.any() and share >= MIN_TAIL_SHARE and rewarded < MIN_TAIL_REWARDS),
    }


def dr_terms(rounds: Rounds | Columns, scores: Scores) -> np.ndarray:
    """Return the per-round terms whose mean is the DR estimate (built in place: two arrays of a round each)."""
    terms = rounds.reward - scores.q_logged
    terms *= scores.target_prob / rounds.pscore
    terms += scores.q_target
    return terms


def lift(candidate_terms: np.ndarray, logged_terms: np.ndarray, *, level: float = 0.95) -> dict[str, float]:
    """Return the mean difference of paired per-round terms with its normal confidence interval."""
    return lift_of(candidate_terms - logged_terms, level=level)


def lift_of(difference: np.ndarray, *, level: float = 0.95) -> dict[str, float]:
    """Return the mean of paired per-round differences with its normal confidence interval."""
    value = float(difference.mean())
    half = estimators._z(level) * float(np.std(difference, ddof=1)) / math.sqrt(difference.size)
    return {"value": value, "ci_low": value - half, "ci_high": value + half, "level": level}


def segment_values(rounds: Rounds, feature: str) -> list[str]:
    """Return each round's segment: the value of viewer feature ``feature`` as text (``(missing)`` if absent)."""
    values = []
    for context in rounds.contexts:
        value = context.get(feature)
        if value is None:
            values.append("(missing)")
        elif isinstance(value, list):
            values.append(",".join(sorted(str(item) for item in value)) or "(empty)")
        elif isinstance(value, bool):
            values.append("true" if value else "false")
        else:
            values.append(str(value))
    return values


def time_buckets(event_index: np.ndarray, n_events: int, buckets: int = TIME_BUCKETS) -> np.ndarray:
    """Return each round's stretch of time: up to ``buckets`` contiguous runs of events, numbered 0, 1, ..."""
    count = min(buckets, n_events)
    return (event_index.astype(np.int64) * count // max(1, n_events)).astype(np.int8)


# ---------------------------------------------------------------- a whole evaluation


@dataclass(frozen=True)
class EvaluationSpec:
    """What to evaluate: a policy's rounds in a time range, the candidates, and how to break results down.

    With ``dataset``, the rounds are an imported dataset's (``bandits.log.datasets``) instead of the log's;
    ``policy`` then names whose VW options the reward model uses and whose stored models ``model``
    candidates load, and may be None for a dataset no Marquee policy logged.
    """

    policy: str | None
    candidates: tuple[Candidate, ...]
    since: float | None = None
    until: float | None = None
    segment_by: str | None = None
    folds: int = 2
    limit: int | None = None
    dataset: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the spec as JSON-ready data (what ``parse_spec`` reads back)."""
        return {
            "policy": self.policy,
            "dataset": self.dataset,
            "candidates": [c.as_dict() for c in self.candidates],
            "since": self.since,
            "until": self.until,
            "segment_by": self.segment_by,
            "folds": self.folds,
            "limit": self.limit,
        }


SPEC_FIELDS = ("policy", "dataset", "candidates", "since", "until", "segment_by", "folds", "limit")
MAX_CANDIDATES = 20


def _positive_int(value: Any, *, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"{where}: must be a whole number from {low} to {high}")
    return value


def parse_spec(data: Mapping[str, Any]) -> EvaluationSpec:
    """Check an evaluation request and return it as a spec; raise ``SpecError`` naming the first bad field."""
    if not isinstance(data, Mapping):
        raise SpecError("body: must be an object")
    unknown = sorted(set(data) - set(SPEC_FIELDS))
    if unknown:
        raise SpecError(f"{unknown[0]}: not an evaluation field (fields: {', '.join(SPEC_FIELDS)})")
    dataset = data.get("dataset")
    if dataset is not None and (not isinstance(dataset, str) or not 0 < len(dataset) <= 64):
        raise SpecError("dataset: must be the id of an imported dataset")
    policy = data.get("policy")
    if policy not in POLICY_NAMES and not (dataset is not None and policy is None):
        raise SpecError(f"policy: must be one of {', '.join(POLICY_NAMES)}, got {policy!r}")
    raw = data.get("candidates")
    if raw is None:
        raw = list(DEFAULT_CANDIDATES)
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_CANDIDATES:
        raise SpecError(f"candidates: must be a list of 1 to {MAX_CANDIDATES} candidates")
    candidates = tuple(parse_candidate(value, where=f"candidates[{index}]") for index, value in enumerate(raw))
    names = [candidate.name for candidate in candidates]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise SpecError(f"candidates[{index}].name: {name!r} is used twice; give the candidates distinct names")
    since = parse_time(data.get("since"), where="since")
    until = parse_time(data.get("until"), where="until")
    if since is not None and until is not None and until <= since:
        raise SpecError("until: must be later than since")
    segment_by = data.get("segment_by")
    if segment_by is not None and (not isinstance(segment_by, str) or not 0 < len(segment_by) <= 64):
        raise SpecError("segment_by: must be the name of a viewer feature (1 to 64 characters)")
    folds = _positive_int(data.get("folds", 2), where="folds", low=2, high=10)
    limit = data.get("limit")
    if limit is not None:
        limit = _positive_int(limit, where="limit", low=2, high=10_000_000)
    return EvaluationSpec(
        policy=policy,
        candidates=candidates,
        since=since,
        until=until,
        segment_by=segment_by,
        folds=folds,
        limit=limit,
        dataset=dataset,
    )


MIN_OUT_OF_SAMPLE_ROUNDS = 30  # decisions a stored model had not learned, to estimate it on those alone


def sampling(
    db: Database,
    rounds: Rounds | Columns,
    scores: Scores,
    candidate: Candidate,
    *,
    version: int | None,
    policy: str | None,
) -> dict[str, Any]:
    """Return how a candidate was scored: ``scoring`` and ``in_sample``, and for a stored model its split.

    A ``vw`` candidate is scored progressively (each event decided before it is learned) and the
    baselines learn nothing: both are out of sample. A ``model`` candidate is a stored version: it
    may have learned any decision logged before it was published, so it is in sample when any of the
    rounds is that old, and its estimates then flatter it (a model that memorised noise looks good on
    the noise). Its estimates over the rounds logged after it was published, when there are at least
    ``MIN_OUT_OF_SAMPLE_ROUNDS``, are given as ``out_of_sample``.
    """
    if candidate.kind != "model" or version is None or policy is None:
        return {"scoring": "progressive" if candidate.kind == "vw" else "not learned", "in_sample": False}
    published = float(
        db.execute("SELECT created_at FROM models WHERE policy = ? AND version = ?", [policy, version]).fetchone()[0]
    )
    later = rounds.created_at > published
    found: dict[str, Any] = {
        "scoring": "stored model",
        "in_sample": bool((~later).any()),
        "model_published_at": published,
        "in_sample_rounds": int((~later).sum()),
        "out_of_sample_rounds": int(later.sum()),
    }
    if later.sum() >= MIN_OUT_OF_SAMPLE_ROUNDS:
        found["out_of_sample"] = {"dr": _interval(estimates(rounds, scores, later, names=["dr"])["dr"])}
    return found


def model_blob(db: Database, policy: str, version: int | None) -> tuple[int, bytes, int, str | None]:
    """Return (version, bytes, examples learned, counts of actions learned) of a stored model of ``policy``:
    ``version``, or the newest if None. The counts are ``bandits.model.tried``'s JSON, None if it keeps none."""
    if version is None:
        row = db.execute(
            "SELECT version, blob, examples_learned, tried FROM models WHERE policy = ? ORDER BY version DESC LIMIT 1",
            [policy],
        ).fetchone()
    else:
        row = db.execute(
            "SELECT version, blob, examples_learned, tried FROM models WHERE policy = ? AND version = ?",
            [policy, version],
        ).fetchone()
    if row is None:
        kept = db.execute("SELECT MIN(version), MAX(version) FROM models WHERE policy = ?", [policy]).fetchone()
        raise SpecError(
            f"version: model version {version} of {policy} is not stored (versions kept: {kept[0]} to {kept[1]})"
        )
    return int(row[0]), bytes(row[1]), int(row[2]), row[3]


class _Stages:
    """Maps the progress of one stage onto the whole evaluation's progress."""

    def __init__(self, progress: Progress, weights: Sequence[float]) -> None:
        self.progress = progress
        total = float(sum(weights))
        self.starts = np.concatenate([[0.0], np.cumsum(weights)[:-1]]) / total
        self.widths = np.asarray(weights, dtype=float) / total

    def stage(self, index: int) -> Progress:
        start, width = float(self.starts[index]), float(self.widths[index])
        return lambda fraction, what: self.progress(start + width * min(1.0, max(0.0, fraction)), what)


def _interval(estimate: Mapping[str, Any]) -> dict[str, Any]:
    return {key: estimate.get(key) for key in ("value", "ci_low", "ci_high")}


def policy_rounds(
    db: Database,
    config: Deployment,
    policy: str,
    *,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> Rounds:
    """Return ``from_log`` rounds with the rewards combined by the policy's current rule."""
    return concatenate(policy_chunks(db, config, policy, since=since, until=until, limit=limit), policy=policy)


def policy_chunks(
    db: Database,
    config: Deployment,
    policy: str,
    *,
    since: float | None = None,
    until: float | None = None,
    limit: int | None = None,
) -> Iterator[Rounds]:
    """Yield ``policy_rounds`` in chunks of whole events (``bandits.log.rounds.iter_from_log``)."""
    settings = load_policy(db, config, policy)
    yield from iter_from_log(
        db,
        policy=policy,
        aggregation=settings.aggregation,
        default_reward=settings.default_reward,
        since=since,
        until=until,
        limit=limit,
        reward_values=settings.reward_values,
    )


def resolve(db: Database, spec: EvaluationSpec) -> EvaluationSpec:
    """Check what ``spec`` refers to and return it completed: a dataset's policy filled in when it has one.

    Raises:
        SpecError: the dataset is not ready, or a ``model`` candidate names a version not kept or
            has no policy to load a model of.
    """

    if spec.dataset is not None:
        found = datasets.ready(db, spec.dataset)
        if spec.policy is None and found["policy"] in POLICY_NAMES:
            spec = replace(spec, policy=found["policy"])
    for index, candidate in enumerate(spec.candidates):
        if candidate.kind != "model":
            continue
        if spec.policy is None:
            raise SpecError(
                f"candidates[{index}].kind: a model candidate runs a policy's stored model, and dataset "
                f"{spec.dataset!r} was not logged by a Marquee policy; name the policy in 'policy'"
            )
        try:
            model_blob(db, spec.policy, candidate.version)
        except SpecError as exc:
            raise SpecError(f"candidates[{index}].{exc}") from None
    return spec


@dataclass
class _Read:
    """What reading the rounds into a spill file leaves in memory: their numbers, and segments if asked."""

    columns: Columns
    segments: np.ndarray | None  # (n,) int32 code of each round's segment
    segment_names: list[str]
    features: set[str]  # the viewer features seen, when segments were asked for
    # the first and last decision time of each stretch of ``time_buckets`` (None for one without decisions)
    spans: list[tuple[float | None, float | None]]


def _read(
    db: Database, config: Deployment, spec: EvaluationSpec, folder: Path, progress: Progress
) -> tuple[Spill, _Read]:
    """Read the spec's decisions into a spill file in ``folder``; return it and what stays in memory.

    Without segments, a log of ``PARALLEL_MIN_ROUNDS`` or more (or any, with ``evaluation_processes``
    above 1) is read by as many processes as the passes get, a run of its events each
    (``bandits.evaluate.passes.read_parts``); otherwise by this process, a chunk at a time.
    """
    settings = load_policy(db, config, spec.policy) if spec.dataset is None and spec.policy is not None else None
    seqs = np.zeros(0, dtype=np.int64)
    if spec.dataset is not None:
        size = int(datasets.ready(db, spec.dataset)["decisions"] or 0)
    else:
        assert spec.policy is not None and settings is not None
        seqs = closed_seqs(db, policy=spec.policy, since=spec.since, until=spec.until, limit=spec.limit)
        size = int(seqs.size)
    processes = vw_passes.processes_for(config.evaluation_processes, size, tasks=len(os.sched_getaffinity(0)))
    if spec.segment_by is None and processes > 1:
        tasks = []
        if spec.dataset is not None:
            for number, (low, high, first) in enumerate(
                datasets.partition(db, spec.dataset, processes, since=spec.since, until=spec.until, limit=spec.limit)
            ):
                source: tuple[Any, ...] = (
                    "dataset",
                    spec.dataset,
                    spec.since,
                    spec.until,
                    spec.limit,
                    low,
                    high,
                    first,
                )
                tasks.append(
                    vw_passes.ReadTask(
                        str(folder / f"rounds-{number}"), str(folder / f"numbers-{number}"), config.database, source
                    )
                )
        else:
            assert settings is not None
            first = 0
            for number, run in enumerate(np.array_split(seqs, processes)):
                source = (
                    "log",
                    spec.policy,
                    settings.aggregation,
                    settings.default_reward,
                    settings.reward_values,
                    run,
                    first,
                )
                tasks.append(
                    vw_passes.ReadTask(
                        str(folder / f"rounds-{number}"), str(folder / f"numbers-{number}"), config.database, source
                    )
                )
                first += int(run.size)
        if tasks:
            spill, numbers = vw_passes.read_parts(tasks, processes=processes, progress=progress)
            return spill, _kept(numbers, spill, None, [], set())
    chunks: Iterable[Rounds]
    if spec.dataset is not None:
        chunks = datasets.iter_load(
            db, spec.dataset, since=spec.since, until=spec.until, limit=spec.limit, details=spec.segment_by is not None
        )
    else:
        assert settings is not None and spec.policy is not None
        chunks = iter_from_log(
            db,
            policy=spec.policy,
            aggregation=settings.aggregation,
            default_reward=settings.default_reward,
            reward_values=settings.reward_values,
            part=(seqs, 0),
        )
    spill = Spill(folder / "rounds")
    codes: dict[str, int] = {}
    seen: set[str] = set()
    segments: list[np.ndarray] = []

    def segment(chunk: Rounds) -> None:
        assert spec.segment_by is not None
        for context in chunk.contexts:
            seen.update(context)
        values = segment_values(chunk, spec.segment_by)
        segments.append(np.fromiter((codes.setdefault(v, len(codes)) for v in values), np.int32, len(values)))

    numbers = vw_passes.spill_numbers(chunks, spill, progress=progress, each=segment if spec.segment_by else None)
    codes_of = (np.concatenate(segments) if segments else np.zeros(0, np.int32)) if spec.segment_by else None
    return spill, _kept(numbers, spill, codes_of, list(codes), seen)


def _kept(
    numbers: dict[str, np.ndarray], spill: Spill, segments: np.ndarray | None, names: list[str], seen: set[str]
) -> _Read:
    """Return what an evaluation keeps of its decisions: their numbers, and the report's time spans.

    The decision times are read once here for the spans, then kept in a file beside the spill and
    mapped, not held: only a stored model's in-sample split reads them again.
    """
    event_index, created_at = numbers.pop("event_index"), numbers.pop("created_at")
    spans: list[tuple[float | None, float | None]] = []
    if created_at.size:
        n_events = int(event_index[-1]) + 1
        bucket_of = time_buckets(event_index, n_events)
        for bucket in range(min(TIME_BUCKETS, n_events)):
            times = created_at[bucket_of == bucket]
            spans.append((float(times.min()), float(times.max())) if times.size else (None, None))
    times_file = spill.path.with_name("created_at.npy")
    np.save(times_file, created_at)
    del created_at
    columns = Columns(event_index=event_index, created_at=np.load(times_file, mmap_mode="r"), **numbers)
    return _Read(columns, segments, names, seen, spans)


def _stream_scores(
    columns: Columns,
    spill: Spill,
    q_files: Sequence[Path],
    candidate: Candidate,
    pmf_file: Path | None,
    q_logged: np.ndarray | None = None,
) -> Scores:
    """Return a candidate's scores, reading the reward model's predictions (and its distribution) a chunk at a time.

    ``q_logged``, the predictions for the logged actions when a first call gave them, is shared, not copied.
    """
    n = len(columns)
    target_prob, q_target = np.empty(n), np.empty(n)
    known, q_logged = q_logged is not None, np.empty(n) if q_logged is None else q_logged
    low, high = float(columns.reward.min()), float(columns.reward.max())
    start = 0
    with vw_passes.Floats(q_files) as q_source, vw_passes.Floats([pmf_file] if pmf_file else []) as pmf_source:
        for info in spill.chunks:
            stop = start + info.rounds
            sizes = columns.sizes[start:stop]
            q = np.clip(q_source.take(info.actions), low, high)
            if candidate.kind == "logged":
                pmf = None
            elif candidate.kind in ("uniform", "default"):
                pmf = fixed_pmf(candidate.kind, sizes)
            else:
                pmf = pmf_source.take(info.actions)
            found = scores_of(sizes, columns.chosen[start:stop], columns.pscore[start:stop], q, pmf)
            target_prob[start:stop], q_target[start:stop] = found.target_prob, found.q_target
            if not known:
                q_logged[start:stop] = found.q_logged
            start = stop
    return Scores(target_prob=target_prob, q_target=q_target, q_logged=q_logged)


def evaluate(
    db: Database,
    config: Deployment,
    spec: EvaluationSpec,
    *,
    progress: Progress = quiet,
    trained: dict[str, vw_passes.Trained] | None = None,
) -> dict[str, Any]:
    """Run an evaluation: rounds from the log or a dataset, reward model, every candidate; return the report.

    The rounds are read once, a chunk at a time, into a temporary spill file; this process keeps
    only their numbers (``Columns``). The reward model's folds and the ``model`` and ``vw``
    candidates are passes over that file (``bandits.evaluate.passes``), in parallel processes by
    the deployment's ``evaluation_processes``; the estimates are then computed here from the
    numbers the passes wrote. ``trained``, if given, receives each ``vw`` candidate's model after
    it learned every round.

    Raises:
        SpecError: the request cannot be evaluated (too few rounds, a model version not kept, ...).
    """
    spec = resolve(db, spec)
    settings = load_policy(db, config, spec.policy) if spec.policy is not None else None
    vw_args = settings.vw_args if settings is not None else datasets.FOREIGN_VW_ARGS
    stages = _Stages(progress, [1.0, 2.0 * spec.folds + 2.0 * len(spec.candidates), 0.5])
    stages.stage(0)(0.0, "reading the log")
    source: dict[str, Any]
    reward_rule: dict[str, Any] | None = None
    if spec.dataset is not None:
        source = {"dataset": datasets.get(db, spec.dataset)}
        what = f"dataset {spec.dataset}"
    else:
        assert settings is not None and spec.policy is not None
        source = {"log": spec.policy}
        reward_rule = {
            "aggregation": settings.aggregation,
            "default_reward": settings.default_reward,
            "reward_values": settings.reward_values,
        }
        what = spec.policy
    with tempfile.TemporaryDirectory(prefix="marquee-evaluation-") as folder:
        spill, found = _read(db, config, spec, Path(folder), stages.stage(0))
        columns = found.columns
        if len(columns) < 2 or columns.n_events < spec.folds:
            raise SpecError(
                f"since: the range holds {len(columns)} closed decisions of {what} in "
                f"{columns.n_events} events; at least 2 decisions in {spec.folds} events (one per fold) are needed"
            )
        if spec.segment_by is not None and found.segment_names == ["(missing)"]:
            raise SpecError(
                f"segment_by: no decision in the range has the viewer feature {spec.segment_by!r}; "
                f"the features there are {', '.join(sorted(found.features)) or 'none'}"
            )
        blobs = {
            index: model_blob(db, str(spec.policy), candidate.version)
            for index, candidate in enumerate(spec.candidates)
            if candidate.kind == "model"
        }
        stages.stage(0)(1.0, "reading the log")
        args = regressor_args(vw_args)
        n, n_events = len(columns), columns.n_events
        q_files = [Path(folder) / f"q-{k}" for k in range(spec.folds)]
        tasks: list[vw_passes.Task] = [
            vw_passes.FoldTask(str(q_files[k]), fold=k, folds=spec.folds, n_events=n_events, rounds=n, args=tuple(args))
            for k in range(spec.folds)
        ]
        pmf_files: dict[int, Path] = {}
        for index, candidate in enumerate(spec.candidates):
            if candidate.kind in ("model", "vw"):
                pmf_files[index] = Path(folder) / f"pmf-{index}"
                blob = blobs.get(index)
                tasks.append(
                    vw_passes.CandidateTask(
                        str(pmf_files[index]),
                        candidate,
                        rounds=n,
                        model_blob=blob[1] if blob else None,
                        model_examples=blob[2] if blob else 0,
                        model_tried=blob[3] if blob else None,
                    )
                )
        processes = vw_passes.processes_for(config.evaluation_processes, n, len(tasks))
        results = vw_passes.run(tasks, spill, processes=processes, progress=stages.stage(1))
        if trained is not None:
            for task, blob_trained in zip(tasks, results):
                if isinstance(task, vw_passes.CandidateTask) and blob_trained is not None:
                    trained[task.candidate.name] = blob_trained
        report = stages.stage(2)
        report(0.0, "estimates")
        logged = _stream_scores(columns, spill, q_files, parse_candidate("logged"), None)
        fit = _fit(columns, logged.q_logged, spec.folds)
        model = RewardModel(
            q_logged=logged.q_logged,
            vw_args=args,
            folds=spec.folds,
            passes=1,
            mse=fit["mse"],
            baseline_mse=fit["baseline_mse"],
        )
        del logged
        results_by_candidate = []
        for index, candidate in enumerate(spec.candidates):
            scores = _stream_scores(columns, spill, q_files, candidate, pmf_files.get(index), model.q_logged)
            blob = blobs.get(index)
            results_by_candidate.append(
                _candidate_report(
                    db,
                    columns,
                    scores,
                    candidate,
                    blob=blob,
                    policy=spec.policy,
                    found=found,
                    default_reward=float(reward_rule["default_reward"]) if reward_rule else 0.0,
                )
            )
            del scores  # before the next candidate's are read: a long log holds one candidate's at a time
            report((index + 1) / len(spec.candidates), f"candidate {candidate.name}")
    segment_counts: list[tuple[str, int]] = []
    if found.segments is not None:
        counts = np.bincount(found.segments, minlength=len(found.segment_names))
        segment_counts = sorted(zip(found.segment_names, counts.tolist()), key=lambda item: (-item[1], item[0]))
    return {
        "policy": spec.policy,
        "source": source,
        "spec": spec.as_dict(),
        "rounds": n,
        "events": n_events,
        "first_decision_at": min(first for first, _ in found.spans if first is not None),
        "last_decision_at": max(last for _, last in found.spans if last is not None),
        "mean_reward": float(columns.reward.mean()),
        "explored_rounds": int((columns.pscore < 1.0 - 1e-9).sum()),  # decisions that had another possible action
        "reward_rule": reward_rule,
        "policy_settings": settings.as_dict() if settings is not None else None,
        "reward_model": {
            **model.summary(),
            "rounds": n,
            "guidance": reward_model_guidance(model.summary()["r_squared"]),
        },
        "segment_by": spec.segment_by,
        "segments": [{"segment": value, "rounds": count} for value, count in segment_counts],
        "candidates": results_by_candidate,
    }


def _candidate_report(
    db: Database,
    columns: Columns,
    scores: Scores,
    candidate: Candidate,
    *,
    blob: tuple[int, bytes, int, str | None] | None,
    policy: str | None,
    found: _Read,
    default_reward: float,
) -> dict[str, Any]:
    """Return one candidate's part of a report: estimates, lift, weight tail, sampling, segments, over time."""
    found_estimates = estimates(columns, scores)  # before the differences: a long log holds one array less
    tail = weight_tail(columns, scores, default_reward=default_reward)
    difference = dr_terms(columns, scores)
    difference -= columns.reward  # the paired differences the lift over the logged policy is the mean of
    entry: dict[str, Any] = {
        "name": candidate.name,
        "candidate": candidate.as_dict(),
        "estimates": found_estimates,
        "lift_over_logged": lift_of(difference),
        "weight_tail": tail,
    }
    if blob is not None:
        entry["candidate"]["version"] = blob[0]
    entry.update(sampling(db, columns, scores, candidate, version=blob[0] if blob else None, policy=policy))
    if found.segments is not None:
        counts = np.bincount(found.segments, minlength=len(found.segment_names))
        ranked = sorted(range(len(found.segment_names)), key=lambda code: (-counts[code], found.segment_names[code]))
        entry["segments"] = []
        for code in ranked[:MAX_SEGMENTS]:
            row: dict[str, Any] = {"segment": found.segment_names[code], "rounds": int(counts[code])}
            if counts[code] >= MIN_SEGMENT_ROUNDS:
                mask = found.segments == code
                estimated = estimates(columns, scores, mask, names=["dr", "ips"])
                row["dr"] = _interval(estimated["dr"])
                row["ips"] = _interval(estimated["ips"])
                row["lift_over_logged"] = lift_of(difference[mask])
            entry["segments"].append(row)
    entry["over_time"] = []
    bucket_of = time_buckets(columns.event_index, columns.n_events)
    for bucket, (first, last) in enumerate(found.spans):
        mask = bucket_of == bucket
        count = int(mask.sum())
        point: dict[str, Any] = {"from": first, "until": last, "rounds": count}
        if count >= 2:
            point["dr"] = _interval(estimates(columns, scores, mask, names=["dr"])["dr"])
        entry["over_time"].append(point)
    return entry
