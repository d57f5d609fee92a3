"""Where a learned policy's share goes: exploring, optimisation, noise in the weights, or its data.

Usage (from the repository root):

    python -m bench.learner_diagnosis [--world audience] [--seeds 1 2] [--eval-rows 3000]
                                      [--collect-epsilon 0.3 1.0] [every setting of bench.direct_learning]

For each seed it runs ``bench.direct_learning``'s loop (the service's decisions and the learner's
examples, VW in this process) with the settings given, keeping every example learned, and then
scores policies that do not learn on the same ``--eval-rows`` fresh viewers at the run's last
impression: each row's plays against the oracle's and a uniform row's for the same viewer, as the
share of the oracle's lift the curve reports. The policies scored:

* the models as they ended: greedy; with the exploration bonus only; with the decaying epsilon only;
  as served (both). The differences are what exploring costs at the end, rule by rule.
* new models that learn the same examples again, three times in their order, once and three times
  shuffled: if the learner were short of optimisation (one SGD step an example), more passes would
  score higher than the models as they ended.
* the models' weights averaged over the last batches (an exponential average with a half-life of 3,
  10 and 30 batches of 200 rows, VW's other state as it ended): if the weights were noisy around
  where they are heading (SGD's variance), the average would score higher.
* with ``--collect-epsilon E``: the models of another run whose rows were all drawn at a fixed
  epsilon ``E``, no bonus, greedy: if the defaults' rows, chosen mostly greedily, left the models
  short of evidence on what they did not choose, evidence spread more evenly would score higher.

Results print as a Markdown table (a row a policy, its share on each seed and their mean) and are
saved under bench/results/.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import vowpal_wabbit_next

from bandits.decide.row import decide_row
from bandits.model.exploration import Exploration
from bench.direct_learning import SLOTS, Driven, Policy, drive, parser
from bench.report import machine, report
from service.simulate import baseline_rows

HALF_LIVES = (3, 10, 30)  # batches of the learner
GREEDY = Exploration(epsilon=0.0)


def share(
    driven: Driven,
    titles: Policy,
    artwork: Policy,
    exploring: tuple[Exploration, Exploration] = (GREEDY, GREEDY),
    *,
    rows: int,
    at: int,
    seed: int,
) -> float:
    """Score ``titles`` and ``artwork``, exploring as ``exploring`` says (titles', artwork's), serving ``rows``
    fresh viewers at impression ``at``, learning nothing."""
    world = driven.world
    rng, viewers, baselines = (np.random.default_rng([seed, k]) for k in (21, 22, 23))
    values: dict[str, list[float]] = {"policy": [], "oracle": [], "uniform": []}
    for _ in range(rows):
        viewer = world.draw_viewer(viewers)
        decision = decide_row(
            snapshot=driven.snapshot,
            titles_model=titles,  # type: ignore[arg-type]  # scores as a ServingModel does
            artwork_model=artwork,  # type: ignore[arg-type]
            titles_exploration=exploring[0],
            artwork_exploration=exploring[1],
            user_id=viewer.id,
            user_features=viewer.features,
            tastes=driven.taste_features.get(viewer.id),
            slots=SLOTS,
            candidates=None,
            exclude=[],
            rng=rng,
        )
        shown = [(slot.title_id, slot.artwork_id) for slot in decision.slots]
        others = baseline_rows(world, viewer, shown, at=at, reward="play", rng=baselines)
        values["policy"].append(world.row_value(viewer, shown, at=at))
        values["oracle"].append(world.row_value(viewer, others["oracle"], at=at))
        values["uniform"].append(world.row_value(viewer, others["uniform"], at=at))
    policy, oracle, uniform = (float(np.mean(values[key])) for key in ("policy", "oracle", "uniform"))
    return (policy - uniform) / (oracle - uniform)


def relearned(vw_args: list[str], examples: Sequence[list[str]], *, passes: int, shuffled: bool, seed: int) -> Policy:
    """A new policy that learns ``examples`` ``passes`` times, in their order or shuffled before each pass."""
    policy, order, draws = Policy(vw_args), list(examples), random.Random(seed)
    for _ in range(passes):
        if shuffled:
            draws.shuffle(order)
        policy.learn(order)
    return policy


def averaged(policy: Policy, weights: np.ndarray) -> Policy:
    """A copy of ``policy`` whose weights are ``weights`` (VW's other per-weight state as it ended)."""
    copy = Policy(policy.vw_args, model_data=policy.workspace.serialize())
    copy.workspace.weights()[..., 0] = weights.astype(np.float32)
    return copy


def diagnose(args: argparse.Namespace, seed: int) -> dict[str, float]:
    """Return the share of every policy scored for ``seed`` (the module's docstring lists them)."""
    kept: tuple[list[list[str]], list[list[str]]] = ([], [])
    means: dict[tuple[str, int], np.ndarray] = {}

    def after_learning(
        titles: Policy, artwork: Policy, title_lines: list[list[str]], art_lines: list[list[str]]
    ) -> None:
        kept[0].extend(title_lines)
        kept[1].extend(art_lines)
        for name, policy in (("titles", titles), ("artwork", artwork)):
            weights = policy.workspace.weights()[..., 0]
            for half_life in HALF_LIVES:
                mean = means.get((name, half_life))
                if mean is None:
                    means[name, half_life] = weights.astype(np.float64)
                else:
                    mean += (1.0 - 0.5 ** (1.0 / half_life)) * (weights - mean)

    driven = drive(args, seed, after_learning=after_learning)
    titles, artwork = driven.titles, driven.artwork
    decaying = {
        name: Exploration.decaying(
            epsilon=args.epsilon,
            decay_after=args.decay_after,
            floor=args.floor,
            examples_learned=policy.examples_learned,
        )
        for name, policy in (("titles", titles), ("artwork", artwork))
    }
    bonus = (Exploration(epsilon=0.0, bonus=args.title_bonus), Exploration(epsilon=0.0, bonus=args.artwork_bonus))
    epsilon = (decaying["titles"], decaying["artwork"])
    served = (replace(epsilon[0], bonus=args.title_bonus), replace(epsilon[1], bonus=args.artwork_bonus))

    def scored(titles: Policy, artwork: Policy, exploring: tuple[Exploration, Exploration] = (GREEDY, GREEDY)) -> float:
        return share(driven, titles, artwork, exploring, rows=args.eval_rows, at=args.impressions, seed=seed)

    shares = {
        "as ended, greedy": scored(titles, artwork),
        "as ended, the bonus only": scored(titles, artwork, bonus),
        f"as ended, epsilon only ({epsilon[0].epsilon:.3f}, {epsilon[1].epsilon:.3f})": scored(
            titles, artwork, epsilon
        ),
        "as ended, as served (epsilon and bonus)": scored(titles, artwork, served),
        "the run's own curve, mean of the last 5 windows": driven.curve["last5"],
    }
    for passes, shuffled in ((3, False), (1, True), (3, True)):
        label = f"relearned, {passes} pass{'es' if passes > 1 else ''}{', shuffled' if shuffled else ' in order'}"
        shares[label] = scored(
            relearned(titles.vw_args, kept[0], passes=passes, shuffled=shuffled, seed=seed),
            relearned(artwork.vw_args, kept[1], passes=passes, shuffled=shuffled, seed=seed),
        )
    for half_life in HALF_LIVES:
        shares[f"weights averaged, half-life {half_life} batches"] = scored(
            averaged(titles, means["titles", half_life]), averaged(artwork, means["artwork", half_life])
        )
    for fixed in args.collect_epsilon:
        other = drive(args, seed, exploring=Exploration(epsilon=fixed))
        shares[f"rows drawn at epsilon {fixed:g}, greedy"] = share(
            other, other.titles, other.artwork, rows=args.eval_rows, at=args.impressions, seed=seed
        )
    return shares


def main() -> None:
    found = parser()
    found.description = __doc__
    found.set_defaults(world="audience", seeds=[1, 2])
    found.add_argument("--eval-rows", type=int, default=3000, help="fresh viewers each policy is scored on")
    found.add_argument(
        "--collect-epsilon", type=float, nargs="*", default=[], help="also score runs drawn at these fixed epsilons"
    )
    args = found.parse_args()
    started = time.perf_counter()
    by_seed = {seed: diagnose(args, seed) for seed in args.seeds}
    result: dict[str, Any] = {
        "command": f"python -m bench.learner_diagnosis --world {args.world} --impressions {args.impressions} "
        f"--eval-rows {args.eval_rows} --seeds {' '.join(map(str, args.seeds))}"
        + (f" --collect-epsilon {' '.join(f'{e:g}' for e in args.collect_epsilon)}" if args.collect_epsilon else ""),
        "machine": machine(f"NumPy {np.__version__}", f"vowpal-wabbit-next {vowpal_wabbit_next.__version__}"),
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - started),
    }
    for label in next(iter(by_seed.values())):
        values = [shares[label] for shares in by_seed.values()]
        result[label] = f"{np.mean(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})"
    report("learner-diagnosis", result)


if __name__ == "__main__":
    main()
