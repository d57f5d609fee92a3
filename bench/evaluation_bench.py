"""A whole evaluation at scale: import a large DSJson log as a dataset, then evaluate candidates on it.

Usage (from the repository root):

    python -m bench.evaluation_bench [--decisions 1000000] [--folds 2] [--database PATH] [--no-vw]
                                     [--fill import|direct]

Generates the Personalizer-style log of ``bench/coffee_log.py`` (``--decisions`` lines, three
actions each) and imports it into a SQLite file as ``flask import-log`` does (a ``--database``
that already holds the import is reused). With ``--fill direct`` only the first
``SAMPLE`` lines go through the importer; the other decisions are drawn from the same world and
written straight into the dataset's table as the importer writes such lines (the same shared
lines, viewer features and action block), which takes minutes where importing ten million lines
takes most of an hour on two cores; the import's own rate is what the default measures.

Then, in a fresh process, evaluates ``logged``, ``uniform``, ``default`` and (unless ``--no-vw``)
a VW configuration trained on the log
(``vw -q ::``) with the cross-fitted reward model, as ``flask evaluate --dataset`` does, with the
VW passes in processes as the ``EVALUATION_PROCESSES`` default runs them. Reports the time of each
step (reading the log into its spill file, the VW passes, the estimates), the peak resident memory
of the evaluation's process and of its largest pass process, and the DR estimate of ``default``
and ``uniform`` with the true values they should cover. Results print as a Markdown table and are
saved under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import vowpal_wabbit_next

from bandits.evaluate import offline, passes
from bandits.log import datasets
from bandits.storage import connect, write_transaction
from bench.coffee_log import DRINKS, LOGGING, TASTE, generate
from bench.report import machine, report
from service import config as settings

NAME = "bench"
SAMPLE = 10_000  # lines imported by the importer before a direct fill
BATCH = 200_000  # decisions written per transaction by a direct fill


def fill_directly(database: Path, found: dict[str, Any], decisions: int, truth: dict[str, float]) -> None:
    """Write decisions ``SAMPLE`` to ``decisions`` of the coffee world into the imported sample's dataset."""
    db = connect(str(database))
    encoded: dict[str, tuple[str, str]] = {}  # "tod weather" -> (context, shared), as the importer wrote them
    for context, shared in db.execute(
        "SELECT context, shared FROM dataset_rounds WHERE dataset_id = ?", [found["dataset"]]
    ):
        viewer = json.loads(context)
        encoded[f"{viewer['Context.tod']} {viewer['Context.weather']}"] = (context, shared)
    block, action_ids = db.execute(
        "SELECT block, action_ids FROM dataset_rounds WHERE dataset_id = ? LIMIT 1", [found["dataset"]]
    ).fetchone()
    assert json.loads(action_ids) == [drink["_tag"] for drink in DRINKS] and len(encoded) == 4
    rng = np.random.default_rng(2)
    start = float(db.execute("SELECT MIN(created_at) FROM dataset_rounds").fetchone()[0])
    for first in range(SAMPLE, decisions, BATCH):
        n = np.arange(first, min(decisions, first + BATCH))
        morning = rng.random(n.size) < 0.5
        rain = rng.random(n.size) < 0.3
        logging = np.where(morning[:, None], LOGGING["morning"], LOGGING["evening"])
        chosen = (rng.random(n.size)[:, None] > np.cumsum(logging, axis=1)).sum(axis=1)
        taste = np.array([[TASTE[tod][str(drink["_tag"])] for drink in DRINKS] for tod in ("morning", "evening")])
        rates = np.where(morning[:, None], taste[0], taste[1])
        reward = (rng.random(n.size) < rates[n - first, chosen]).astype(float)
        truth["default"] += float(rates[:, 0].sum()) / decisions
        truth["uniform"] += float(rates.mean(axis=1).sum()) / decisions
        rows = []
        for i, number in enumerate(n.tolist()):
            context, shared = encoded[f"{'morning' if morning[i] else 'evening'} {'rain' if rain[i] else 'sun'}"]
            pick = int(chosen[i])
            rows.append(
                (
                    found["dataset"],
                    number,
                    number,
                    f"{number:032x}",
                    0,
                    start + 37.0 * number,
                    context,
                    shared,
                    block,
                    action_ids,
                    pick,
                    float(logging[i, pick]),
                    float(reward[i]),
                )
            )
        with write_transaction(db):
            db.executemany(
                "INSERT INTO dataset_rounds (dataset_id, seq, event_index, event_id, position, created_at, context, "
                "shared, block, action_ids, chosen, pscore, reward) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    with write_transaction(db):
        db.execute(
            "UPDATE datasets SET rounds = ?, events = ?, last_at = ? WHERE id = ?",
            [decisions, decisions, start + 37.0 * (decisions - 1), found["dataset"]],
        )
    db.close()


def imported(database: Path, decisions: int, *, direct: bool) -> dict[str, Any]:
    """Import ``decisions`` lines of the coffee log into ``database`` unless it holds them; return what it holds."""
    sidecar = database.with_suffix(".truth.json")
    if sidecar.exists():
        found = json.loads(sidecar.read_text())
        if found["decisions"] == decisions:
            return dict(found)
    lines_read = min(decisions, SAMPLE) if direct else decisions
    truth = {"default": 0.0, "uniform": 0.0, "bytes": 0}

    def lines() -> Any:
        for line, default, uniform in generate(lines_read, seed=1):
            truth["default"] += default / decisions
            truth["uniform"] += uniform / decisions
            truth["bytes"] += len(line) + 1
            yield line

    db = connect(str(database))
    started = time.perf_counter()
    dataset = datasets.import_lines(db, str(database), lines(), fmt="dsjson", name=NAME)
    seconds = time.perf_counter() - started
    db.close()
    if direct and decisions > lines_read:
        fill_directly(database, {"dataset": dataset["id"]}, decisions, truth)
    found = {
        "fill": "direct" if direct else "import",
        "decisions": decisions,
        "dataset": dataset["id"],
        "import_seconds": round(seconds, 1),
        "imported_decisions": lines_read,
        "log_mib": round(truth["bytes"] / 2**20, 1),
        "database_mib": round(database.stat().st_size / 2**20, 1),
        "default_true_value": truth["default"],
        "uniform_true_value": truth["uniform"],
    }
    sidecar.write_text(json.dumps(found))
    return found


def evaluate(database: str, dataset: str, folds: int, vw_candidate: bool) -> dict[str, Any]:
    """Evaluate the dataset (in this process, started for it); return the times, memory and estimates."""
    db = connect(database)
    folder = str(Path(database).parent)
    config = settings.typed(settings.load({"DATA_DIR": folder, "DATABASE": database, "LEARNER": False}))
    candidates: list[Any] = ["logged", "uniform", "default"]
    if vw_candidate:
        candidates.append({"name": "vw", "kind": "vw", "vw_args": "-q ::"})
    spec = offline.parse_spec({"dataset": dataset, "folds": folds, "candidates": candidates})
    marks: dict[str, float] = {}  # the first moment each stage reported

    def progress(fraction: float, stage: str) -> None:
        if not stage.startswith("reading"):
            marks.setdefault("passes", time.perf_counter())
        if stage == "estimates":
            marks.setdefault("estimates", time.perf_counter())

    started = time.perf_counter()
    result = offline.evaluate(db, config, spec, progress=progress)
    ended = time.perf_counter()
    reading = marks.get("passes", ended) - started
    passing = marks.get("estimates", ended) - marks.get("passes", started)
    by_name = {entry["name"]: entry for entry in result["candidates"]}
    found = {
        "evaluate_seconds": round(ended - started, 1),
        "reading_seconds": round(reading, 1),
        "passes_seconds": round(passing, 1),
        "estimates_seconds": round(ended - marks.get("estimates", ended), 1),
        "processes": passes.processes_for(config.evaluation_processes, result["rounds"], folds + int(vw_candidate)),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "reward_model_r_squared": round(result["reward_model"]["r_squared"], 3),
        "default_dr": by_name["default"]["estimates"]["dr"],
        "uniform_dr": by_name["uniform"]["estimates"]["dr"],
    }
    if vw_candidate:
        found["vw_dr"] = round(by_name["vw"]["estimates"]["dr"]["value"], 4)
    return found


def rss_mib(pid: int) -> float:
    """Return a live process's resident memory in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def children_of(pid: int) -> list[int]:
    """Return the pids of a live process's children."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def measured(command: list[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """Run the evaluation's process; return what it printed, and the peak memory sampled from /proc meanwhile.

    The samples (every 0.2 s) give the evaluation's process and each pass process their own peaks,
    and the peak of their sum: ``getrusage`` cannot, since a process started by fork and exec keeps
    its parent's high-water mark.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    main_peak = child_peak = total_peak = 0.0
    while process.poll() is None:
        main = rss_mib(process.pid)
        children = [rss_mib(child) for child in children_of(process.pid)]
        main_peak, child_peak = max(main_peak, main), max([child_peak, *children])
        total_peak = max(total_peak, main + sum(children))
        time.sleep(0.2)
    out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"the evaluation's process failed ({process.returncode})")
    peaks = {
        "sampled_peak_rss_mib": round(main_peak),
        "sampled_peak_rss_of_a_pass_process_mib": round(child_peak),
        "sampled_peak_rss_all_processes_mib": round(total_peak),
    }
    return json.loads(out), peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--database", help="a SQLite file to import into, or that holds the import already")
    parser.add_argument("--no-vw", action="store_true", help="evaluate the baselines only (no vw candidate)")
    parser.add_argument("--fill", choices=["import", "direct"], default="import", help="how the dataset is filled")
    parser.add_argument("--evaluate", nargs=2, metavar=("DATABASE", "DATASET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evaluate:  # the evaluation's own process, started below
        print(json.dumps(evaluate(args.evaluate[0], args.evaluate[1], args.folds, not args.no_vw)))
        return
    with tempfile.TemporaryDirectory() as folder:
        database = Path(args.database) if args.database else Path(folder) / "marquee.sqlite3"
        found = imported(database, args.decisions, direct=args.fill == "direct")
        command = [sys.executable, "-m", "bench.evaluation_bench", "--folds", str(args.folds)]
        command += ["--evaluate", str(database), found["dataset"]] + (["--no-vw"] if args.no_vw else [])
        run, peaks = measured(command)
        run.update(peaks)
    default_dr, uniform_dr = run.pop("default_dr"), run.pop("uniform_dr")
    line = f"python -m bench.evaluation_bench --decisions {args.decisions} --folds {args.folds} --fill {args.fill}"
    report(
        "evaluation",
        {
            "command": line + (" --no-vw" if args.no_vw else ""),
            "machine": machine(f"NumPy {np.__version__}", f"vowpal-wabbit-next {vowpal_wabbit_next.__version__}"),
            "date": time.strftime("%Y-%m-%d"),
            "decisions": found["decisions"],
            "imported_decisions": found["imported_decisions"],
            "log_mib_imported": found["log_mib"],
            "import_seconds": found["import_seconds"],
            "import_decisions_per_second": round(found["imported_decisions"] / max(found["import_seconds"], 1e-9)),
            "database_mib": found["database_mib"],
            **run,
            "default_dr": f"{default_dr['value']:.4f} [{default_dr['ci_low']:.4f}, {default_dr['ci_high']:.4f}]",
            "default_true_value": round(found["default_true_value"], 4),
            "uniform_dr": f"{uniform_dr['value']:.4f} [{uniform_dr['ci_low']:.4f}, {uniform_dr['ci_high']:.4f}]",
            "uniform_true_value": round(found["uniform_true_value"], 4),
        },
    )


if __name__ == "__main__":
    main()
