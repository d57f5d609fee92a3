"""Learning quality without the service around it: for fast sweeps of exploration settings.

Usage (from the repository root):

    python -m bench.direct_learning [--world long-tail] [--seeds 1 2 3] [--impressions 100000]
                                    [--title-bonus 2] [--artwork-bonus 2] [--titles-args "..."]
                                    [--artwork-args "..."] [--title-click-value 0] [--artwork-click-value 0]
                                    [--epsilon 0.1] [--decay-after 100] [--floor 0.01]
                                    [--taste-classes 8] [--taste-every 8000] [--taste-min-shown 30]
                                    [--reveal segment tastes]

The row is decided by the service's own ``bandits.decide.row.decide_row`` over the demo catalog the
learning benchmark builds for the world, with the policies' exploration (``Exploration.decaying``
and the bonus), and learned by the learner's own example builders (``bandits.learn.learner``)
every 200 rows, on VW workspaces held in this process: no HTTP, no log, no model versions, so a
100,000-impression run takes about a minute instead of five. What it leaves out (the log, the
reward windows, publishing versions) does not change what is learned: the learner learns the same
examples, in the same batches. Its figures are the share of the oracle's lift over uniform rows
(``service.simulate.baseline_rows``), window by window of 1,000 impressions, as in
``bench.learning_bench``. The viewers, outcomes and exploration draws come from streams seeded by
``--seeds``, so a run repeats exactly and two settings are compared on the same viewers; a seed's
figures differ from that benchmark's (whose service seeds its draws per process) by its run-to-run
spread, so compare two runs of this script with each other. ``mean of the last 5`` averages the
windows from 96k to 100k; ``first at 85%`` gives, for each seed, the impressions at which the mean
of five consecutive windows first reached 85 %. Each play is a reward of 1; ``--title-click-value``
and ``--artwork-click-value`` make a click that no play followed worth that much to a policy, as
``reward_values`` ``{"click": v, "play": 1}`` with ``aggregation`` ``max`` would. ``--reveal`` adds
to every request what no client knows, for measuring what the learner makes of it: the viewer's
``segment``, or their genre ``tastes`` as numbers (``taste_<genre>``, as at the start); the world,
viewers and outcomes stay those of the seed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import vowpal_wabbit_next

from assets.catalog import load_snapshot
from bandits.decide.row import RowDecision, decide_row
from bandits.learn.learner import artwork_decisions, title_decisions
from bandits.log import labels
from bandits.model import tastes
from bandits.model.exploration import Exploration
from bandits.model.policy import ARTWORK, DEFAULT_VW_ARGS, TITLES, new_workspace
from bandits.model.tried import Tried
from bandits.simulator import SHAPES, Viewer, World
from bandits.storage import connect
from bandits.vw.options import learns_chosen_alone
from bandits.vw.workspace import CACHED_ACTION_LINES, TextExamples
from bench.report import machine, report
from service import create_app
from service.config import SETTINGS
from service.simulate import baseline_rows, catalog_from_service, scratch_service

SLOTS = 4
LEARN_EVERY = 200  # rows, as bench.learning_bench learns
CHECKPOINTS = (5_000, 20_000, 50_000, 100_000, 200_000, 300_000, 400_000)


class Curve:
    """A policy's share of the oracle's lift over uniform rows, window by window of 1,000 impressions."""

    def __init__(self, world: World, baselines: np.random.Generator) -> None:
        self.world, self.baselines = world, baselines
        self.window: dict[str, list[float]] = {"policy": [], "oracle": [], "uniform": []}
        self.shares: dict[int, float] = {}

    def add(self, viewer: Viewer, shown: list[tuple[str, str]], *, at: int) -> None:
        """Score a row shown at impression ``at`` against the oracle's and a uniform row for the same viewer."""
        world, window = self.world, self.window
        rows = baseline_rows(world, viewer, shown, at=at, reward="play", rng=self.baselines)
        window["policy"].append(world.row_value(viewer, shown, at=at))
        window["oracle"].append(world.row_value(viewer, rows["oracle"], at=at))
        window["uniform"].append(world.row_value(viewer, rows["uniform"], at=at))
        done = at + len(shown)
        if done % 1000 == 0:
            policy, oracle, uniform = (float(np.mean(window[key])) for key in ("policy", "oracle", "uniform"))
            self.shares[done] = (policy - uniform) / (oracle - uniform)
            self.window = {key: [] for key in window}

    def result(self) -> dict[str, Any]:
        """The shares by impressions done, and the mean of the last five windows."""
        last = [self.shares[key] for key in sorted(self.shares)[-5:]]
        return {"shares": self.shares, "last5": float(np.mean(last))}


def summary(runs: dict[int, dict[str, Any]], impressions: int) -> dict[str, str]:
    """Return the table rows of several seeds' curves: the share at each checkpoint, the mean of the last windows."""
    rows = {}
    for checkpoint in [c for c in CHECKPOINTS if c <= impressions]:
        values = [run["shares"][checkpoint] for run in runs.values()]
        rows[f"share at {checkpoint // 1000}k"] = (
            f"{np.mean(values):.0%} [{min(values):.0%}-{max(values):.0%}] ({', '.join(f'{v:.3f}' for v in values)})"
        )
    lasts = [run["last5"] for run in runs.values()]
    rows["mean of the last 5 windows"] = f"{np.mean(lasts):.3f} ({', '.join(f'{v:.3f}' for v in lasts)})"
    reached = [first_reaching(run["shares"], TARGET) for run in runs.values()]
    rows[f"first at {TARGET:.0%} (mean of 5 windows)"] = ", ".join(
        f"{at // 1000}k" if at is not None else f"not by {impressions // 1000}k" for at in reached
    )
    return rows


TARGET = 0.85  # the share of the oracle's lift the learning benchmark asks of the defaults at 100k


def first_reaching(shares: dict[int, float], target: float, windows: int = 5) -> int | None:
    """Return the impressions done when the mean of ``windows`` consecutive windows first reaches ``target``."""
    ends = sorted(shares)
    for last in range(windows - 1, len(ends)):
        if np.mean([shares[end] for end in ends[last - windows + 1 : last + 1]]) >= target:
            return ends[last]
    return None


class Policy:
    """A policy's workspace in this process, scored and learned as a serving model and the learner would."""

    def __init__(self, vw_args: list[str], *, model_data: bytes | None = None) -> None:
        self.vw_args = list(vw_args)
        self.workspace = new_workspace(vw_args, model_data=model_data)
        self.examples = TextExamples(
            self.workspace, cached_actions=CACHED_ACTION_LINES, chosen_alone=learns_chosen_alone(self.vw_args)
        )
        self.tried = Tried()
        self.version = 0
        self.examples_learned = 0

    def costs(self, shared: str, actions: list[str] | tuple[str, ...]) -> list[float]:
        costs = [0.0] * len(actions)
        for index, cost in self.examples.predict([shared, *actions]):
            costs[index] = cost
        return costs

    def scored(self, exploration: Exploration, costs: list[float], actions: Any) -> list[float]:
        return costs if exploration.bonus <= 0.0 else exploration.scored(costs, self.tried.of(actions))

    def learn(self, examples: list[list[str]]) -> None:
        for example in examples:
            self.examples.learn(example)
            self.tried.learn(example)
        self.examples_learned += len(examples)


def _examples(
    decision: RowDecision, title_rewards: list[float], artwork_rewards: list[float]
) -> tuple[list[list[str]], list[list[str]]]:
    """Return the title and artwork examples the learner would build from the decision's logged rows,
    each policy's labelled by its own rewards (the policies may value a click differently)."""
    event = {"title_block": decision.candidate_block.key, "title_shared": decision.shared_line}
    lines_of = {decision.candidate_block.key: list(decision.candidate_block.lines)}
    impressions = []
    for slot in decision.slots:
        lines_of[slot.artwork_block.key] = list(slot.artwork_block.lines)
        impressions.append(
            {
                "position": slot.position,
                "title_index": slot.title_index,
                "title_prob": slot.title_prob,
                "offered": json.dumps(list(slot.title_offered)) if slot.title_offered else None,
                "artwork_block": slot.artwork_block.key,
                "artwork_index": slot.artwork_index,
                "artwork_prob": slot.artwork_prob,
            }
        )
    return (
        [decision.example() for decision in title_decisions(event, impressions, title_rewards, lines_of)],
        [decision.example() for decision in artwork_decisions(event, impressions, artwork_rewards, lines_of)],
    )


@dataclass
class Driven:
    """What a run leaves: the world and catalog it ran on, both policies as they ended, the viewers'
    taste classes as last fitted, and the curve of shares."""

    world: World
    snapshot: Any
    titles: Policy
    artwork: Policy
    taste_features: dict[str, dict[str, float]]
    curve: dict[str, Any]


Learned = Callable[[Policy, Policy, list[list[str]], list[list[str]]], None]


def drive(
    args: argparse.Namespace,
    seed: int,
    *,
    exploring: Exploration | None = None,
    after_learning: Learned | None = None,
) -> Driven:
    """Drive one world of ``seed`` for ``args.impressions`` impressions.

    ``exploring``, when given, replaces both policies' exploration (the defaults' decaying epsilon and
    bonus) for the whole run; ``after_learning`` is called after every batch with both policies and the
    batch's title and artwork examples.
    """
    shape = SHAPES[args.world]
    with tempfile.TemporaryDirectory(prefix="marquee-direct-") as folder:
        transport, _ = scratch_service(
            folder, create_app=create_app, seed=seed, titles=shape.titles, artworks_per_title=shape.artworks_per_title
        )
        world = World.build(
            catalog_from_service(transport),
            seed=seed,
            shape=shape,
            reveal_segment="segment" in args.reveal,
            reveal_tastes="tastes" in args.reveal,
        )
        snapshot = load_snapshot(connect(transport.client.application.config["DATABASE"]))
    titles = Policy(args.titles_args.split() if args.titles_args is not None else DEFAULT_VW_ARGS[TITLES])
    artwork = Policy(args.artwork_args.split() if args.artwork_args is not None else DEFAULT_VW_ARGS[ARTWORK])
    rng, viewers, baselines = (np.random.default_rng([seed, k]) for k in (11, 12, 13))
    curve = Curve(world, baselines)
    waiting: list[tuple[RowDecision, list[float], list[float]]] = []
    responses: list[tuple[str, str, bool]] = []  # (viewer, artwork, clicked) of every impression, for taste classes
    taste_fit: tastes.TasteClasses | None = None
    taste_features: dict[str, dict[str, float]] = {}

    def explorer(policy: Policy, bonus: float) -> Exploration:
        if exploring is not None:
            return exploring
        found = Exploration.decaying(
            epsilon=args.epsilon,
            decay_after=args.decay_after,
            floor=args.floor,
            examples_learned=policy.examples_learned,
        )
        return replace(found, bonus=bonus)

    for row in range(args.impressions // SLOTS):
        at = row * SLOTS
        viewer = world.draw_viewer(viewers)
        decision = decide_row(
            snapshot=snapshot,
            titles_model=titles,  # type: ignore[arg-type]  # scores as a ServingModel does
            artwork_model=artwork,  # type: ignore[arg-type]
            titles_exploration=explorer(titles, args.title_bonus),
            artwork_exploration=explorer(artwork, args.artwork_bonus),
            user_id=viewer.id,
            user_features=viewer.features,
            tastes=taste_features.get(viewer.id),
            slots=SLOTS,
            candidates=None,
            exclude=[],
            rng=rng,
        )
        shown = [(slot.title_id, slot.artwork_id) for slot in decision.slots]
        outcomes = world.respond(viewer, shown, viewers, at=at)
        waiting.append(
            (
                decision,
                [valued(outcome.clicked, outcome.played, args.title_click_value) for outcome in outcomes],
                [valued(outcome.clicked, outcome.played, args.artwork_click_value) for outcome in outcomes],
            )
        )
        if args.taste_classes:
            responses.extend((viewer.id, outcome.artwork_id, outcome.clicked) for outcome in outcomes)
        if (row + 1) % LEARN_EVERY == 0:
            batch: tuple[list[list[str]], list[list[str]]] = ([], [])
            for made, title_rewards, artwork_rewards in waiting:
                title_lines, artwork_lines = _examples(made, title_rewards, artwork_rewards)
                titles.learn(title_lines)
                artwork.learn(artwork_lines)
                batch[0].extend(title_lines)
                batch[1].extend(artwork_lines)
            waiting = []
            if after_learning is not None:
                after_learning(titles, artwork, *batch)
        done = (row + 1) * SLOTS
        if args.taste_classes and done % args.taste_every == 0:
            records = tastes.Records.of(responses)
            taste_fit, posterior = tastes.fit(records, classes=args.taste_classes, previous=taste_fit, seed=seed)
            taste_features = tastes.placed(records, posterior, min_impressions=args.taste_min_shown)
        curve.add(viewer, shown, at=at)
    return Driven(world, snapshot, titles, artwork, taste_features, curve.result())


def valued(clicked: bool, played: bool, click_value: float) -> float:
    """An impression's reward as a policy with ``reward_values`` {click: click_value, play: 1} and
    ``aggregation`` max learns it, valued by the learner's own ``bandits.log.labels``."""
    reported: list[tuple[float, str | None]] = [
        (1.0, kind) for kind, happened in (("click", clicked), ("play", played)) if happened
    ]
    values = labels.valued(reported, {"click": click_value, "play": 1.0})
    return labels.aggregate(values, aggregation="max", default_reward=0.0)


def run(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Drive one world of ``seed`` for ``args.impressions`` impressions; return its curve of shares."""
    return drive(args, seed).curve


def parser() -> argparse.ArgumentParser:
    """The command line of a run: the world, the seeds, and every setting of the policies."""
    found = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    found.add_argument("--world", default="long-tail", choices=sorted(SHAPES))
    found.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    found.add_argument("--impressions", type=int, default=100_000)
    bonus = float(SETTINGS["EXPLORATION_BONUS"][0])  # the deployment defaults, as a service starts with them
    found.add_argument("--title-bonus", type=float, default=bonus, help="the titles policy's exploration_bonus")
    found.add_argument("--artwork-bonus", type=float, default=bonus, help="the artwork policy's exploration_bonus")
    found.add_argument("--titles-args", default=None, help="the titles policy's VW options (default: its defaults)")
    found.add_argument("--artwork-args", default=None, help="the artwork policy's VW options (default: its defaults)")
    worth = "what a click that did not become a play is worth to the {} policy (a play: 1)"
    found.add_argument("--title-click-value", type=float, default=0.0, help=worth.format("titles"))
    found.add_argument("--artwork-click-value", type=float, default=0.0, help=worth.format("artwork"))
    found.add_argument("--epsilon", type=float, default=float(SETTINGS["EPSILON"][0]))
    found.add_argument("--decay-after", type=float, default=float(SETTINGS["EPSILON_DECAY_AFTER"][0]))
    found.add_argument("--floor", type=float, default=float(SETTINGS["EPSILON_FLOOR"][0]))
    found.add_argument(
        "--taste-classes", type=int, default=8, help="viewers' taste classes fitted on their clicks (0: none)"
    )
    found.add_argument("--taste-every", type=int, default=8000, help="impressions between two fits of the classes")
    found.add_argument(
        "--taste-min-shown", type=int, default=30, help="impressions a viewer needs before their classes are sent"
    )
    found.add_argument(
        "--reveal", nargs="*", choices=("segment", "tastes"), default=[], help="add to every request what none carries"
    )
    return found


def main() -> None:
    args = parser().parse_args()
    started = time.perf_counter()
    runs = {seed: run(args, seed) for seed in args.seeds}
    result: dict[str, Any] = {
        "command": "python -m bench.direct_learning "
        + " ".join(
            f"--{key.replace('_', '-')} {shlex.quote(str(value))}"
            for key, value in vars(args).items()
            if key not in ("seeds", "reveal") and value is not None
        )
        + (f" --reveal {' '.join(args.reveal)}" if args.reveal else "")
        + f" --seeds {' '.join(map(str, args.seeds))}",
        "machine": machine(f"NumPy {np.__version__}", f"vowpal-wabbit-next {vowpal_wabbit_next.__version__}"),
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - started),
    }
    result.update(summary(runs, args.impressions))
    report("direct-learning", result)


if __name__ == "__main__":
    main()
