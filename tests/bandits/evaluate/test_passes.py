"""Evaluation past memory: the log read in chunks of whole events, VW passes in processes, one report either way."""

from __future__ import annotations

import dataclasses
import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bandits.evaluate import offline, passes
from bandits.log import datasets, rounds
from tests.helpers import deployment, run_to_the_end
from tests.worlds import EVENTS, SLOTS, LoggedWorld

FIELDS = ("event_index", "position", "created_at", "offsets", "action_index", "chosen", "pscore", "reward", "greedy")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> LoggedWorld:
    return LoggedWorld(tmp_path_factory.mktemp("passes"))


def assert_same_rounds(one: rounds.Rounds, other: rounds.Rounds) -> None:
    for name in FIELDS:
        assert np.array_equal(getattr(one, name), getattr(other, name)), name
    assert one.event_ids == other.event_ids and one.shared == other.shared and one.block == other.block
    assert one.contexts == other.contexts and one.action_ids == other.action_ids and one.modes == other.modes
    assert all(one.actions(i) == other.actions(i) for i in range(len(one)))


@pytest.mark.parametrize("policy", ["titles", "artwork"])
def test_the_log_read_in_chunks_is_the_log_read_whole(world, policy, monkeypatch):
    monkeypatch.setattr(rounds, "PAGE", 4)  # the event numbers are listed over many pages
    read = {"policy": policy, "aggregation": "earliest", "default_reward": 0.0}
    whole = rounds.from_log(world.db, **read)
    chunks = list(rounds.iter_from_log(world.db, **read, chunk_events=7))
    assert len(whole) == EVENTS * SLOTS and len(chunks) == -(-EVENTS // 7)
    for number, chunk in enumerate(chunks):  # whole events, numbered as in the whole log
        assert set(chunk.event_index.tolist()) == set(range(7 * number, min(EVENTS, 7 * (number + 1))))
    assert_same_rounds(rounds.concatenate(chunks, policy=policy), whole)
    last = rounds.from_log(world.db, **read, limit=10)
    assert last.n_events == 10 and np.array_equal(last.created_at, whole.created_at[-10 * SLOTS :])
    assert_same_rounds(
        rounds.concatenate(rounds.iter_from_log(world.db, **read, limit=10, chunk_events=3), policy=policy), last
    )


def test_a_dataset_read_in_chunks_never_splits_an_event(world):
    lines = world.client.get("/v1/logs/export?format=jsonl&policy=titles").get_data(as_text=True).splitlines()
    found = datasets.import_lines(world.db, world.app.config["DATABASE"], lines, fmt="jsonl", name="slots")
    whole = datasets.load(world.db, found["id"])
    # Pages of 4 decisions cut the events of 3 slots anywhere; a page of 2 is smaller than an event.
    for size in (4, 2, 1000):
        chunks = list(datasets.iter_load(world.db, found["id"], chunk_rounds=size))
        seen: set[int] = set()
        for chunk in chunks:
            events = set(chunk.event_index.tolist())
            assert not events & seen and all((chunk.event_index == e).sum() == SLOTS for e in events)
            seen |= events
        assert_same_rounds(rounds.concatenate(chunks, policy="titles"), whole)
    last = datasets.load(world.db, found["id"], limit=5)
    assert last.n_events == 5 and last.event_ids == whole.event_ids[-5 * SLOTS :]
    chunked = rounds.concatenate(datasets.iter_load(world.db, found["id"], limit=5, chunk_rounds=4), policy="titles")
    assert_same_rounds(chunked, last)


def test_a_spill_gives_back_its_chunks_and_skips_those_not_wanted(world, tmp_path: Path):
    read = {"policy": "artwork", "aggregation": "earliest", "default_reward": 0.0}
    spill = rounds.Spill(tmp_path / "rounds")
    for chunk in rounds.iter_from_log(world.db, **read, chunk_events=10):
        spill.write(chunk)
    back = list(spill.read())
    assert [len(chunk) for chunk in back] == [info.rounds for info in spill.chunks]
    whole = rounds.from_log(world.db, **read)
    spilled = rounds.concatenate(back, policy="artwork")
    assert np.array_equal(spilled.reward, whole.reward) and spilled.shared == whole.shared and spilled.contexts == []
    later = list(spill.read(lambda info: info.first_event >= 20))
    assert [int(chunk.event_index[0]) for chunk in later] == list(range(20, EVENTS, 10))


SPEC = {
    "policy": "titles",
    "segment_by": "segment",
    "candidates": [
        "logged",
        "uniform",
        "default",
        "greedy",
        {"name": "learned", "kind": "vw", "vw_args": "-q UT", "epsilon": 0.1},
        {"name": "learned squarecb", "kind": "vw", "vw_args": "-q UT", "exploration": "squarecb"},
    ],
}


def test_passes_in_processes_give_the_report_made_in_one(world):
    config = deployment(world.app)
    spec = offline.parse_spec(SPEC)
    reports, models, seen = [], [], []
    for processes in (1, 3):
        trained: dict[str, bytes] = {}
        progress: list[float] = []
        reports.append(
            offline.evaluate(
                world.db,
                dataclasses.replace(config, evaluation_processes=processes),
                spec,
                trained=trained,
                progress=lambda fraction, stage, progress=progress: progress.append(fraction),
            )
        )
        models.append(trained)
        seen.append(progress)
    assert json.dumps(reports[0], sort_keys=True) == json.dumps(reports[1], sort_keys=True)
    assert set(models[0]) == {"learned", "learned squarecb"} and models[0] == models[1]
    for progress in seen:
        assert progress[-1] == 1.0 and all(b >= a for a, b in zip(progress, progress[1:]))
    # The folds and the candidates' distributions streamed from files are the in-memory ones.
    whole = offline.policy_rounds(world.db, config, "titles")
    settings = reports[0]["policy_settings"]
    model = offline.fit_reward_model(whole, vw_args=settings["vw_args"], folds=2)
    assert reports[0]["reward_model"]["mse"] == model.mse
    assert reports[0]["reward_model"]["baseline_mse"] == model.baseline_mse
    pmf = offline.target_distribution(whole, offline.parse_candidate(SPEC["candidates"][4]))
    scores = offline.candidate_scores(whole, model, pmf)
    learned = next(entry for entry in reports[0]["candidates"] if entry["name"] == "learned")
    assert learned["estimates"]["dr"] == offline.estimates(whole, scores)["dr"]


def test_how_many_processes_the_setting_and_the_log_ask_for():
    many = passes.PARALLEL_MIN_ROUNDS
    assert passes.processes_for(1, 10 * many, tasks=6) == 1
    assert passes.processes_for(4, 10, tasks=6) == 4 and passes.processes_for(4, 10, tasks=2) == 2
    assert passes.processes_for(0, many - 1, tasks=6) == 1
    assert passes.processes_for(0, many, tasks=100) == len(passes.os.sched_getaffinity(0))


class Unchecked(passes.FoldTask):
    """A fold whose options are not checked before the passes start: VW refuses them in a pool's process."""

    def check(self) -> None:
        pass


def test_a_pass_that_fails_in_a_process_fails_the_run_with_its_message(world, tmp_path: Path):
    spill = rounds.Spill(tmp_path / "rounds")
    for chunk in rounds.iter_from_log(world.db, policy="artwork", aggregation="earliest", default_reward=0.0):
        spill.write(chunk)
    good = passes.FoldTask(str(tmp_path / "q-0"), fold=0, folds=2, n_events=EVENTS, rounds=1, args=("-l", "0.1"))
    bad = Unchecked(str(tmp_path / "q-1"), fold=1, folds=2, n_events=EVENTS, rounds=1, args=("--no_such_option",))
    with pytest.raises(offline.SpecError, match="refused the reward model's options.*--no_such_option"):
        passes.run([good, bad], spill, processes=2)
    with pytest.raises(offline.SpecError, match="--no_such_option"):  # checked before any pass, in this process
        passes.run([passes.FoldTask(**{**dataclasses.asdict(bad)})], spill, processes=2)


def test_an_evaluation_holds_the_numbers_of_its_decisions_not_their_lines(world, monkeypatch):
    lines = world.client.get("/v1/logs/export?format=jsonl&policy=artwork").get_data(as_text=True).splitlines()
    padding = " |Z " + " ".join(f"filler{i}=1" for i in range(400))  # about 5 KB of features a decision
    wide = []
    for line in lines:
        record = json.loads(line)
        record["shared"] += padding
        wide.append(json.dumps(record))
    found = datasets.import_lines(world.db, world.app.config["DATABASE"], wide, fmt="jsonl", name="wide")
    shared_bytes = sum(len(line) for line in datasets.load(world.db, found["id"]).shared)
    monkeypatch.setattr(datasets, "CHUNK_ROUNDS", 30)
    spec = offline.parse_spec({"dataset": found["id"], "candidates": ["logged", "uniform", "default"]})
    tracemalloc.start()
    try:
        report = offline.evaluate(world.db, dataclasses.replace(deployment(world.app), evaluation_processes=1), spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report["rounds"] == len(lines)
    assert peak < shared_bytes / 4, (peak, shared_bytes)  # the lines of all decisions were never held at once


def test_a_background_evaluation_runs_its_passes_in_a_pool_of_its_own(tmp_path: Path):
    pooled = LoggedWorld(tmp_path, events=60, config={"EVALUATION_PROCESSES": 2})
    request = {
        "policy": "artwork",
        "candidates": ["logged", "greedy", {"name": "learned", "kind": "vw", "vw_args": "-q UA"}],
    }
    finished = run_to_the_end(pooled.client, request)
    assert finished["status"] == "done", finished["error"]
    assert finished["progress"] == 1.0
    config = dataclasses.replace(deployment(pooled.app), evaluation_processes=1)
    direct = offline.evaluate(pooled.db, config, offline.parse_spec(request))
    assert json.dumps(finished["result"]["candidates"]) == json.dumps(direct["candidates"])


@pytest.mark.parametrize("source", ["log", "dataset"])
def test_a_log_read_by_several_processes_gives_the_report_read_by_one(world, source):
    config = deployment(world.app)
    request: dict[str, Any] = {"policy": "titles", "candidates": ["logged", "uniform", "greedy"], "limit": 37}
    if source == "dataset":
        text = world.client.get("/v1/logs/export?format=jsonl&policy=titles").get_data(as_text=True)
        found = datasets.import_lines(world.db, world.app.config["DATABASE"], text.splitlines(), fmt="jsonl")
        request.update(dataset=found["id"], candidates=["logged", "uniform", "default"])
        parts = datasets.partition(world.db, found["id"], 3, limit=37)
        assert [first for _, _, first in parts] == [0, 12, 25] and parts[0][0] == EVENTS - 37
        assert parts[-1][1] == EVENTS and all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    spec = offline.parse_spec(request)
    one = offline.evaluate(world.db, dataclasses.replace(config, evaluation_processes=1), spec)
    several = offline.evaluate(world.db, dataclasses.replace(config, evaluation_processes=2), spec)
    assert one["events"] == 37 and json.dumps(one, sort_keys=True) == json.dumps(several, sort_keys=True)
