"""Do the 95 % intervals of IPS, SNIPS and DR hold the true value? Coverage, width and error on simulated logs.

Usage (from the repository root):

    python -m bench.interval_bench [--repetitions 200] [--rounds 4000] [--seed 1]

The world is the simulator's ``artwork`` shape (``bandits.simulator``) over the demo catalog: 8
titles with 6 posters each, whose looks are measured as uploads measure them. A round is one
artwork decision as the service logs it: a viewer drawn uniformly, one of the 8 titles drawn
uniformly, in a slot drawn uniformly from a row of 6; the reward is a play, drawn with the world's
probability ``mu_i(a)`` (click times play, ``POSITION_DECAY ** slot`` for the slot, which no
policy and no reward model sees). The VW lines are the service's (``bandits.vw.features``), so the
progressively trained candidate, the logging learner and the reward model read what they would read
in production.

Logged policies (one fresh log of ``--rounds`` rounds per repetition): uniform; epsilon-greedy
0.1 and 0.2 around a fixed scoring, each title's A/B winner (its artwork with the highest expected
reward over the whole audience); and Marquee's own learner (the artwork policy's default VW options,
epsilon-greedy at the deployment defaults: 0.1, decaying after ``MARQUEE_EPSILON_DECAY_AFTER``
learned examples to a floor of 0.01, its model updated every ``PUBLISH_EVERY`` rounds). Every
logged probability is exact. ``--logged`` draws only the named policies' logs (the same logs they
get in a full run).

Target policies: ``greedy``, each viewer's best artwork by the world (personalized, where the A/B
winner is not); ``greedy eps=0.05``, the same with 5 % uniform draws; ``uniform``; and a ``vw``
candidate (the artwork policy's default options, epsilon 0.05) trained on the log with progressive
validation by ``bandits.evaluate.offline.target_distribution``, each round decided before it is learned.

The true value of a target policy on a log is ``mean_i sum_a pi_i(a) * mu_i(a)`` over the log's
rounds ``i``, where ``pi_i`` is the policy's distribution at round ``i`` (for the ``vw`` candidate
what ``target_distribution`` returns, which depends on the rounds before ``i``) and ``mu_i(a)`` the
world's expected reward of action ``a`` in round ``i``'s context (viewer, title and slot). For the
fixed policies this is the same formula: their value on the contexts that were drawn.

Estimates come from ``bandits.evaluate.offline.estimates``, as the service's evaluation report
computes them (95 % empirical likelihood intervals for IPS, SNIPS and DR: ``bandits.evaluate.estimators``),
with one reward model per DR row:

* ``policy features``: ``bandits.evaluate.offline.fit_reward_model`` on the logged lines with the artwork
  policy's VW options, cross-fitted over 2 time-ordered folds: what the service does;
* ``segment x artwork``: the same fit on lines that carry exactly what the reward depends on
  (the viewer's hidden segment crossed with the artwork id): a well-specified model;
* ``ids only``: the same fit on lines with the title and artwork ids and no viewer feature: a
  model whose features miss the signal (viewers' tastes);
* ``true rewards``: ``mu_i(a)`` itself, a reference no fitted model can beat.

R^2 is ``RewardModel.summary()["r_squared"]``: one minus the mean squared error of the model on the
logged rewards over that of the other fold's mean reward (computed the same way for the true
rewards). Beside them, the rows marked ``normal`` are the same estimates with the normal interval (the
report's before 2026-12-06), on the same logs with the service's reward model. For each (logged,
target, estimator) the bench reports coverage with its Wilson 95 %
interval, mean interval width, mean error (bias, with its standard error), RMSE and the mean R^2;
then, per reward model, how DR's coverage, width and error compare with IPS's. Results print as
Markdown tables and are saved under bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Protocol

import numpy as np
import vowpal_wabbit_next

from assets.demo import demo_titles
from assets.images import check_image, visual_tokens
from bandits.evaluate import estimators, offline
from bandits.log.rounds import RoundBuilder
from bandits.model.exploration import Exploration
from bandits.model.policy import ARTWORK, DEFAULT_VW_ARGS, new_workspace
from bandits.simulator import POSITION_DECAY, World
from bandits.vw import features
from bandits.vw.workspace import TextExamples
from bench.report import machine, report
from service.config import SETTINGS

LEVEL = 0.95  # the level of the estimators' intervals (bandits.evaluate.offline.estimates)
TARGET_COVERAGE = 0.90  # the least coverage the project accepts of a 95 % interval
CATALOG_SEED = 7  # the demo catalog's (assets.demo)
SLOTS = 6  # a round's slot is drawn from a row of this many
PUBLISH_EVERY = 100  # rounds between two model updates of the logging learner
ARTWORK_ARGS = DEFAULT_VW_ARGS[ARTWORK]
FITTED_MODELS = {  # name -> (lines the model reads, VW options)
    "policy features": ("service", ARTWORK_ARGS),
    "segment x artwork": ("cells", ["-q", "SA"]),
    "ids only": ("ids", []),
}
TRUE_MODEL = "true rewards"
MODELS = (*FITTED_MODELS, TRUE_MODEL)


# ---------------------------------------------------------------- the world


@dataclass(frozen=True)
class Catalog:
    """The demo catalog as the simulator and the VW lines see it."""

    titles: list[dict[str, Any]]  # World.build's catalog: id, genres, artworks (id, visual)
    title_lines: list[str]  # (titles,) the title's action line: the artwork decision's shared context
    artwork_lines: dict[str, list[str]]  # title id -> its artworks' action lines, in order

    @property
    def ids(self) -> list[str]:
        return [title["id"] for title in self.titles]


def demo_catalog(*, titles: int, artworks: int) -> Catalog:
    """Render the demo posters and measure their looks as an upload does; return the catalog."""
    found: list[dict[str, Any]] = []
    title_lines: list[str] = []
    artwork_lines: dict[str, list[str]] = {}
    for body, posters in demo_titles(seed=CATALOG_SEED, count=titles, artworks_per_title=artworks):
        looks = [(artwork_id, tags, check_image(data).visual) for artwork_id, tags, data in posters]
        found.append(
            {
                "id": body["id"],
                "genres": body["genres"],
                "artworks": [{"id": artwork_id, "visual": visual} for artwork_id, _, visual in looks],
            }
        )
        title_lines.append(features.title_action(body))
        artwork_lines[body["id"]] = [
            features.artwork_action(artwork_id=artwork_id, tags=tags, visual_tokens=visual_tokens(visual))
            for artwork_id, tags, visual in looks
        ]
    return Catalog(titles=found, title_lines=title_lines, artwork_lines=artwork_lines)


@dataclass
class Audience:
    """A world and its expected rewards for every (viewer, title, artwork), with the lines of each context."""

    world: World
    catalog: Catalog
    mu: np.ndarray  # (viewers, titles, artworks) expected plays in slot 0
    ab_winner: np.ndarray  # (titles,) the artwork with the highest mean of ``mu`` over the audience
    _shared: dict[tuple[int, int], str] = field(default_factory=dict)

    @classmethod
    def build(cls, catalog: Catalog, *, seed: int) -> Audience:
        world = World.build(catalog.titles, seed=seed, shape="artwork")
        mu = np.array(
            [
                [
                    [
                        world.expected_reward(viewer, title["id"], artwork["id"], reward="play")
                        for artwork in title["artworks"]
                    ]
                    for title in catalog.titles
                ]
                for viewer in world.viewers
            ]
        )
        return cls(world=world, catalog=catalog, mu=mu, ab_winner=mu.mean(axis=0).argmax(axis=1))

    def shared(self, viewer: int, title: int) -> str:
        """Return the shared line of an artwork decision (the viewer's request, then the title), as the service does."""
        key = (viewer, title)
        if key not in self._shared:
            person = self.world.viewers[viewer]
            self._shared[key] = features.artwork_shared(
                features.viewer_shared(user_id=person.id, features=person.features), self.catalog.title_lines[title]
            )
        return self._shared[key]


# ---------------------------------------------------------------- logging policies


class LoggingPolicy(Protocol):
    """A policy that logs decisions: its distribution for a round, and what it learns from the round."""

    def pmf(self, *, title: int, lines: Sequence[str]) -> np.ndarray: ...

    def learn(self, lines: Sequence[str]) -> None: ...


@dataclass
class AroundWinner:
    """Epsilon-greedy around each title's A/B winner (epsilon 1: uniform); learns nothing."""

    epsilon: float
    winner: np.ndarray  # (titles,)
    actions: int

    def pmf(self, *, title: int, lines: Sequence[str]) -> np.ndarray:
        pmf = np.full(self.actions, self.epsilon / self.actions)
        pmf[int(self.winner[title])] += 1.0 - self.epsilon
        return pmf

    def learn(self, lines: Sequence[str]) -> None:
        return None


class Learner:
    """Marquee's artwork policy: a ``--cb_adf`` model, decaying epsilon-greedy, updated every ``PUBLISH_EVERY``."""

    def __init__(self) -> None:
        self.examples = TextExamples(new_workspace(ARTWORK_ARGS))
        self.learned = 0
        self.waiting: list[Sequence[str]] = []

    def pmf(self, *, title: int, lines: Sequence[str]) -> np.ndarray:
        costs = np.empty(len(lines) - 1)
        for index, cost in self.examples.predict(lines):
            costs[index] = cost
        explorer = Exploration.decaying(
            epsilon=float(SETTINGS["EPSILON"][0]),
            decay_after=float(SETTINGS["EPSILON_DECAY_AFTER"][0]),
            floor=float(SETTINGS["EPSILON_FLOOR"][0]),
            examples_learned=self.learned,
        )
        return explorer.pmf(costs)

    def learn(self, lines: Sequence[str]) -> None:
        self.waiting.append(lines)
        if len(self.waiting) >= PUBLISH_EVERY:
            for example in self.waiting:
                self.examples.learn(example)
            self.learned += len(self.waiting)
            self.waiting = []


LOGGING = ("uniform", "eps-greedy 0.1 (A/B winner)", "eps-greedy 0.2 (A/B winner)", "Marquee learner")


def logging_policy(name: str, audience: Audience) -> LoggingPolicy:
    """Return a fresh logging policy of ``LOGGING``."""
    actions = audience.mu.shape[2]
    if name == "Marquee learner":
        return Learner()
    epsilon = {"uniform": 1.0, "eps-greedy 0.1 (A/B winner)": 0.1, "eps-greedy 0.2 (A/B winner)": 0.2}[name]
    return AroundWinner(epsilon=epsilon, winner=audience.ab_winner, actions=actions)


# ---------------------------------------------------------------- a log and its reward models


@dataclass
class Log:
    """One simulated log: the rounds as the service would read them, and what the world knows of them."""

    rounds: offline.Rounds
    mu: np.ndarray  # (total actions,) the expected reward of every action of every round, flat
    viewer: np.ndarray  # (n,)
    title: np.ndarray  # (n,)
    segment: list[str]  # (n,) the viewer's segment, which no request names


def draw_log(audience: Audience, policy: LoggingPolicy, *, rounds: int, rng: np.random.Generator) -> Log:
    """Log ``rounds`` decisions of ``policy``, each its own event, oldest first."""
    catalog, world = audience.catalog, audience.world
    viewers = rng.integers(len(world.viewers), size=rounds)
    titles = rng.integers(len(catalog.titles), size=rounds)
    slots = rng.integers(SLOTS, size=rounds)
    draws = rng.random((rounds, 2))
    mu = audience.mu[viewers, titles] * (POSITION_DECAY**slots)[:, None]  # (n, artworks)
    builder = RoundBuilder(ARTWORK, catalog.artwork_lines)
    actions = list(range(audience.mu.shape[2]))
    for i in range(rounds):
        v, t = int(viewers[i]), int(titles[i])
        title_id = catalog.ids[t]
        shared = audience.shared(v, t)
        lines = [shared, *catalog.artwork_lines[title_id]]
        pmf = policy.pmf(title=t, lines=lines)
        chosen = min(int(np.searchsorted(np.cumsum(pmf), draws[i, 0] * pmf.sum(), side="right")), len(pmf) - 1)
        reward = float(draws[i, 1] < mu[i, chosen])
        lines[1 + chosen] = features.labeled(
            lines[1 + chosen], cost=features.cost_of(reward), probability=float(pmf[chosen])
        )
        policy.learn(lines)
        builder.add(
            event_id=f"e{i}",
            event_index=i,
            position=int(slots[i]),
            created_at=float(i),
            context=world.viewers[v].features,
            shared=shared,
            block=title_id,
            action_index=actions,
            chosen=chosen,
            pscore=float(pmf[chosen]),
            reward=reward,
            action_ids=[artwork["id"] for artwork in catalog.titles[t]["artworks"]],
        )
    return Log(
        rounds=builder.build(),
        mu=mu.ravel(),
        viewer=viewers,
        title=titles,
        segment=[world.viewers[int(v)].segment for v in viewers],
    )


def relined(log: Log, lines: str, catalog: Catalog) -> offline.Rounds:
    """Return the log's rounds with other lines: the service's, the segment and ids (``cells``), or ids (``ids``)."""
    rounds = log.rounds
    if lines == "service":
        return rounds
    artwork_ids = {
        title["id"]: [
            features.namespace("A", [f"id={features.escape(artwork['id'])}"]) for artwork in title["artworks"]
        ]
        for title in catalog.titles
    }
    title_ns = [features.namespace("T", [f"id={features.escape(title_id)}"]) for title_id in catalog.ids]
    if lines == "cells":
        shared = [
            f"shared {features.namespace('S', [f'segment={features.escape(segment)}'])} {title_ns[int(t)]}"
            for segment, t in zip(log.segment, log.title)
        ]
    else:
        shared = [f"shared {title_ns[int(t)]}" for t in log.title]
    return dataclasses.replace(rounds, shared=shared, lines_of=artwork_ids)


def reward_models(log: Log, catalog: Catalog) -> dict[str, offline.RewardModel]:
    """Fit the reward models of ``FITTED_MODELS`` on the log; add the true expected rewards as a model."""
    models = {
        name: offline.fit_reward_model(relined(log, lines, catalog), vw_args=args)
        for name, (lines, args) in FITTED_MODELS.items()
    }
    rounds, fitted = log.rounds, models["policy features"]
    logged = log.mu[rounds.logged_flat]
    models[TRUE_MODEL] = offline.RewardModel(
        q=log.mu.copy(),
        q_logged=logged,
        vw_args=[],
        folds=fitted.folds,
        passes=0,
        mse=float(np.mean((logged - rounds.reward) ** 2)),
        baseline_mse=fitted.baseline_mse,
    )
    return models


# ---------------------------------------------------------------- target policies


TARGETS = ("greedy", "greedy eps=0.05", "uniform", "vw eps=0.05")
VW_CANDIDATE = offline.parse_candidate({"name": "vw eps=0.05", "kind": "vw", "vw_args": ARTWORK_ARGS, "epsilon": 0.05})


def target_pmf(name: str, log: Log, audience: Audience) -> np.ndarray:
    """Return the target policy's probability of every action of every round, flat."""
    rounds = log.rounds
    if name == "uniform":
        pmf = offline.target_distribution(rounds, offline.parse_candidate("uniform"))
    elif name == "vw eps=0.05":
        pmf = offline.target_distribution(rounds, VW_CANDIDATE)
    else:
        epsilon = 0.05 if name == "greedy eps=0.05" else 0.0
        actions = audience.mu.shape[2]
        best = audience.mu[log.viewer, log.title].argmax(axis=1)
        table = np.full((len(rounds), actions), epsilon / actions)
        table[np.arange(len(rounds)), best] += 1.0 - epsilon
        pmf = table.ravel()
    assert pmf is not None
    return pmf


def true_value(log: Log, pmf: np.ndarray) -> float:
    """Return ``mean_i sum_a pi_i(a) * mu_i(a)`` over the log's rounds."""
    return float(np.add.reduceat(pmf * log.mu, log.rounds.offsets[:-1]).mean())


# ---------------------------------------------------------------- measuring


@dataclass
class Tally:
    """The estimates of one (logged policy, target policy, estimator) over the repetitions."""

    values: list[float] = field(default_factory=list)
    lows: list[float] = field(default_factory=list)
    highs: list[float] = field(default_factory=list)
    truths: list[float] = field(default_factory=list)
    r_squared: list[float] = field(default_factory=list)
    ess: list[float] = field(default_factory=list)

    def add(self, estimate: dict[str, Any], truth: float, r_squared: float | None) -> None:
        self.values.append(float(estimate["value"]))
        self.lows.append(float(estimate["ci_low"]))
        self.highs.append(float(estimate["ci_high"]))
        self.truths.append(truth)
        self.ess.append(float(estimate["effective_sample_size"]))
        if r_squared is not None:
            self.r_squared.append(r_squared)

    def summary(self) -> dict[str, Any]:
        values, low, high, truth = (np.array(x) for x in (self.values, self.lows, self.highs, self.truths))
        errors = values - truth
        covered = int(np.sum((low <= truth) & (truth <= high)))
        wilson = wilson_interval(covered, errors.size)
        return {
            "repetitions": int(errors.size),
            "coverage": covered / errors.size,
            "coverage_low": wilson[0],
            "coverage_high": wilson[1],
            "mean_width": float(np.mean(high - low)),
            "bias": float(errors.mean()),
            "bias_se": float(errors.std(ddof=1) / math.sqrt(errors.size)),
            "rmse": float(np.sqrt(np.mean(errors**2))),
            "sd": float(values.std(ddof=1)),
            "true_value": float(truth.mean()),
            "mean_effective_sample_size": float(np.mean(self.ess)),
            "r_squared": float(np.mean(self.r_squared)) if self.r_squared else None,
        }


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Return Wilson's score interval for a binomial proportion."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


NORMAL = ("ips (normal)", "snips (normal)", "dr (policy features, normal)")  # the normal interval, for comparison


def estimator_names() -> list[str]:
    return ["ips", "snips", *(f"dr ({model})" for model in MODELS), *NORMAL]


def normal_estimates(log: Log, model: offline.RewardModel, scores: offline.Scores) -> dict[str, dict[str, Any]]:
    """IPS, SNIPS and DR on the log with the normal interval instead of the report's."""
    rounds = log.rounds
    reward, pscore, target = rounds.reward, rounds.pscore, scores.target_prob
    return {
        NORMAL[0]: estimators.ips(reward=reward, pscore=pscore, target_prob=target).as_dict(),
        NORMAL[1]: estimators.snips(reward=reward, pscore=pscore, target_prob=target).as_dict(),
        NORMAL[2]: estimators.dr(
            reward=reward,
            pscore=pscore,
            target_prob=target,
            q_logged=scores.q_logged,
            q_target=scores.q_target,
        ).as_dict(),
    }


def run(
    audience: Audience, *, repetitions: int, rounds: int, seed: int, logging: Sequence[str] = LOGGING
) -> tuple[dict[tuple[str, str, str], Tally], dict[str, float]]:
    """Estimate every target on ``repetitions`` fresh logs of each of the ``logging`` policies (a policy's logs
    are the same whichever others run beside it); return the tallies and seconds."""
    tallies = {
        (logged, target, name): Tally() for logged in logging for target in TARGETS for name in estimator_names()
    }
    seconds: dict[str, float] = {}
    for number, logged in enumerate(LOGGING):
        if logged not in logging:
            continue
        started = time.perf_counter()
        for repetition in range(repetitions):
            rng = np.random.default_rng([seed, number, repetition])
            log = draw_log(audience, logging_policy(logged, audience), rounds=rounds, rng=rng)
            models = reward_models(log, audience.catalog)
            r_squared = {name: model.summary()["r_squared"] for name, model in models.items()}
            for target in TARGETS:
                pmf = target_pmf(target, log, audience)
                truth = true_value(log, pmf)
                for model_name, model in models.items():
                    scores = offline.candidate_scores(log.rounds, model, pmf)
                    found = offline.estimates(log.rounds, scores)
                    if model_name == "policy features":
                        tallies[(logged, target, "ips")].add(found["ips"], truth, None)
                        tallies[(logged, target, "snips")].add(found["snips"], truth, None)
                        for name, estimate in normal_estimates(log, model, scores).items():
                            fit = r_squared[model_name] if name.startswith("dr") else None
                            tallies[(logged, target, name)].add(estimate, truth, fit)
                    tallies[(logged, target, f"dr ({model_name})")].add(found["dr"], truth, r_squared[model_name])
            if (repetition + 1) % 50 == 0:
                print(
                    f"{logged}: {repetition + 1} of {repetitions} logs, {time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
        seconds[logged] = time.perf_counter() - started
    return tallies, seconds


# ---------------------------------------------------------------- reporting


def verdict(row: dict[str, Any]) -> str:
    """``yes`` when the coverage is at least 90 %; ``no`` below, ``NO`` when Wilson's interval is wholly below."""
    if row["coverage"] >= TARGET_COVERAGE:
        return "yes"
    return "NO" if row["coverage_high"] < TARGET_COVERAGE else "no"


def table(rows: list[dict[str, Any]]) -> str:
    """Return the rows as a Markdown table."""
    lines = [
        "| logged policy | target policy | estimator | coverage [Wilson 95 %] | >= 90 % | mean width | "
        "bias (± s.e.) | RMSE | R² of the reward model | true value |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r_squared = "" if row["r_squared"] is None else f"{row['r_squared']:+.3f}"
        lines.append(
            f"| {row['logged']} | {row['target']} | {row['estimator']} | {row['coverage']:.3f} "
            f"[{row['coverage_low']:.3f}, {row['coverage_high']:.3f}] | {verdict(row)} | {row['mean_width']:.4f} | "
            f"{row['bias']:+.4f} (± {row['bias_se']:.4f}) | {row['rmse']:.4f} | {r_squared} | "
            f"{row['true_value']:.4f} |"
        )
    return "\n".join(lines)


def by_model(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summarize DR per reward model over all (logged, target) pairs, against IPS on the same logs."""
    ips = {(row["logged"], row["target"]): row for row in rows if row["estimator"] == "ips"}
    found = []
    for model in MODELS:
        mine = [row for row in rows if row["estimator"] == f"dr ({model})"]
        pairs = [(row, ips[(row["logged"], row["target"])]) for row in mine]
        worst = min(mine, key=lambda row: row["coverage"])
        found.append(
            {
                "reward_model": model,
                "mean_r_squared": float(np.mean([row["r_squared"] for row in mine])),
                "r_squared_by_logged": {
                    logged: float(np.mean([row["r_squared"] for row in mine if row["logged"] == logged]))
                    for logged in dict.fromkeys(row["logged"] for row in mine)
                },
                "mean_coverage": float(np.mean([row["coverage"] for row in mine])),
                "pairs_below_90": sum(row["coverage"] < TARGET_COVERAGE for row in mine),
                "worst": f"{worst['coverage']:.3f} ({worst['logged']} -> {worst['target']})",
                "width_vs_ips": geometric_mean([dr["mean_width"] / base["mean_width"] for dr, base in pairs]),
                "rmse_vs_ips": geometric_mean([dr["rmse"] / base["rmse"] for dr, base in pairs]),
                "largest_bias_in_se": float(max(abs(row["bias"]) / row["bias_se"] for row in mine)),
            }
        )
    return found


def geometric_mean(ratios: Sequence[float]) -> float:
    return float(np.exp(np.mean(np.log(ratios))))


def model_table(summaries: list[dict[str, Any]]) -> str:
    """Return the per-reward-model summary as a Markdown table."""
    logged = ", ".join(summaries[0]["r_squared_by_logged"]) if summaries else ""
    lines = [
        f"| DR's reward model | mean R² | R² by logged policy ({logged}) | "
        "mean coverage | pairs < 90 % | lowest coverage | width / IPS's | RMSE / IPS's | largest bias in s.e. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        by_logged = ", ".join(f"{value:+.3f}" for value in s["r_squared_by_logged"].values())
        lines.append(
            f"| {s['reward_model']} | {s['mean_r_squared']:+.3f} | {by_logged} | {s['mean_coverage']:.3f} | "
            f"{s['pairs_below_90']} of {len(s['r_squared_by_logged']) * len(TARGETS)} | {s['worst']} | "
            f"{s['width_vs_ips']:.2f} | {s['rmse_vs_ips']:.2f} | {s['largest_bias_in_se']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=200, help="logs per logged policy (each target on each)")
    parser.add_argument("--rounds", type=int, default=4000, help="decisions per log")
    parser.add_argument("--seed", type=int, default=1, help="seed of the world and of every log")
    parser.add_argument(
        "--logged", nargs="+", choices=LOGGING, default=list(LOGGING), help="the logging policies to draw logs of"
    )
    args = parser.parse_args()
    if args.repetitions < 2 or args.rounds < 10:
        parser.error("--repetitions must be at least 2 and --rounds at least 10")
    started = time.perf_counter()
    audience = Audience.build(demo_catalog(titles=8, artworks=6), seed=args.seed)
    logging = [name for name in LOGGING if name in args.logged]
    tallies, seconds = run(audience, repetitions=args.repetitions, rounds=args.rounds, seed=args.seed, logging=logging)
    rows = [
        {"logged": logged, "target": target, "estimator": name, **tally.summary()}
        for (logged, target, name), tally in tallies.items()
    ]
    summaries = by_model(rows)
    elapsed = time.perf_counter() - started
    result = {
        "command": f"python -m bench.interval_bench --repetitions {args.repetitions} --rounds {args.rounds} "
        f"--seed {args.seed}"
        + ("" if len(logging) == len(LOGGING) else " --logged " + " ".join(shlex.quote(name) for name in logging)),
        "machine": machine(f"NumPy {np.__version__}", f"vowpal-wabbit-next {vowpal_wabbit_next.__version__}"),
        "date": time.strftime("%Y-%m-%d"),
        "world": (
            f"artwork shape, seed {args.seed}: {len(audience.catalog.titles)} demo titles x "
            f"{audience.mu.shape[2]} posters, {len(audience.world.viewers)} viewers; reward: plays, "
            f"slot drawn from {SLOTS}; uniform logging earns {audience.mu.mean() * _slot_factor():.3f} a round"
        ),
        "repetitions": args.repetitions,
        "rounds": args.rounds,
        "seconds": round(elapsed, 1),
        "seconds_by_logged_policy": {k: round(v, 1) for k, v in seconds.items()},
        "rows": rows,
        "reward_models": summaries,
    }
    with contextlib.redirect_stdout(io.StringIO()):  # report's two-column table: these rows print below instead
        path = report("interval", result)
    print(f"{result['command']}\n{result['machine']}, {result['date']}; {elapsed:.0f} s\n{result['world']}\n")
    print(table(rows))
    print(
        "\nDR per reward model, over all (logged, target) pairs; widths and RMSEs are geometric means of the "
        "ratios to IPS on the same logs:\n"
    )
    print(model_table(summaries))
    print(f"\nSaved to {path}")


def _slot_factor() -> float:
    """The mean of ``POSITION_DECAY ** slot`` over the slots a round is drawn from."""
    return float(np.mean(POSITION_DECAY ** np.arange(SLOTS)))


if __name__ == "__main__":
    main()
