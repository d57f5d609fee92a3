"""Learning quality: how much of the oracle's lift Marquee reaches after 5k, 20k, 50k and 100k impressions.

Usage (from the repository root):

    python -m bench.learning_bench [--impressions 100000] [--world audience] [--titles N] [--seeds 1 2 3]
                                   [--only NAME ...] [--configuration JSON] [--auto-optimize-every N]

For each configuration, a fresh scratch service (``service.simulate.scratch_service``: a demo catalog
with Pillow-drawn posters of the world's size, or of ``--titles`` titles, in a temporary folder) is
driven by a simulated world of ``bandits/simulator.py`` (``--world``: a shape of ``SHAPES``) in this
process, rows of four titles, a reward for each play.
At each checkpoint the table gives Marquee's expected plays per impression over the window of
1,000 impressions ending there, its lift over uniformly random rows, and its share of the oracle's
lift over random (0 % is random, 100 % the oracle). With several ``--seeds`` each configuration
runs once per seed (a different world, viewers and catalog each time; the service's own exploration
is seeded per process, so runs differ even for one seed) and the table gives the means and the
range of the share. With ``--auto-optimize-every N`` both policies are optimized (``bandits.evaluate.optimize``,
its default search space and window) every N impressions while the simulation waits, and what each
optimization decided is listed. After each run ``gap_breakdown`` splits what is left of the gap to the oracle
into choosing titles, ordering them, dressing them and exploring, and measures the *known-segment
bound*: the share of the oracle's lift reached by a policy that knows every viewer's segment and the
world's every parameter but not the viewer's own deviation from the segment's genre tastes (what
no request says directly). Results print as a Markdown table and are saved under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from typing import Any

import numpy as np
import vowpal_wabbit_next

from bandits.simulator import SHAPES, Viewer, World
from bench.report import chosen, machine, report
from service import create_app
from service.simulate import Transport, baseline_rows, catalog_from_service, drive, scratch_service

# Settings of every run: a simulation's decisions come far faster than a deployment's, so the taste classes are
# refitted every MARQUEE_TASTE_REFIT_EVENTS decisions, as in a deployment whose decisions take longer to come than
# MARQUEE_TASTE_REFIT_SECONDS (about 3 a second at the defaults), not once in the whole run.
SIMULATED = {"TASTE_REFIT_SECONDS": 0.0}
# name -> deployment settings (``MARQUEE_*`` without the prefix) and per-policy overrides (``PUT /v1/policies/{name}``)
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "no taste classes (the defaults before 2026-12-06, late)": {"settings": {"TASTE_CLASSES": 0}},
    "fixed epsilon 0.1": {"settings": {"EPSILON_DECAY_AFTER": 0.0}},
    "no exploration bonus (the defaults before 2026-12-06)": {"settings": {"EXPLORATION_BONUS": 0.0}},
    "default before 2026-12-03": {
        "settings": {"EPSILON_DECAY_AFTER": 0.0, "EXPLORATION_BONUS": 0.0},
        "titles": {"vw_args": "-q UT -q UG -l 0.05"},
        "artwork": {"vw_args": "-q UA -q GA -l 0.05"},
    },
    "squarecb (gamma 10 n^0.5)": {"settings": {"EXPLORATION": "squarecb"}},
    # Mis-tuned on purpose, for --auto-optimize-every: a learning rate far too low and no interactions.
    "mis-tuned (-l 0.005, no interactions)": {"titles": {"vw_args": "-l 0.005"}, "artwork": {"vw_args": "-l 0.005"}},
}

CHECKPOINTS = (5_000, 20_000, 50_000, 100_000, 150_000, 200_000)
WINDOW = 1000


def _put(transport: Transport, policy: str, overrides: dict[str, Any]) -> None:
    """Set a policy's overrides, keeping those it has (a PUT replaces them all)."""
    _, current = transport.get(f"/v1/policies/{policy}")
    kept = {key: current["settings"][key] for key in current["settings"]["overridden"]}
    status, body = transport.send("PUT", f"/v1/policies/{policy}", {**kept, **overrides})
    if status != 200:
        raise RuntimeError(f"PUT /v1/policies/{policy} answered {status}: {body}")


def gap_breakdown(transport: Transport, world: World, *, at: int, seed: int, viewers: int = 2000) -> dict[str, float]:
    """Split the trained service's shortfall from the oracle, per impression, into four parts.

    The same sampled viewers are shown the service's exploring rows, then (exploration switched
    off) its greedy rows, then those titles each in its best artwork, then in the best order, then
    the oracle's row; each step's gain is the part of the gap it closes:

    * ``exploration``: greedy rows (no random draws, no exploration bonus) minus exploring rows (the price of
      exploring);
    * ``artwork``: the greedy titles in their best artworks minus the greedy rows;
    * ``order``: the same titles in the best order minus the titles as placed;
    * ``titles``: the oracle's row minus the greedy titles best dressed and ordered (choosing the titles).
    """
    rng = np.random.default_rng([seed, 2])
    sample = [world.draw_viewer(rng) for _ in range(viewers)]

    def served() -> list[list[tuple[str, str]]]:
        rows = []
        for viewer in sample:
            status, body = transport.post(
                "/v1/rank", {"user": {"id": viewer.id, "features": dict(viewer.features)}, "slots": 4}
            )
            if status != 200:
                raise RuntimeError(f"POST /v1/rank answered {status}: {body}")
            rows.append([(slot["title_id"], slot["artwork_id"]) for slot in body["slots"]])
        return rows

    def value(rows: list[list[tuple[str, str]]]) -> float:
        return float(np.mean([world.row_value(v, row, at=at) for v, row in zip(sample, rows)])) / 4

    exploring = served()
    for policy in ("titles", "artwork"):
        _put(transport, policy, {"exploration": "epsilon-greedy", "epsilon": 0.0, "exploration_bonus": 0.0})
    greedy = served()
    dressed = [[(t, world.best_artwork(v, t, at=at)) for t, _ in row] for v, row in zip(sample, greedy)]
    ordered = [world.oracle(v, slots=4, at=at, candidates=[t for t, _ in row]) for v, row in zip(sample, greedy)]
    oracle = [world.oracle(v, slots=4, at=at) for v in sample]
    values = [value(rows) for rows in (exploring, greedy, dressed, ordered, oracle)]
    uniform_rng = np.random.default_rng([seed, 4])
    uniform = value(
        [
            baseline_rows(world, v, row, at=at, reward="play", rng=uniform_rng)["uniform"]
            for v, row in zip(sample, oracle)
        ]
    )
    return {
        "exploring": values[0],
        "oracle": values[4],
        "exploration": values[1] - values[0],
        "artwork": values[2] - values[1],
        "order": values[3] - values[2],
        "titles": values[4] - values[3],
        "known segment": value(known_segment_rows(world, sample, at=at)),
        "uniform": uniform,
    }


def known_segment_rows(world: World, viewers: list[Viewer], *, at: int) -> list[list[tuple[str, str]]]:
    """Return the best rows for viewers whose own genre tastes are taken to be their segment's.

    This is what a policy could show that knew every viewer's segment and every parameter of the
    world, but not each viewer's personal deviation from the segment's genre tastes.
    """
    rows = []
    for viewer in viewers:
        segment = world.segments[viewer.segment]
        typical = replace(
            viewer,
            id=f"{viewer.id}-typical",
            genre_taste={genre: segment.genre_taste.get(genre, 0.0) for genre in viewer.genre_taste},
        )
        rows.append(world.oracle(typical, slots=4, at=at))
    return rows


def share(shortfall: float, gap: dict[str, float]) -> float:
    """Return the share of the oracle's lift over uniform rows reached by a policy ``shortfall`` below the oracle."""
    return 1.0 - shortfall / (gap["oracle"] - gap["uniform"])


class Optimizer:
    """Optimizes the titles and artwork policies of a scratch service every ``every`` impressions, in this process.

    Called as the simulation's ``learn`` step: it learns, then, when due, runs ``bandits.evaluate.optimize`` on
    each policy to the end (the simulation waits meanwhile) and records what each optimization decided.
    """

    def __init__(self, transport: Any, learn: Any, *, every: int, rows_per_call: int, slots: int) -> None:
        from bandits.storage import connect

        self.app = transport.client.application
        self.db = connect(self.app.config["DATABASE"])
        self.learn, self.every, self.impressions_per_call = learn, every, rows_per_call * slots
        self.shown = 0
        self.decisions: list[str] = []
        self.seconds = 0.0

    def __call__(self) -> None:
        from bandits.evaluate import optimize

        self.learn()
        self.shown += self.impressions_per_call
        if self.shown % self.every >= self.impressions_per_call:
            return
        started = time.perf_counter()
        for policy in ("titles", "artwork"):
            optimization_id = optimize.start(
                self.db, self.app.extensions["marquee"]["deployment"], policy, trigger="schedule"
            )
            status = optimize.run(self.app.extensions["marquee"]["deployment"], optimization_id)
            found = optimize.get(self.db, optimization_id)
            assert found is not None
            decision = found["decision"] or {}
            best = decision.get("best") or {}
            evidence = (
                f" ({best['name']!r} DR lower bound {best['dr']['ci_low']:.3f} vs {decision['serving_estimate']:.3f})"
                if best
                else ""
            )
            self.decisions.append(f"{self.shown // 1000}k {policy}: {status}{evidence}")
        self.seconds += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=100_000)
    parser.add_argument("--world", default="audience", choices=sorted(SHAPES), help="the shape of the simulated world")
    parser.add_argument("--titles", type=int, default=None, help="catalog size (default: the world's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these configurations (by name)")
    parser.add_argument(
        "--configuration",
        type=json.loads,
        metavar="JSON",
        help='run this configuration alone: {"settings": {...}, "titles": {...}, "artwork": {...}}',
    )
    parser.add_argument(
        "--auto-optimize-every",
        type=int,
        default=0,
        metavar="N",
        help="optimize both policies (bandits.evaluate.optimize, its default window) every N impressions (0: never)",
    )
    args = parser.parse_args()
    configurations = chosen(CONFIGURATIONS, args.only, parser)
    if args.configuration is not None:
        configurations = {json.dumps(args.configuration, sort_keys=True): args.configuration}
    shape = SHAPES[args.world]
    titles = args.titles or shape.titles
    checkpoints = [c for c in CHECKPOINTS if c <= args.impressions]
    result: dict[str, Any] = {
        "command": (
            f"python -m bench.learning_bench --impressions {args.impressions} --world {args.world} "
            f"--titles {titles} --seeds {' '.join(map(str, args.seeds))}"
            + (f" --auto-optimize-every {args.auto_optimize_every}" if args.auto_optimize_every else "")
        ),
        "world": f"{shape.name}: {shape.description}",
        "machine": machine(f"NumPy {np.__version__}", f"vowpal-wabbit-next {vowpal_wabbit_next.__version__}"),
        "date": time.strftime("%Y-%m-%d"),
    }
    baselines: list[dict[str, float]] = []
    for name, configuration in configurations.items():
        shares: dict[int, list[float]] = {c: [] for c in checkpoints}
        rewards: dict[int, list[float]] = {c: [] for c in checkpoints}
        lifts: dict[int, list[float]] = {c: [] for c in checkpoints}
        gaps: list[dict[str, float]] = []
        seconds = 0.0
        optimizations: list[str] = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory(prefix="marquee-learning-") as folder:
                transport, learn = scratch_service(
                    folder,
                    create_app=create_app,
                    seed=seed,
                    titles=titles,
                    artworks_per_title=shape.artworks_per_title,
                    settings={**SIMULATED, **(configuration.get("settings") or {})},
                )
                for policy in ("titles", "artwork"):
                    if configuration.get(policy):
                        _put(transport, policy, configuration[policy])
                world = World.build(catalog_from_service(transport), seed=seed, shape=shape)
                step: Any = learn
                if args.auto_optimize_every:
                    step = Optimizer(transport, learn, every=args.auto_optimize_every, rows_per_call=100, slots=4)
                started = time.perf_counter()
                curve = drive(
                    transport,
                    world,
                    impressions=args.impressions,
                    slots=4,
                    seed=seed,
                    window=WINDOW,
                    learn=step,
                    learn_every=100,
                )
                seconds += time.perf_counter() - started
                if isinstance(step, Optimizer):
                    optimizations.append(
                        f"seed {seed}: " + ", ".join(step.decisions) + f" ({step.seconds:.0f} s optimizing)"
                    )
                gaps.append(gap_breakdown(transport, world, at=args.impressions, seed=seed))
            at = {point.impressions: point.expected for point in curve.points}
            for checkpoint in checkpoints:
                expected = at[min(at, key=lambda n: abs(n - checkpoint))]
                rewards[checkpoint].append(expected["marquee"])
                lifts[checkpoint].append(expected["marquee"] / expected["uniform"] - 1)
                shares[checkpoint].append(
                    (expected["marquee"] - expected["uniform"]) / (expected["oracle"] - expected["uniform"])
                )
            baselines.append(curve.points[-1].expected)
        cells = []
        for checkpoint in checkpoints:
            spread = f" [{min(shares[checkpoint]):.0%} to {max(shares[checkpoint]):.0%}]" if len(args.seeds) > 1 else ""
            cells.append(
                f"{checkpoint // 1000}k: {np.mean(rewards[checkpoint]):.3f} "
                f"(+{np.mean(lifts[checkpoint]):.0%} over random, {np.mean(shares[checkpoint]):.0%}{spread} of oracle)"
            )
        result[name] = "; ".join(cells) + f"; {seconds / len(args.seeds):.0f} s a run"
        if optimizations:
            result[f"{name}: optimizations"] = "; ".join(optimizations)
        gap = {key: float(np.mean([g[key] for g in gaps])) for key in gaps[0]}
        result[f"{name}: gap to the oracle at the end"] = (
            f"{gap['oracle'] - gap['exploring']:.4f} plays per impression = titles {gap['titles']:.4f} + order "
            f"{gap['order']:.4f} + artwork {gap['artwork']:.4f} + exploration {gap['exploration']:.4f}; "
            f"share of the oracle's lift on the same sample {share(gap['oracle'] - gap['exploring'], gap):.0%}, "
            f"known-segment bound {share(gap['oracle'] - gap['known segment'], gap):.0%}"
        )
    final = {key: float(np.mean([b[key] for b in baselines])) for key in baselines[0]}
    result["baselines at the end (mean over runs)"] = (
        f"oracle {final['oracle']:.3f}, uniform {final['uniform']:.3f}, default artwork {final['default artwork']:.3f}"
    )
    report("learning", result)


if __name__ == "__main__":
    main()
