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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import vowpal_wabbit_next as vw

from bandits.deployment import Deployment
from bandits.errors import SpecError
from bandits.evaluate import estimators
from bandits.log import datasets
from bandits.log.rounds import Rounds, from_log, parse_time
from bandits.model.exploration import EPSILON_GREEDY, RULES, SQUARECB, Exploration
from bandits.model.policy import POLICY_NAMES, RANGES, PolicyError, load_policy, new_workspace, parse_vw_args
from bandits.storage import Database
from bandits.vw import features
from bandits.vw.workspace import TextExamples, TextLines

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)

ESTIMATORS = ("ips", "snips", "dm", "dr")
# The interval of IPS, SNIPS and DR (bandits.evaluate.estimators): it sees an unrewarded weight tail.
INTERVAL = "likelihood"
MAX_SEGMENTS = 20  # segment values reported, the most frequent first
MIN_SEGMENT_ROUNDS = 30  # smaller segments are counted but not estimated
TIME_BUCKETS = 10  # contiguous stretches of events in the "over time" series


def _quiet(fraction: float, stage: str) -> None:
    """A progress callback that reports nothing."""


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


def _action_costs(examples: TextExamples, rounds: Rounds, i: int) -> np.ndarray:
    """Return a ``--cb_adf`` workspace's cost estimate of every action of round ``i``, in the order offered."""
    costs = np.empty(int(rounds.offsets[i + 1] - rounds.offsets[i]))  # not rounds.sizes: O(n) per call
    for index, cost in examples.predict(rounds.example(i, labeled=False)):
        costs[index] = cost
    return costs


@dataclass(frozen=True)
class RewardModel:
    """Cross-fitted predictions of the reward of every action of every round."""

    q: np.ndarray  # (total actions,) predicted reward, clipped to the range of observed rewards
    vw_args: list[str]
    folds: int
    passes: int
    mse: float  # mean squared error of the predictions on the logged actions
    baseline_mse: float  # the same for predicting every fold's reward by the other folds' mean

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
    rounds: Rounds, *, vw_args: Sequence[str], folds: int = 2, passes: int = 1, progress: Progress = _quiet
) -> RewardModel:
    """Predict every action's reward, each round by a model trained on the other time-ordered folds.

    The model is a VW squared-loss regressor of the reward on the shared and action features of the
    logged action (``regressor_args``). Folds are contiguous runs of events (all rounds of an event
    in one fold), in time order.
    """
    if folds < 2:
        raise SpecError(f"folds: at least 2, got {folds!r}")
    if rounds.n_events < folds:
        raise SpecError(f"folds: {folds} folds need at least {folds} events, the range holds {rounds.n_events}")
    args = regressor_args(vw_args)
    fold_of = rounds.event_index * folds // rounds.n_events
    q = np.zeros(int(rounds.offsets[-1]))
    baseline = np.empty(len(rounds))
    n = len(rounds)
    work = max(1.0, ((folds - 1) * passes + 1) * n)  # rounds learned and predicted overall
    done = 0
    for k in range(folds):
        try:
            regressor = TextLines(vw.Workspace(args))
        except (RuntimeError, ValueError) as exc:
            raise SpecError(f"vw_args: Vowpal Wabbit refused the reward model's options {args}: {exc}") from None
        train = np.flatnonzero(fold_of != k)
        test = np.flatnonzero(fold_of == k)
        for _ in range(passes):
            for i in train.tolist():
                action = rounds.actions(i)[int(rounds.chosen[i])]
                regressor.learn(features.regression_line(rounds.shared[i], action, float(rounds.reward[i])))
                done += 1
                if done % 1000 == 0:
                    progress(done / work, f"reward model: fold {k + 1} of {folds}")
        for i in test.tolist():
            shared, start = rounds.shared[i], int(rounds.offsets[i])
            for j, action in enumerate(rounds.actions(i)):
                q[start + j] = regressor.predict(features.regression_line(shared, action))
            done += 1
            if done % 1000 == 0:
                progress(done / work, f"reward model: fold {k + 1} of {folds}")
        baseline[test] = rounds.reward[train].mean()
    np.clip(q, rounds.reward.min(), rounds.reward.max(), out=q)
    logged = q[rounds.logged_flat]
    return RewardModel(
        q=q,
        vw_args=args,
        folds=folds,
        passes=passes,
        mse=float(np.mean((logged - rounds.reward) ** 2)),
        baseline_mse=float(np.mean((baseline - rounds.reward) ** 2)),
    )


# ---------------------------------------------------------------- candidate policies

CANDIDATE_KINDS = ("logged", "uniform", "default", "model", "vw")
CANDIDATE_FIELDS = (
    "name",
    "kind",
    "version",
    "vw_args",
    "exploration",
    "epsilon",
    "epsilon_decay_after",
    "epsilon_floor",
    "gamma_scale",
    "gamma_exponent",
)


@dataclass(frozen=True)
class Candidate:
    """A policy to evaluate.

    Kinds: ``logged`` (the policy that logged the rounds: the on-policy check), ``uniform``,
    ``default`` (always the first action offered: a title's first artwork; for titles, the first
    candidate left in the order the request or the catalog gave), ``model`` (a stored model version of
    the policy, newest if ``version`` is None), ``vw`` (a new VW workspace with ``vw_args``, trained
    on the rounds in time order with progressive validation: each event's rounds are decided before
    they are learned). Both explore by ``exploration``: epsilon-greedy with ``epsilon`` (decaying
    after ``epsilon_decay_after`` examples down to ``epsilon_floor`` as a policy's does; 0: a fixed
    rate), or SquareCB with ``gamma_scale`` and ``gamma_exponent``, at the examples the model has
    learned (for ``vw``, the rounds learned so far).
    """

    name: str
    kind: str
    epsilon: float = 0.0
    version: int | None = None
    vw_args: tuple[str, ...] = ()
    exploration: str = EPSILON_GREEDY
    gamma_scale: float = 10.0
    gamma_exponent: float = 0.5
    epsilon_decay_after: float = 0.0
    epsilon_floor: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the candidate as JSON-ready data (what ``parse_candidate`` reads back)."""
        data: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind in ("model", "vw"):
            data["exploration"] = self.exploration
            if self.exploration == SQUARECB:
                data["gamma_scale"], data["gamma_exponent"] = self.gamma_scale, self.gamma_exponent
            else:
                data["epsilon"] = self.epsilon
                if self.epsilon_decay_after:
                    data["epsilon_decay_after"], data["epsilon_floor"] = self.epsilon_decay_after, self.epsilon_floor
        if self.kind == "model":
            data["version"] = self.version
        if self.kind == "vw":
            data["vw_args"] = list(self.vw_args)
        return data


SHORTHANDS: dict[str, dict[str, Any]] = {
    "logged": {"kind": "logged"},
    "uniform": {"kind": "uniform"},
    "default": {"kind": "default"},
    "greedy": {"kind": "model", "epsilon": 0.0},
}
DEFAULT_CANDIDATES = ("logged", "uniform", "default", "greedy")


def parse_candidate(value: Any, *, where: str = "candidate") -> Candidate:
    """Read a candidate from a shorthand name (``logged``, ``uniform``, ``default``, ``greedy``) or a mapping.

    A mapping has ``kind`` and, by kind, ``version`` (``model``) or ``vw_args`` (``vw``: a list of
    strings or one string), the exploration of either (``exploration``: ``epsilon-greedy`` with
    ``epsilon``, or ``squarecb`` with ``gamma_scale`` and ``gamma_exponent``), and an optional ``name``.
    """
    if isinstance(value, str):
        if value not in SHORTHANDS:
            raise SpecError(
                f"{where}: {value!r} is not a candidate name (names: {', '.join(SHORTHANDS)}); "
                "give other candidates as objects with a kind"
            )
        return parse_candidate({"name": value, **SHORTHANDS[value]}, where=where)
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: must be a candidate name or an object")
    unknown = set(value) - set(CANDIDATE_FIELDS)
    if unknown:
        raise SpecError(f"{where}.{sorted(unknown)[0]}: not a candidate field (fields: {', '.join(CANDIDATE_FIELDS)})")
    kind = value.get("kind")
    if kind not in CANDIDATE_KINDS:
        raise SpecError(f"{where}.kind: must be one of {', '.join(CANDIDATE_KINDS)}, got {kind!r}")
    epsilon = value.get("epsilon", 0.0)
    if not RANGES["epsilon"].holds(epsilon):
        raise SpecError(f"{where}.epsilon: must be {RANGES['epsilon'].says()}")
    exploration = value.get("exploration", EPSILON_GREEDY)
    if exploration not in RULES:
        raise SpecError(f"{where}.exploration: must be one of {', '.join(RULES)}, got {exploration!r}")
    if "exploration" in value and kind not in ("model", "vw"):
        raise SpecError(f"{where}.exploration: only for candidates of kind model or vw")
    gammas: dict[str, float] = {}
    for key, default in (("gamma_scale", 10.0), ("gamma_exponent", 0.5)):
        if key not in value:
            gammas[key] = default
            continue
        if exploration != SQUARECB:
            raise SpecError(f"{where}.{key}: only with exploration squarecb")
        number = value[key]
        if not RANGES[key].holds(number):
            raise SpecError(f"{where}.{key}: must be {RANGES[key].says()}")
        gammas[key] = float(number)
    if exploration == SQUARECB and "epsilon" in value:
        raise SpecError(f"{where}.epsilon: only with exploration epsilon-greedy (SquareCB is set by gamma_scale)")
    decay: dict[str, float] = {}
    for key in ("epsilon_decay_after", "epsilon_floor"):
        if key not in value:
            continue
        if kind not in ("model", "vw") or exploration == SQUARECB:
            raise SpecError(f"{where}.{key}: only for epsilon-greedy candidates of kind model or vw")
        number = value[key]
        if not RANGES[key].holds(number):
            raise SpecError(f"{where}.{key}: must be a number in {RANGES[key].bounds()}")
        decay[key] = float(number)
    version = value.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise SpecError(f"{where}.version: must be a model version number (0 or more)")
    vw_args: tuple[str, ...] = ()
    if kind == "vw":
        if value.get("vw_args") is None:
            raise SpecError(f"{where}.vw_args: a vw candidate needs VW options")
        try:
            vw_args = tuple(parse_vw_args(value["vw_args"]))
        except PolicyError as exc:
            raise SpecError(f"{where}.{exc}") from None
    elif "vw_args" in value:
        raise SpecError(f"{where}.vw_args: only for candidates of kind vw")
    if "version" in value and kind != "model":
        raise SpecError(f"{where}.version: only for candidates of kind model")
    name = value.get("name")
    if name is None:
        name = {"model": f"model v{version}" if version is not None else "model", "vw": "vw " + " ".join(vw_args)}.get(
            str(kind), str(kind)
        )
        if kind in ("model", "vw") and exploration == SQUARECB:
            name += " squarecb"
        elif kind in ("model", "vw") and epsilon:
            name += f" eps={float(epsilon):g}"
            if decay.get("epsilon_decay_after"):
                name += f" decaying after {decay['epsilon_decay_after']:g}"
    if not isinstance(name, str) or not 0 < len(name) <= 100:
        raise SpecError(f"{where}.name: must be text of 1 to 100 characters")
    return Candidate(
        name=name,
        kind=str(kind),
        epsilon=float(epsilon),
        version=version,
        vw_args=vw_args,
        exploration=str(exploration),
        **gammas,
        **decay,
    )


def candidate_exploration(candidate: Candidate, examples_learned: int) -> Exploration:
    """Return how a ``model`` or ``vw`` candidate explores with a model that learned ``examples_learned``."""
    if candidate.exploration == SQUARECB:
        return Exploration.squarecb(
            gamma_scale=candidate.gamma_scale,
            gamma_exponent=candidate.gamma_exponent,
            examples_learned=examples_learned,
        )
    return Exploration.decaying(
        epsilon=candidate.epsilon,
        decay_after=candidate.epsilon_decay_after,
        floor=candidate.epsilon_floor,
        examples_learned=examples_learned,
    )


def _model_pmf(
    rounds: Rounds,
    workspace: vw.Workspace,
    candidate: Candidate,
    *,
    learned: int,
    learn: bool,
    progress: Progress,
    stage: str,
) -> np.ndarray:
    """Return the candidate's exploring distribution over every round's actions, flat.

    ``learned`` is how many examples the workspace has learned before the first round. With
    ``learn``, the workspace learns each event's labelled rounds after deciding them (progressive
    validation: no round is decided by a model that saw it).
    """
    examples = TextExamples(workspace)
    pmf = np.empty(int(rounds.offsets[-1]))
    done = 0
    explorer = candidate_exploration(candidate, learned)
    for event in rounds.events():
        if learn and (candidate.exploration == SQUARECB or candidate.epsilon_decay_after):
            explorer = candidate_exploration(candidate, learned + done)
        for i in event:
            start, stop = rounds.offsets[i], rounds.offsets[i + 1]
            pmf[start:stop] = explorer.pmf(_action_costs(examples, rounds, i).tolist())
        if learn:
            for i in event:
                examples.learn(rounds.example(i, labeled=True))
        done += len(event)
        if done % 1000 < len(event):
            progress(done / max(1, len(rounds)), stage)
    return pmf


def target_distribution(
    rounds: Rounds,
    candidate: Candidate,
    *,
    model_blob: bytes | None = None,
    model_examples: int = 0,
    trained: dict[str, bytes] | None = None,
    progress: Progress = _quiet,
) -> np.ndarray | None:
    """Return the candidate's probability of every action of every round, flat; None for ``logged``.

    ``model_blob`` is the stored model of a ``model`` candidate, ``model_examples`` the examples it
    has learned (SquareCB's exploration depends on them). A ``vw`` candidate's model, once it
    has learned every round, is put in ``trained`` under the candidate's name if given.
    """
    sizes = rounds.sizes
    if candidate.kind == "logged":
        return None
    if candidate.kind == "uniform":
        return np.repeat(1.0 / sizes, sizes)
    if candidate.kind == "default":
        pmf = np.zeros(int(rounds.offsets[-1]))
        pmf[rounds.offsets[:-1]] = 1.0
        return pmf
    if candidate.kind == "model":
        if model_blob is None:
            raise ValueError("a model candidate needs the model's bytes")
        workspace = new_workspace([], model_data=model_blob)
        return _model_pmf(
            rounds,
            workspace,
            candidate,
            learned=model_examples,
            learn=False,
            progress=progress,
            stage=f"candidate {candidate.name}",
        )
    workspace = new_workspace(list(candidate.vw_args))
    pmf = _model_pmf(
        rounds, workspace, candidate, learned=0, learn=True, progress=progress, stage=f"candidate {candidate.name}"
    )
    if trained is not None:
        trained[candidate.name] = workspace.serialize()
    return pmf


# ---------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Scores:
    """Per-round inputs of the estimators for one candidate."""

    target_prob: np.ndarray  # (n,)
    q_target: np.ndarray  # (n,)


def candidate_scores(rounds: Rounds, model: RewardModel, pmf: np.ndarray | None) -> Scores:
    """Return the candidate's probability of each logged action and its expected reward under the model.

    For the logging policy itself (``pmf`` None) the probability is the logged one and the expected
    reward is the model's prediction for the logged action: one draw from the logging policy, so its
    mean is an unbiased estimate of the model's expectation under that policy.
    """
    logged = rounds.logged_flat
    if pmf is None:
        return Scores(target_prob=rounds.pscore.copy(), q_target=model.q[logged])
    products = pmf * model.q
    q_target = np.add.reduceat(products, rounds.offsets[:-1]) if len(rounds) else np.zeros(0)
    return Scores(target_prob=pmf[logged], q_target=q_target)


def estimates(rounds: Rounds, model: RewardModel, scores: Scores, mask: np.ndarray | None = None) -> dict[str, Any]:
    """Return IPS, SNIPS, DM and DR with 95% intervals over the rounds in ``mask`` (all by default).

    IPS, SNIPS and DR take the empirical likelihood interval (``INTERVAL``), which allows for heavily
    weighted decisions that happened not to be rewarded; DM the normal one.
    """
    select = slice(None) if mask is None else mask
    reward, pscore = rounds.reward[select], rounds.pscore[select]
    target, q_target = scores.target_prob[select], scores.q_target[select]
    q_logged = model.q[rounds.logged_flat][select]
    result: dict[str, Any] = {
        "ips": estimators.ips(reward=reward, pscore=pscore, target_prob=target, interval=INTERVAL).as_dict(),
        "dm": estimators.dm(q_target=q_target).as_dict(),
        "dr": estimators.dr(
            reward=reward, pscore=pscore, target_prob=target, q_logged=q_logged, q_target=q_target, interval=INTERVAL
        ).as_dict(),
    }
    try:
        result["snips"] = estimators.snips(
            reward=reward, pscore=pscore, target_prob=target, interval=INTERVAL
        ).as_dict()
    except ValueError as exc:  # the candidate gives no logged action any probability
        result["snips"] = {"estimator": "snips", "value": None, "undefined": str(exc)}
    return {name: result[name] for name in ESTIMATORS}


LARGE_WEIGHT = 10.0  # an importance weight above this makes a round one of the tail
MIN_TAIL_REWARDS = 5  # rewarded tail rounds below which an estimate rests on too few
MIN_TAIL_SHARE = 0.05  # the share of the total weight the tail must carry to matter


def weight_tail(rounds: Rounds, scores: Scores, *, default_reward: float = 0.0) -> dict[str, Any]:
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


def dr_terms(rounds: Rounds, model: RewardModel, scores: Scores) -> np.ndarray:
    """Return the per-round terms whose mean is the DR estimate."""
    logged = rounds.logged_flat
    return scores.q_target + scores.target_prob / rounds.pscore * (rounds.reward - model.q[logged])


def lift(candidate_terms: np.ndarray, logged_terms: np.ndarray, *, level: float = 0.95) -> dict[str, float]:
    """Return the mean difference of paired per-round terms with its normal confidence interval."""
    difference = candidate_terms - logged_terms
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


def time_buckets(rounds: Rounds, buckets: int = TIME_BUCKETS) -> list[np.ndarray]:
    """Split the rounds into up to ``buckets`` contiguous runs of events, as boolean masks."""
    count = min(buckets, rounds.n_events)
    bucket_of = rounds.event_index * count // max(1, rounds.n_events)
    return [bucket_of == b for b in range(count)]


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
    rounds: Rounds,
    model: RewardModel,
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
        found["out_of_sample"] = {"dr": _interval(estimates(rounds, model, scores, later)["dr"])}
    return found


def model_blob(db: Database, policy: str, version: int | None) -> tuple[int, bytes, int]:
    """Return (version, bytes, examples learned) of a stored model of ``policy``: ``version``, or the newest if None."""
    if version is None:
        row = db.execute(
            "SELECT version, blob, examples_learned FROM models WHERE policy = ? ORDER BY version DESC LIMIT 1",
            [policy],
        ).fetchone()
    else:
        row = db.execute(
            "SELECT version, blob, examples_learned FROM models WHERE policy = ? AND version = ?", [policy, version]
        ).fetchone()
    if row is None:
        kept = db.execute("SELECT MIN(version), MAX(version) FROM models WHERE policy = ?", [policy]).fetchone()
        raise SpecError(
            f"version: model version {version} of {policy} is not stored (versions kept: {kept[0]} to {kept[1]})"
        )
    return int(row[0]), bytes(row[1]), int(row[2])


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
    settings = load_policy(db, config, policy)
    return from_log(
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
    from dataclasses import replace

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


def evaluate(
    db: Database,
    config: Deployment,
    spec: EvaluationSpec,
    *,
    progress: Progress = _quiet,
    trained: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """Run an evaluation: rounds from the log or a dataset, reward model, every candidate; return the report.

    ``trained``, if given, receives each ``vw`` candidate's model after it learned every round.

    Raises:
        SpecError: the request cannot be evaluated (too few rounds, a model version not kept, ...).
    """
    spec = resolve(db, spec)
    settings = load_policy(db, config, spec.policy) if spec.policy is not None else None
    vw_args = settings.vw_args if settings is not None else datasets.FOREIGN_VW_ARGS
    work = [1.0, 2.0 * spec.folds] + [2.0 if c.kind in ("model", "vw") else 0.1 for c in spec.candidates]
    stages = _Stages(progress, work)
    stages.stage(0)(0.0, "reading the log")
    source: dict[str, Any]
    reward_rule: dict[str, Any] | None = None
    if spec.dataset is not None:
        rounds = datasets.load(db, spec.dataset, since=spec.since, until=spec.until, limit=spec.limit)
        source = {"dataset": datasets.get(db, spec.dataset)}
        what = f"dataset {spec.dataset}"
    else:
        assert settings is not None and spec.policy is not None
        rounds = from_log(
            db,
            policy=spec.policy,
            aggregation=settings.aggregation,
            default_reward=settings.default_reward,
            since=spec.since,
            until=spec.until,
            limit=spec.limit,
            reward_values=settings.reward_values,
        )
        source = {"log": spec.policy}
        reward_rule = {
            "aggregation": settings.aggregation,
            "default_reward": settings.default_reward,
            "reward_values": settings.reward_values,
        }
        what = spec.policy
    if len(rounds) < 2 or rounds.n_events < spec.folds:
        raise SpecError(
            f"since: the range holds {len(rounds)} closed decisions of {what} in "
            f"{rounds.n_events} events; at least 2 decisions in {spec.folds} events (one per fold) are needed"
        )
    blobs = {
        index: model_blob(db, str(spec.policy), candidate.version)
        for index, candidate in enumerate(spec.candidates)
        if candidate.kind == "model"
    }
    stages.stage(0)(1.0, "reading the log")
    model = fit_reward_model(rounds, vw_args=vw_args, folds=spec.folds, progress=stages.stage(1))
    segments = segment_values(rounds, spec.segment_by) if spec.segment_by else None
    if segments is not None and all(value == "(missing)" for value in segments):
        present = sorted({name for context in rounds.contexts for name in context})
        raise SpecError(
            f"segment_by: no decision in the range has the viewer feature {spec.segment_by!r}; "
            f"the features there are {', '.join(present) or 'none'}"
        )
    segment_counts: list[tuple[str, int]] = []
    if segments is not None:
        values, counts = np.unique(np.asarray(segments, dtype=object), return_counts=True)
        segment_counts = sorted(zip(values.tolist(), counts.tolist()), key=lambda item: (-item[1], item[0]))
    segment_array = np.asarray(segments, dtype=object) if segments is not None else None
    buckets = time_buckets(rounds)
    results = []
    for index, candidate in enumerate(spec.candidates):
        report = stages.stage(2 + index)
        report(0.0, f"candidate {candidate.name}")
        blob = blobs.get(index)
        pmf = target_distribution(
            rounds,
            candidate,
            model_blob=blob[1] if blob else None,
            model_examples=blob[2] if blob else 0,
            trained=trained,
            progress=report,
        )
        scores = candidate_scores(rounds, model, pmf)
        terms = dr_terms(rounds, model, scores)
        entry: dict[str, Any] = {
            "name": candidate.name,
            "candidate": candidate.as_dict(),
            "estimates": estimates(rounds, model, scores),
            "lift_over_logged": lift(terms, rounds.reward),
            "weight_tail": weight_tail(
                rounds, scores, default_reward=float(reward_rule["default_reward"]) if reward_rule else 0.0
            ),
        }
        if blob is not None:
            entry["candidate"]["version"] = blob[0]
        entry.update(
            sampling(db, rounds, model, scores, candidate, version=blob[0] if blob else None, policy=spec.policy)
        )
        if segment_array is not None:
            entry["segments"] = []
            for value, count in segment_counts[:MAX_SEGMENTS]:
                row: dict[str, Any] = {"segment": value, "rounds": count}
                if count >= MIN_SEGMENT_ROUNDS:
                    mask = segment_array == value
                    found = estimates(rounds, model, scores, mask)
                    row["dr"] = _interval(found["dr"])
                    row["ips"] = _interval(found["ips"])
                    row["lift_over_logged"] = lift(terms[mask], rounds.reward[mask])
                entry["segments"].append(row)
        entry["over_time"] = []
        for mask in buckets:
            count = int(mask.sum())
            point: dict[str, Any] = {
                "from": float(rounds.created_at[mask].min()),
                "until": float(rounds.created_at[mask].max()),
                "rounds": count,
            }
            if count >= 2:
                point["dr"] = _interval(estimates(rounds, model, scores, mask)["dr"])
            entry["over_time"].append(point)
        results.append(entry)
        report(1.0, f"candidate {candidate.name}")
    return {
        "policy": spec.policy,
        "source": source,
        "spec": spec.as_dict(),
        "rounds": len(rounds),
        "events": rounds.n_events,
        "first_decision_at": float(rounds.created_at.min()),
        "last_decision_at": float(rounds.created_at.max()),
        "mean_reward": float(rounds.reward.mean()),
        "explored_rounds": int((rounds.pscore < 1.0 - 1e-9).sum()),  # decisions that had another possible action
        "reward_rule": reward_rule,
        "policy_settings": settings.as_dict() if settings is not None else None,
        "reward_model": {
            **model.summary(),
            "rounds": len(rounds),
            "guidance": reward_model_guidance(model.summary()["r_squared"]),
        },
        "segment_by": spec.segment_by,
        "segments": [{"segment": value, "rounds": count} for value, count in segment_counts],
        "candidates": results,
    }
