"""The VW passes of an offline evaluation, chunk by chunk, in this process or in several.

An evaluation reads a log once (``bandits.log.rounds.Spill`` keeps its chunks in a temporary file)
and then makes one pass of VW work per task over it: each fold of the cross-fitted reward model
(learn the other folds, predict this one) and each ``model`` or ``vw`` candidate (decide every
round, and for ``vw`` learn it after). Every task reads the chunks in order and writes its numbers
(a reward per action, a probability per action) to a file of its own, so that no task holds more
than one chunk of lines and the evaluation's own process holds only numbers per decision.

The tasks are independent: ``run`` gives them to a pool of processes (one per core by default; a
VW workspace learns on one core) when the log is large enough for the processes' start to pay,
and runs them one after another in this process otherwise. Both ways run the same functions on the
same files, and their results are the same to the last bit. Reading a large log is split the same
way (``ReadTask``, ``read_parts``): a run of its events per process, each into a spill file of its
own, the spill then read as one.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import vowpal_wabbit_next as vw

from bandits.errors import SpecError
from bandits.evaluate.candidates import Candidate, candidate_exploration
from bandits.log import datasets
from bandits.log.rounds import ChunkInfo, Rounds, Spill, iter_from_log
from bandits.model.exploration import SQUARECB
from bandits.model.policy import new_workspace
from bandits.model.tried import Tried
from bandits.storage import connect
from bandits.vw import features
from bandits.vw.options import learns_chosen_alone
from bandits.vw.workspace import CACHED_ACTION_LINES, TextExamples, TextLines

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)
PARALLEL_MIN_ROUNDS = 100_000  # below this, starting processes costs more than it saves (``processes`` 0)
POLL_SECONDS = 0.2  # how often the evaluation's process reads the tasks' progress


def quiet(fraction: float, stage: str) -> None:
    """A progress callback that reports nothing."""


class Source(Protocol):
    """Rounds read chunk by chunk, in order, as often as asked; ``wanted`` skips the chunks it refuses."""

    def read(self, wanted: Callable[[ChunkInfo], bool] | None = None) -> Iterator[Rounds]: ...


@dataclass(frozen=True)
class InMemory:
    """Rounds already in memory, read as one chunk."""

    rounds: Rounds

    def read(self, wanted: Callable[[ChunkInfo], bool] | None = None) -> Iterator[Rounds]:
        yield self.rounds


# ---------------------------------------------------------------- the reward model's folds


def fold_of(event_index: np.ndarray, folds: int, n_events: int) -> np.ndarray:
    """Return the fold of each round: contiguous runs of events, in time order, all rounds of an event in one."""
    return event_index * folds // n_events


def fold_events(fold: int, folds: int, n_events: int) -> tuple[int, int]:
    """Return the events ``[first, stop)`` of fold ``fold`` (those ``e`` with ``e * folds // n_events == fold``)."""
    return -(-fold * n_events // folds), -(-(fold + 1) * n_events // folds)


def _action_costs(examples: TextExamples, rounds: Rounds, i: int, *, positioned: bool = True) -> np.ndarray:
    """Return a ``--cb_adf`` workspace's cost estimate of every action of round ``i``, in the order offered.

    ``positioned`` False predicts without the slot's position (``features.without_position``), as a
    row's titles are scored when served: one prediction for the whole row.
    """
    costs = np.empty(int(rounds.offsets[i + 1] - rounds.offsets[i]))  # not rounds.sizes: O(n) per call
    example = rounds.example(i, labeled=False)
    if not positioned:
        example[0] = features.without_position(example[0])
    for index, cost in examples.predict(example):
        costs[index] = cost
    return costs


def fold_predictions(
    source: Source,
    *,
    fold: int,
    folds: int,
    n_events: int,
    rounds: int,
    args: Sequence[str],
    passes: int = 1,
    progress: Progress = quiet,
) -> Iterator[np.ndarray]:
    """Yield, chunk by chunk, the predicted reward of every action of fold ``fold``'s rounds, flat.

    The predictions are a VW squared-loss regressor's (options ``args``), trained ``passes`` times
    over the rounds of the other folds in time order, on the shared and action features of the
    logged action. ``rounds`` is how many rounds the source holds (for progress only).

    Raises:
        SpecError: Vowpal Wabbit refuses the options.
    """
    try:
        regressor = TextLines(vw.Workspace(list(args)))
    except (RuntimeError, ValueError) as exc:
        raise SpecError(f"vw_args: Vowpal Wabbit refused the reward model's options {list(args)}: {exc}") from None
    first, stop = fold_events(fold, folds, n_events)
    stage = f"reward model: fold {fold + 1} of {folds}"
    work, done = max(1.0, float(passes * rounds + (stop - first))), 0
    for _ in range(passes):
        for chunk in source.read(lambda info: info.first_event < first or info.last_event >= stop):
            for i in np.flatnonzero(fold_of(chunk.event_index, folds, n_events) != fold).tolist():
                action = chunk.actions(i)[int(chunk.chosen[i])]
                regressor.learn(features.regression_line(chunk.shared[i], action, float(chunk.reward[i])))
            done += len(chunk)
            progress(done / work, stage)
    for chunk in source.read(lambda info: info.first_event < stop and info.last_event >= first):
        test = np.flatnonzero(fold_of(chunk.event_index, folds, n_events) == fold)
        q = np.empty(int((chunk.offsets[test + 1] - chunk.offsets[test]).sum()))
        at = 0
        for i in test.tolist():
            shared = chunk.shared[i]
            for action in chunk.actions(i):
                q[at] = regressor.predict(features.regression_line(shared, action))
                at += 1
        done += test.size
        progress(done / work, stage)
        yield q


# ---------------------------------------------------------------- candidates' distributions


class Trained(NamedTuple):
    """A ``vw`` candidate's model after its pass: VW's bytes and its counts of the actions it learned."""

    blob: bytes
    tried: str | None  # bandits.model.tried.Tried.dumps()


def candidate_pmf(
    source: Source,
    candidate: Candidate,
    *,
    rounds: int,
    model_blob: bytes | None = None,
    model_examples: int = 0,
    model_tried: str | None = None,
    trained: dict[str, Trained] | None = None,
    progress: Progress = quiet,
) -> Iterator[np.ndarray]:
    """Yield, chunk by chunk, a ``model`` or ``vw`` candidate's exploring distribution over every action, flat.

    A ``model`` candidate decides with its stored model (``model_blob``, which learned
    ``model_examples`` examples and the actions ``model_tried`` counts) and learns nothing. A ``vw``
    candidate starts from nothing and learns each event's labelled rounds after deciding them
    (progressive validation: no round is decided by a model that saw it); once it learned every
    round, its model and counts are put in ``trained`` under the candidate's name, if given.
    """
    if candidate.kind == "model":
        if model_blob is None:
            raise ValueError("a model candidate needs the model's bytes")
        workspace, learned, learn = new_workspace([], model_data=model_blob), model_examples, False
        tried = Tried.loads(model_tried)
    elif candidate.kind == "vw":
        workspace, learned, learn = new_workspace(list(candidate.vw_args)), 0, True
        tried = Tried()
    else:
        raise ValueError(f"candidate {candidate.name!r} of kind {candidate.kind} has no model to run")
    chosen_alone = learn and learns_chosen_alone(candidate.vw_args)
    examples = TextExamples(workspace, cached_actions=CACHED_ACTION_LINES, chosen_alone=chosen_alone)
    stage = f"candidate {candidate.name}"
    bonus = candidate.exploration_bonus > 0.0
    done = 0
    explorer = candidate_exploration(candidate, learned)
    changing = learn and (candidate.exploration == SQUARECB or candidate.epsilon_decay_after > 0)
    for chunk in source.read():
        pmf = np.empty(int(chunk.offsets[-1]))
        for event in chunk.events():
            if changing:
                explorer = candidate_exploration(candidate, learned + done)
            for i in event:
                start, stop = chunk.offsets[i], chunk.offsets[i + 1]
                # A bonus is not the same for every action when all costs shift, as the slot's position shifts
                # them: it is reckoned on the costs without the position, as serving a row reckons it.
                costs = _action_costs(examples, chunk, i, positioned=not bonus).tolist()
                if bonus:
                    costs = explorer.scored(costs, None if tried is None else tried.of(chunk.actions(i)))
                pmf[start:stop] = explorer.pmf(costs)
            if learn:
                for i in event:
                    example = chunk.example(i, labeled=True)
                    examples.learn(example)
                    if tried is not None:  # counted whatever the bonus: applied, the model keeps them
                        tried.learn(example)
            done += len(event)
            if done % 1000 < len(event):
                progress(done / max(1, rounds), stage)
        yield pmf
    if learn and trained is not None:
        trained[candidate.name] = Trained(workspace.serialize(), tried.dumps() if tried is not None else None)


# ---------------------------------------------------------------- running the passes


@dataclass(frozen=True)
class FoldTask:
    """One fold of the reward model: its predictions go to ``out``."""

    out: str
    fold: int
    folds: int
    n_events: int
    rounds: int
    args: tuple[str, ...]
    passes: int = 1

    weight = 2.0  # a share of the work: learning the other folds and predicting this one

    def check(self) -> None:
        """Raise ``SpecError`` now if Vowpal Wabbit refuses the options, before any pass starts."""
        try:
            vw.Workspace(list(self.args))
        except (RuntimeError, ValueError) as exc:
            raise SpecError(
                f"vw_args: Vowpal Wabbit refused the reward model's options {list(self.args)}: {exc}"
            ) from None

    def __call__(self, source: Source, progress: Progress) -> Trained | None:
        with open(self.out, "wb") as sink:
            for q in fold_predictions(
                source,
                fold=self.fold,
                folds=self.folds,
                n_events=self.n_events,
                rounds=self.rounds,
                args=self.args,
                passes=self.passes,
                progress=progress,
            ):
                sink.write(q.tobytes())
        return None


@dataclass(frozen=True)
class CandidateTask:
    """A ``model`` or ``vw`` candidate: its distribution goes to ``out``; a ``vw`` one returns its model."""

    out: str
    candidate: Candidate
    rounds: int
    model_blob: bytes | None = None
    model_examples: int = 0
    model_tried: str | None = None

    weight = 3.0  # deciding every round (all its actions), and for vw learning it: more than a fold

    def check(self) -> None:
        """Raise now if the candidate's model cannot be made, before any pass starts."""
        if self.candidate.kind == "vw":
            new_workspace(list(self.candidate.vw_args))
        elif self.model_blob is None:
            raise ValueError("a model candidate needs the model's bytes")

    def __call__(self, source: Source, progress: Progress) -> Trained | None:
        trained: dict[str, Trained] = {}
        with open(self.out, "wb") as sink:
            for pmf in candidate_pmf(
                source,
                self.candidate,
                rounds=self.rounds,
                model_blob=self.model_blob,
                model_examples=self.model_examples,
                model_tried=self.model_tried,
                trained=trained,
                progress=progress,
            ):
                sink.write(pmf.tobytes())
        return trained.get(self.candidate.name)


NUMBERS = {  # what an evaluation keeps of every decision it reads, and how
    "event_index": np.int32,
    "created_at": np.float64,
    "sizes": np.int32,
    "chosen": np.int32,
    "pscore": np.float64,
    "reward": np.float64,
}


def numbers_of(chunk: Rounds) -> dict[str, np.ndarray]:
    """Return a chunk's ``NUMBERS``."""
    return {
        name: (chunk.sizes if name == "sizes" else getattr(chunk, name)).astype(dtype, copy=False)
        for name, dtype in NUMBERS.items()
    }


def spill_numbers(
    chunks: Iterable[Rounds],
    spill: Spill,
    *,
    progress: Progress = quiet,
    each: Callable[[Rounds], None] | None = None,
) -> dict[str, np.ndarray]:
    """Write every chunk to ``spill`` and return the ``NUMBERS`` of all their rounds; ``each`` sees every chunk."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in NUMBERS}
    read = 0
    for chunk in chunks:
        for name, values in numbers_of(chunk).items():
            parts[name].append(values)
        if each is not None:
            each(chunk)
        spill.write(chunk)
        read += len(chunk)
        progress(0.5, f"reading the log: {read} decisions")
    found = {}
    for name, dtype in NUMBERS.items():  # one column at a time, its parts freed as it is joined
        pieces = parts.pop(name)
        found[name] = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
    return found


@dataclass(frozen=True)
class ReadTask:
    """One part of the log read into a spill file of its own (``out``), its numbers to files ``<numbers>.<name>``.

    ``source`` says what to read: ``("log", policy, aggregation, default_reward, reward_values, seqs, first)``
    or ``("dataset", dataset_id, since, until, limit, low, high, first)``; ``database`` is the store's
    path or URL, which the part's own process connects to. The numbers are appended a chunk at a
    time, so that a part holds one chunk, not its share of the log.
    """

    out: str
    numbers: str
    database: str
    source: tuple[Any, ...]

    weight = 1.0

    def check(self) -> None:
        pass

    def __call__(self, spill: Source, progress: Progress) -> Trained | None:
        db = connect(self.database)
        written = Spill(self.out)
        sinks = {name: open(f"{self.numbers}.{name}", "wb") for name in NUMBERS}
        try:
            chunks: Iterable[Rounds]
            if self.source[0] == "log":
                _, policy, aggregation, default_reward, reward_values, seqs, first = self.source
                chunks = iter_from_log(
                    db,
                    policy=policy,
                    aggregation=aggregation,
                    default_reward=default_reward,
                    reward_values=reward_values,
                    part=(seqs, first),
                )
            else:
                _, dataset_id, since, until, limit, low, high, first = self.source
                chunks = datasets.iter_load(
                    db, dataset_id, since=since, until=until, limit=limit, details=False, part=(low, high, first)
                )
            read = 0
            for chunk in chunks:
                for name, values in numbers_of(chunk).items():
                    sinks[name].write(values.tobytes())
                written.write(chunk)
                read += len(chunk)
                progress(0.5, f"reading the log: {read} decisions")
        finally:
            for sink in sinks.values():
                sink.close()
            db.close()
        infos = [(c.rounds, c.actions, c.first_event, c.last_event) for c in written.chunks]
        np.asarray(infos, dtype=np.int64).reshape(-1, 4).tofile(f"{self.numbers}.chunks")
        return None


def read_parts(
    tasks: Sequence[ReadTask], *, processes: int, progress: Progress = quiet
) -> tuple[Spill, dict[str, np.ndarray]]:
    """Read the parts (in a pool when ``processes`` is above 1); return them as one spill, and their numbers."""
    run(tasks, Spill(tasks[0].out), processes=processes, progress=progress)
    spill = Spill(tasks[-1].out, before=[task.out for task in tasks[:-1]])
    for task in tasks:
        rows = np.fromfile(f"{task.numbers}.chunks", dtype=np.int64).reshape(-1, 4)
        spill.chunks += [ChunkInfo(*map(int, row)) for row in rows]
    columns = {}
    for name, dtype in NUMBERS.items():  # read straight into one array per column: no part held twice
        files = [Path(f"{task.numbers}.{name}") for task in tasks]
        itemsize = np.dtype(dtype).itemsize
        column = np.empty(sum(path.stat().st_size for path in files) // itemsize, dtype=dtype)
        at = 0
        for path in files:
            count = path.stat().st_size // itemsize
            with path.open("rb") as source:
                if source.readinto(column[at : at + count].data.cast("B")) != count * itemsize:
                    raise OSError(f"{path}: shorter than it was a moment ago")
            at += count
        columns[name] = column
    return spill, columns


Task = FoldTask | CandidateTask | ReadTask

_progress_queue: Any = None  # in a pool's process: where its tasks report progress


def _adopt(progress_queue: Any) -> None:
    """Start a pool's process: keep the queue its tasks report on."""
    global _progress_queue
    _progress_queue = progress_queue


def _pooled(index: int, task: Task, files: list[str]) -> Trained | None:
    """Run one task in a pool's process, reporting its progress as ``(index, fraction, stage)``."""

    def progress(fraction: float, stage: str) -> None:
        _progress_queue.put((index, fraction, stage))

    return task(Spill(files[-1], before=files[:-1]), progress)


def processes_for(setting: int, rounds: int, tasks: int) -> int:
    """Return how many processes run ``tasks`` passes over ``rounds`` rounds, by the ``EVALUATION_PROCESSES`` setting.

    0 (the default) is one per core the process may run on, when the log holds at least
    ``PARALLEL_MIN_ROUNDS`` rounds, and none (this process) below; 1 is always this process; a
    larger number is a pool of that many processes at most, whatever the log's size.
    """
    if setting == 0:
        setting = len(os.sched_getaffinity(0)) if rounds >= PARALLEL_MIN_ROUNDS else 1
    return max(1, min(setting, tasks))


def run(tasks: Sequence[Task], spill: Spill, *, processes: int, progress: Progress = quiet) -> list[Trained | None]:
    """Run every task over ``spill`` and return their results in order; ``progress`` sees the work of all of them.

    With ``processes`` above 1 the tasks run in a pool of that many fresh processes (spawned, not
    forked: the evaluation's process may hold threads and database connections); the first task to
    fail stops the others and its error is raised here.
    """
    weights = np.asarray([task.weight for task in tasks], dtype=float)
    total = max(float(weights.sum()), 1e-9)
    fractions = np.zeros(len(tasks))

    def report(index: int, fraction: float, stage: str) -> None:
        fractions[index] = min(1.0, max(0.0, fraction))
        progress(float(fractions @ weights) / total, stage)

    for task in tasks:
        task.check()
    if processes <= 1:
        return [task(spill, _reporter(report, index)) for index, task in enumerate(tasks)]
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    with ProcessPoolExecutor(
        max_workers=processes, mp_context=context, initializer=_adopt, initargs=(reports,)
    ) as pool:
        # The heaviest first: a candidate's pass takes longer than a fold's, and the folds fill in beside it.
        order = sorted(range(len(tasks)), key=lambda index: -tasks[index].weight)
        files = [str(path) for path in spill.files]
        submitted = {index: pool.submit(_pooled, index, tasks[index], files) for index in order}
        futures: list[Future[Trained | None]] = [submitted[index] for index in range(len(tasks))]
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_EXCEPTION)
                _drain(reports, report)
                if any(future.exception() is not None for future in finished):
                    break
        finally:
            for future in pending:
                future.cancel()
        _drain(reports, report)
    failed = [future for future in futures if not future.cancelled() and future.exception() is not None]
    if failed:
        raise failed[0].exception()  # type: ignore[misc]
    return [future.result() for future in futures]


def _reporter(report: Callable[[int, float, str], None], index: int) -> Progress:
    """Return task ``index``'s progress callback."""
    return lambda fraction, stage: report(index, fraction, stage)


def _drain(reports: Any, report: Callable[[int, float, str], None]) -> None:
    """Pass on every progress report waiting in ``reports``."""
    while True:
        try:
            index, fraction, stage = reports.get_nowait()
        except queue.Empty:
            return
        report(index, fraction, stage)


class Floats:
    """Reads the float64 numbers of files written one after another (a task each) as one run, a block at a time."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self.paths = list(paths)
        self.handle: Any = None

    def __enter__(self) -> Floats:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()

    def take(self, count: int) -> np.ndarray:
        """Return the next ``count`` numbers; raise ``EOFError`` if the files hold fewer."""
        parts: list[np.ndarray] = []
        wanted = count
        while wanted > 0:
            if self.handle is None:
                if not self.paths:
                    raise EOFError(f"the passes' files hold {count - wanted} of {count} numbers still to read")
                self.handle = open(self.paths.pop(0), "rb")
            part = np.fromfile(self.handle, dtype=np.float64, count=wanted)
            if part.size < wanted:
                self.handle.close()
                self.handle = None
            parts.append(part)
            wanted -= part.size
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
