"""Off-policy estimators at scale: IPS, SNIPS and DR over 1,000,000 logged decisions.

Usage (from the repository root):

    python -m bench.ope_bench [--rounds 1000000] [--resamples 1000]

Times IPS, SNIPS and DR with their normal intervals (one call each, inputs already in memory), then
DR with a seeded percentile bootstrap of ``--resamples`` resamples, and the peak memory each step
allocated (tracemalloc, which sees NumPy's arrays). Results print as a Markdown table and are saved
under bench/results/.
"""

from __future__ import annotations

import argparse
import platform
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from bandits.evaluate.estimators import dr, ips, snips
from bench.report import machine, report


def synthetic_log(rounds: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A logged-decision table of ``rounds`` rows: rewards, propensities, target probabilities, model outputs."""
    rng = np.random.default_rng(seed)
    pscore = rng.choice([0.02, 0.1, 0.5, 0.9], rounds)
    return {
        "reward": (rng.random(rounds) < 0.1).astype(float),
        "pscore": pscore,
        "target_prob": rng.choice([0.0, 0.05, 1.0], rounds),
        "q_logged": rng.uniform(0, 0.2, rounds),
        "q_target": rng.uniform(0, 0.2, rounds),
    }


def measure(step: Callable[[], Any]) -> tuple[float, float]:
    """Return (seconds, peak MiB allocated) of one call."""
    tracemalloc.start()
    started = time.perf_counter()
    step()
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    log = synthetic_log(args.rounds)
    common: dict[str, Any] = {k: log[k] for k in ("reward", "pscore", "target_prob")}

    def three() -> None:
        ips(**common)
        snips(**common)
        dr(**common, q_logged=log["q_logged"], q_target=log["q_target"])

    three_seconds, three_mib = measure(three)
    boot_seconds, boot_mib = measure(
        lambda: dr(
            **common,
            q_logged=log["q_logged"],
            q_target=log["q_target"],
            interval="bootstrap",
            n_bootstrap=args.resamples,
            seed=1,
        )
    )
    result = {
        "command": f"python -m bench.ope_bench --rounds {args.rounds} --resamples {args.resamples}",
        "machine": machine(f"NumPy {np.__version__}", platform.platform()),
        "date": time.strftime("%Y-%m-%d"),
        "rounds": args.rounds,
        "ips_snips_dr_normal_seconds": round(three_seconds, 3),
        "ips_snips_dr_normal_peak_mib": round(three_mib, 1),
        "dr_bootstrap_resamples": args.resamples,
        "dr_bootstrap_seconds": round(boot_seconds, 2),
        "dr_bootstrap_peak_mib": round(boot_mib, 1),
    }
    report("ope", result)


if __name__ == "__main__":
    main()
