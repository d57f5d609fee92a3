"""A whole evaluation at scale: import a large DSJson log as a dataset, then evaluate candidates on it.

Usage (from the repository root):

    python -m bench.evaluation_bench [--decisions 1000000] [--folds 2]

Writes the Personalizer-style log of ``bench/coffee_log.py`` (``--decisions`` lines, three actions
each) to a temporary file, imports it into a fresh SQLite file as ``flask import-log`` does, and
evaluates ``logged``, ``uniform``, ``default`` and a VW configuration trained on the log
(``vw -q ::``) with the cross-fitted reward model, as ``flask evaluate --dataset`` does. Reports the
time of each step, the process's peak resident memory, and the DR estimate of ``default`` with the
true value it should cover. Results print as a Markdown table and are saved under bench/results/.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import vowpal_wabbit_next

from bandits.evaluate import offline
from bandits.log import datasets
from bandits.storage import connect
from bench.coffee_log import generate
from bench.report import machine, report
from service import config as settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--folds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "coffee.dsjson"
        truth_default, truth_uniform = 0.0, 0.0
        with log.open("w") as out:
            for line, default, uniform in generate(args.decisions, seed=1):
                out.write(line + "\n")
                truth_default += default / args.decisions
                truth_uniform += uniform / args.decisions
        database = str(Path(folder) / "marquee.sqlite3")
        db = connect(database)
        started = time.perf_counter()
        with log.open("rb") as source:
            dataset = datasets.import_lines(db, database, source, fmt="dsjson", name="bench")
        import_seconds = time.perf_counter() - started

        config = settings.typed(settings.load({"DATA_DIR": folder, "DATABASE": database, "LEARNER": False}))
        spec = offline.parse_spec(
            {
                "dataset": dataset["id"],
                "folds": args.folds,
                "candidates": ["logged", "uniform", "default", {"name": "vw", "kind": "vw", "vw_args": "-q ::"}],
            }
        )
        stages: dict[str, float] = {}  # stage -> seconds
        current: list[tuple[str, float]] = [("", time.perf_counter())]  # the stage running, since when

        def progress(fraction: float, stage: str) -> None:
            running, since = current[0]
            if stage == running:
                return
            now = time.perf_counter()
            if running:  # the stage that just ended
                key = running.split(":")[0]
                stages[key] = stages.get(key, 0.0) + now - since
            current[0] = (stage, now)

        started = time.perf_counter()
        result = offline.evaluate(db, config, spec, progress=progress)
        evaluate_seconds = time.perf_counter() - started
        progress(1.0, "")  # closes the last stage
        by_name = {entry["name"]: entry for entry in result["candidates"]}
        default_dr = by_name["default"]["estimates"]["dr"]
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report(
            "evaluation",
            {
                "command": f"python -m bench.evaluation_bench --decisions {args.decisions} --folds {args.folds}",
                "machine": machine(f"NumPy {np.__version__}", f"vowpal-wabbit-next {vowpal_wabbit_next.__version__}"),
                "date": time.strftime("%Y-%m-%d"),
                "decisions": dataset["decisions"],
                "log_mib": round(log.stat().st_size / 2**20, 1),
                "import_seconds": round(import_seconds, 1),
                "import_decisions_per_second": round(dataset["decisions"] / import_seconds),
                "database_mib": round(Path(database).stat().st_size / 2**20, 1),
                "evaluate_seconds": round(evaluate_seconds, 1),
                "evaluate_stage_seconds": {key: round(value, 1) for key, value in stages.items()},
                "peak_rss_mib": round(peak_mib),
                "reward_model_r_squared": round(result["reward_model"]["r_squared"], 3),
                "default_dr": f"{default_dr['value']:.4f} [{default_dr['ci_low']:.4f}, {default_dr['ci_high']:.4f}]",
                "default_true_value": round(truth_default, 4),
                "uniform_dr": round(by_name["uniform"]["estimates"]["dr"]["value"], 4),
                "uniform_true_value": round(truth_uniform, 4),
                "vw_dr": round(by_name["vw"]["estimates"]["dr"]["value"], 4),
            },
        )


if __name__ == "__main__":
    main()
