"""Learning quality: how much of the oracle's lift Marquee reaches after 5k, 20k and 100k impressions.

Usage (from the repository root):

    python -m bench.learning_bench [--impressions 100000] [--titles 30] [--seed 1]

For each configuration, a fresh scratch service (``service.simulate.scratch_service``: a demo catalog
of ``--titles`` titles with Pillow-drawn posters, in a temporary folder) is driven by the simulated
audience of ``bandits/simulator.py`` in this process, rows of four titles, a reward for each play.
At each checkpoint the table gives Marquee's expected plays per impression over the window of
1,000 impressions ending there, its lift over uniformly random rows, and its share of the oracle's
lift over random (0 % is random, 100 % the oracle). Results print as a Markdown table and are saved
under bench/results/.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np
import vowpal_wabbit_next

from bandits.simulator import World
from bench.report import machine, report
from service.simulate import catalog_from_service, drive, scratch_service

CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "default (epsilon 0.1)": {},
    "epsilon 0.05": {"EPSILON": 0.05},
    "epsilon 0.2": {"EPSILON": 0.2},
    "squarecb (gamma 10 n^0.5)": {"EXPLORATION": "squarecb"},
}
CHECKPOINTS = (5_000, 20_000, 100_000)
WINDOW = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=100_000)
    parser.add_argument("--titles", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    checkpoints = [c for c in CHECKPOINTS if c <= args.impressions]
    result: dict[str, Any] = {
        "command": f"python -m bench.learning_bench --impressions {args.impressions} --titles {args.titles} --seed {args.seed}",
        "machine": machine(f"NumPy {np.__version__}", f"vowpal-wabbit-next {vowpal_wabbit_next.__version__}"),
        "date": time.strftime("%Y-%m-%d"),
    }
    for name, settings in CONFIGURATIONS.items():
        with tempfile.TemporaryDirectory(prefix="marquee-learning-") as folder:
            transport, learn = scratch_service(folder, seed=args.seed, titles=args.titles, settings=settings)
            world = World.build(catalog_from_service(transport), seed=args.seed)
            started = time.perf_counter()
            curve = drive(transport, world, impressions=args.impressions, slots=4, seed=args.seed, window=WINDOW,
                          learn=learn, learn_every=100)
            seconds = time.perf_counter() - started
        at = {point.impressions: point.expected for point in curve.points}
        cells = []
        for checkpoint in checkpoints:
            expected = at[min(at, key=lambda n: abs(n - checkpoint))]
            lift = expected["marquee"] / expected["uniform"] - 1
            share = (expected["marquee"] - expected["uniform"]) / (expected["oracle"] - expected["uniform"])
            cells.append(f"{checkpoint // 1000}k: {expected['marquee']:.3f} (+{lift:.0%} over random, {share:.0%} of oracle)")
        result[name] = "; ".join(cells) + f"; {seconds:.0f} s"
    final = curve.points[-1].expected
    result["baselines at the end"] = (f"oracle {final['oracle']:.3f}, uniform {final['uniform']:.3f}, "
                                      f"default artwork {final['default artwork']:.3f}")
    report("learning", result)


if __name__ == "__main__":
    main()
