"""Learning quality of a peer: MABWiser's bandits on the simulated audience that learning_bench measures Marquee on.

Usage (from the repository root, after ``.venv/bin/pip install -r bench/requirements.txt``):

    python -m bench.peer_bench [--impressions 100000] [--world audience] [--titles N] [--seeds 1 2 3]
                               [--only NAME ...] [--reveal segment tastes]

(``--seed 1`` is the same as ``--seeds 1``; ``--only`` runs the configurations it names alone;
``--reveal`` adds to every viewer's context what no request carries, their segment and their genre
tastes as numbers, as ``bench.direct_learning --reveal`` does for Marquee.) ``--world`` names the
shape of the simulated world (a key of ``bandits.simulator.SHAPES``: audience, artwork, long-tail,
drift; see that module's docstring). Each seed's world is built as ``bench/learning_bench.py``
builds it: a scratch service on the demo catalog of the shape's size (``--titles`` titles instead
if given; the shape's artworks per title either way) (``service.simulate.scratch_service``, in a
temporary folder) gives the titles, their artworks and the visual features measured on them, and
``World.build(catalog, seed=seed, shape=world)`` makes the audience from that catalog and the seed.
The service does nothing else: the peer policies run in this process, without HTTP.

Method, per configuration and seed:

* Arms are (title, artwork) pairs, every artwork of every title. A row of four distinct titles is
  filled from the policy's per-arm scores: each title wears its best-scoring artwork, and the titles
  with the best such scores fill the slots, best first (ties broken at random). Titles and artworks
  that have not arrived yet in the world are not offered.
* The context of a contextual policy is a fixed numeric vector made from the viewer's features (what a
  rank request would send): a string is a one-hot ``key=value``, a boolean too, a list of strings a
  multi-hot, a number its value scaled to [0, 1] over the audience. A categorical with more than
  ``MAX_CATEGORIES`` values over the audience (the long-tail world's zip codes) is hashed into
  ``HASHED_COLUMNS`` columns, as a hashing learner would (one column per value would make LinUCB's
  matrices too large to invert per batch); a feature some viewers do not send gets a column that is 1
  when it is missing (so a missing number is not read as the audience's lowest). The vocabulary is
  built once from every viewer of the world.
* ``LinUCB``: MABWiser's ridge regression per arm; ``predict_expectations`` gives each arm's upper
  confidence bound for the viewer, and those rank the arms. It explores only through the bound.
* ``LinTS``: MABWiser's Thompson sampling over the same per-arm ridge regressions: each arm's score
  for the viewer is a draw from its posterior (``alpha`` scales its spread).
* ``EpsilonGreedy per segment``: the audience split once into 8 segments by k-means over every
  viewer's context vector (scikit-learn, fit when the world is made, as a team segments its users),
  and one context-free MABWiser ``EpsilonGreedy`` per segment, each learning from its own viewers'
  slots; exploration per slot as below. (MABWiser's own ``Clusters`` neighbourhood policy refits
  k-means on every context seen at each batch, which made 100,000 impressions take hours.)
* ``EpsilonGreedy``: MABWiser's per-arm mean reward, no context. MABWiser's own epsilon explores per
  decision: with probability epsilon one ``predict_expectations`` call returns random values for every
  arm, which makes a whole row random. To explore per slot as Marquee does, the main configuration
  sets the library's epsilon to 0 (its expectations are then the learned means) and the benchmark
  explores: with probability 0.1, a slot takes a title drawn uniformly from those not yet in the row,
  in an artwork drawn uniformly from its offered ones. A second configuration keeps the library's
  epsilon of 0.1, per row, for comparison.
* Learning follows Marquee's benchmark: every shown slot gives (arm, reward, context), the reward 1.0
  if the viewer played the title and 0.0 otherwise, and the policy learns them every 100 rows
  (``partial_fit``). The first ``fit`` is on an empty batch: the arms are declared when the MAB is
  made, and that fit gives each its prior (LinUCB: A = I, beta = 0; EpsilonGreedy: mean 0), so the
  rows before the first batch are random.
* Scoring is ``service.simulate.drive``'s: viewers and their responses from ``default_rng(seed)``, the
  exact expected plays of each row shown (``World.row_value``), next to the oracle's row and a uniform
  row (from its own ``default_rng([seed, 1])``) for the same viewer at the same moment, per impression
  over the window of 1,000 impressions ending at each checkpoint. ``default artwork`` is the peer's
  titles, each in its first artwork.
* After each run, the gap to the oracle is split as learning_bench's ``gap_breakdown`` splits
  Marquee's, on the same sample of 2,000 viewers: exploration (greedy rows minus the rows the policy
  shows; greedy is LinUCB's ridge estimate without its bound, EpsilonGreedy's means without epsilon),
  artwork, order and titles.

Results print in learning_bench's format (lift over uniform rows, share of the oracle's lift over
them; with several seeds the means and the range of the share) as a Markdown table and are saved
under bench/results/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import numpy as np
from mabwiser.mab import MAB, LearningPolicy
from sklearn.cluster import KMeans

from bandits.simulator import SHAPES, Viewer, World
from bench.report import chosen, machine, report
from service import create_app
from service.simulate import Point, baseline_rows, catalog_from_service, scratch_service


@dataclass(frozen=True)
class Configuration:
    """A MABWiser learning policy, and the share of slots the benchmark fills at random around it."""

    policy: Any  # a mabwiser.mab.LearningPolicy
    epsilon: float = 0.0  # per slot: a uniformly random remaining title, in a random artwork
    segments: int = 0  # above 0: a context-free policy per segment, the segments k-means clusters of the audience


CONFIGURATIONS: dict[str, Configuration] = {
    "LinUCB (alpha 1.0)": Configuration(LearningPolicy.LinUCB(alpha=1.0)),
    "LinUCB (alpha 0.1)": Configuration(LearningPolicy.LinUCB(alpha=0.1)),
    "LinTS (alpha 1.0)": Configuration(LearningPolicy.LinTS(alpha=1.0)),
    "LinTS (alpha 0.1)": Configuration(LearningPolicy.LinTS(alpha=0.1)),
    "EpsilonGreedy (epsilon 0.1 per slot)": Configuration(LearningPolicy.EpsilonGreedy(epsilon=0.0), epsilon=0.1),
    "EpsilonGreedy per segment (8 clusters, epsilon 0.1 per slot)": Configuration(
        LearningPolicy.EpsilonGreedy(epsilon=0.0), epsilon=0.1, segments=8
    ),
    "EpsilonGreedy (epsilon 0.1 per row, MABWiser's own)": Configuration(LearningPolicy.EpsilonGreedy(epsilon=0.1)),
}
CHECKPOINTS = (5_000, 20_000, 100_000)
WINDOW = 1000
SLOTS = 4
LEARN_EVERY = 100  # rows
POLICIES = ("peer", "oracle", "uniform", "default artwork")
MAX_CATEGORIES = 50  # values of a categorical over the audience above which it is hashed
HASHED_COLUMNS = 16  # columns of a hashed categorical
MISSING = "<missing>"  # the value of a feature's column that says the viewer did not send it
Row = list[tuple[str, str]]  # (title id, artwork id), slot 0 first


@dataclass
class ContextEncoder:
    """Turns a viewer's features into a fixed numeric vector; the vocabulary comes from the whole audience."""

    columns: dict[str, int] = field(default_factory=dict)  # "key=value" or numeric "key" -> column
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # numeric key -> (low, high)
    hashed: set[str] = field(default_factory=set)  # categorical keys hashed into "key=#0" to "key=#15"
    optional: list[str] = field(default_factory=list)  # keys some viewers lack: "key=<missing>" says so

    @classmethod
    def from_viewers(cls, viewers: Iterable[Viewer]) -> ContextEncoder:
        """Return the encoder for every feature value that ``viewers`` have."""
        categories: dict[str, set[str]] = {}  # categorical key -> its "key=value" names
        ranges: dict[str, tuple[float, float]] = {}
        sent: dict[str, int] = {}  # key -> viewers who send it
        audience = 0
        for viewer in viewers:
            audience += 1
            for key, value in viewer.features.items():
                sent[key] = sent.get(key, 0) + 1
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    low, high = ranges.get(key, (float(value), float(value)))
                    ranges[key] = (min(low, float(value)), max(high, float(value)))
                else:
                    categories.setdefault(key, set()).update(_categories(key, value))
        hashed = {key for key, names in categories.items() if len(names) > MAX_CATEGORIES}
        optional = sorted(key for key, count in sent.items() if count < audience)
        names = set(ranges) | {f"{key}={MISSING}" for key in optional}
        for key, values in categories.items():
            names.update({f"{key}=#{bucket}" for bucket in range(HASHED_COLUMNS)} if key in hashed else values)
        return cls(
            columns={name: i for i, name in enumerate(sorted(names))}, ranges=ranges, hashed=hashed, optional=optional
        )

    def encode(self, features: Mapping[str, Any]) -> np.ndarray:
        """Return the vector of ``features``, shape (columns,); values outside the vocabulary are left out."""
        vector = np.zeros(len(self.columns))
        for key, value in features.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if key in self.ranges:
                    low, high = self.ranges[key]
                    vector[self.columns[key]] = (float(value) - low) / (high - low) if high > low else 0.0
            elif key in self.hashed:
                for name in _categories(key, value):
                    vector[self.columns[f"{key}=#{zlib.crc32(name.encode()) % HASHED_COLUMNS}"]] = 1.0
            else:
                for name in _categories(key, value):
                    if name in self.columns:
                        vector[self.columns[name]] = 1.0
        for key in self.optional:
            if key not in features:
                vector[self.columns[f"{key}={MISSING}"]] = 1.0
        return vector


def _categories(key: str, value: Any) -> list[str]:
    """Return the ``key=value`` names of a categorical feature: a string, a boolean or a list of strings."""
    if isinstance(value, bool):
        return [f"{key}={'true' if value else 'false'}"]
    if isinstance(value, str):
        return [f"{key}={value}"]
    return [f"{key}={item}" for item in value]


class Peer:
    """A MABWiser policy over (title, artwork) arms that fills rows of distinct titles and learns in batches."""

    def __init__(self, world: World, encoder: ContextEncoder, configuration: Configuration, *, seed: int) -> None:
        self.world = world
        self.encoder = encoder
        self.epsilon = configuration.epsilon
        self.arms = [(title.id, artwork.id) for title in world.titles.values() for artwork in title.artworks]
        self.arm_of = {arm: i for i, arm in enumerate(self.arms)}
        self.rng = np.random.default_rng([seed, 3])  # ties and per-slot exploration
        self.segments = configuration.segments
        if self.segments:
            # MABWiser's own Clusters refits k-means on every context seen at each batch and copies every
            # cluster's policy at each prediction, which grows without bound over 25,000 rows. A team would
            # segment its audience once: k-means over every viewer's context, then one policy per segment.
            contexts = np.vstack([encoder.encode(viewer.features) for viewer in world.viewers])
            self.kmeans = KMeans(n_clusters=self.segments, n_init=10, random_state=seed).fit(contexts)
            self.mabs = [
                MAB(list(range(len(self.arms))), configuration.policy, seed=seed + k) for k in range(self.segments)
            ]
        else:
            self.mabs = [MAB(list(range(len(self.arms))), configuration.policy, seed=seed)]
        self.mab = self.mabs[0]
        for mab in self.mabs:  # declare every arm with its prior: MABWiser refuses to predict before the first fit
            no_contexts = np.empty((0, len(encoder.columns))) if mab.is_contextual else None
            mab.fit(np.empty(0, dtype=int), np.empty(0), no_contexts)

    @property
    def contextual(self) -> bool:
        """Whether the policy scores arms for a viewer's context."""
        return bool(self.mab.is_contextual)

    def context(self, viewer: Viewer) -> np.ndarray:
        """Return the viewer's context vector, shape (columns,)."""
        return self.encoder.encode(viewer.features)

    def scores(self, context: np.ndarray, *, explore: bool = True) -> np.ndarray:
        """Return the policy's score of every arm for a context, shape (arms,).

        ``explore=False`` gives the estimates without exploration, for the gap breakdown. MABWiser has no
        public switch for that, so they are read from its models: LinUCB's ridge estimate ``x . beta``
        without the bound, EpsilonGreedy's mean rewards without epsilon.
        """
        if self.segments:  # the segment's context-free policy, whose library epsilon is 0: its means
            mab = self.mabs[int(self.kmeans.predict(context.reshape(1, -1))[0])]
            expectations = mab.predict_expectations()
            return np.array([expectations[i] for i in range(len(self.arms))], dtype=float)
        if not explore:
            model = self.mab._imp
            if self.contextual:
                return np.array([float(context @ model.arm_to_model[i].beta) for i in range(len(self.arms))])
            return np.array([model.arm_to_expectation[i] for i in range(len(self.arms))], dtype=float)
        expectations = self.mab.predict_expectations(context.reshape(1, -1) if self.contextual else None)
        return np.array([expectations[i] for i in range(len(self.arms))], dtype=float)

    def row(self, context: np.ndarray, *, slots: int, at: int, explore: bool = True) -> Row:
        """Return a row of ``slots`` distinct titles offered at impression ``at``, for the context, slot 0 first."""
        scores = self.scores(context, explore=explore)
        available = self.world.available(at)
        offered = {(title_id, artwork.id) for title_id in available for artwork in self.world.artworks(title_id, at)}
        ranked: Row = []  # each title in its best artwork, best first
        seen: set[str] = set()
        for i in np.lexsort((self.rng.random(len(scores)), -scores)):  # by score, ties at random
            if self.arms[i] in offered and self.arms[i][0] not in seen:
                seen.add(self.arms[i][0])
                ranked.append(self.arms[i])
        row: Row = []
        shown: set[str] = set()
        for _ in range(min(slots, len(ranked))):
            if explore and self.epsilon > 0 and self.rng.random() < self.epsilon:
                remaining = [title_id for title_id in available if title_id not in shown]
                title_id = remaining[int(self.rng.integers(len(remaining)))]
                artworks = self.world.artworks(title_id, at)
                pick = (title_id, artworks[int(self.rng.integers(len(artworks)))].id)
            else:
                pick = next(arm for arm in ranked if arm[0] not in shown)
            row.append(pick)
            shown.add(pick[0])
        return row

    def learn(self, shown: Sequence[tuple[str, str]], rewards: Sequence[float], contexts: Sequence[np.ndarray]) -> None:
        """Update the policy with the slots shown since the last update, their rewards and the viewers' contexts."""
        decisions = np.array([self.arm_of[arm] for arm in shown], dtype=int)
        values = np.array(rewards, dtype=float)
        if self.segments:
            segment = self.kmeans.predict(np.vstack(contexts))
            for k, mab in enumerate(self.mabs):
                if (segment == k).any():
                    mab.partial_fit(decisions[segment == k], values[segment == k])
            return
        self.mab.partial_fit(decisions, values, np.vstack(contexts) if self.contextual else None)


def run(
    world: World,
    peer: Peer,
    *,
    impressions: int,
    slots: int = SLOTS,
    seed: int = 0,
    window: int = WINDOW,
    learn_every: int = LEARN_EVERY,
) -> list[Point]:
    """Show about ``impressions`` impressions of the peer's rows to simulated viewers; return the learning curve.

    The loop is ``service.simulate.drive``'s, with the peer in place of the service: the same random
    streams, the same baselines and the same windows.
    """
    rng = np.random.default_rng(seed)  # the viewers and their responses
    baseline_rng = np.random.default_rng([seed, 1])  # the uniform baseline's rows
    points: list[Point] = []
    window_totals = {name: 0.0 for name in POLICIES}
    batch: tuple[list[tuple[str, str]], list[float], list[np.ndarray]] = ([], [], [])
    clicks = plays = shown = done = rows = 0
    while done < impressions:
        viewer = world.draw_viewer(rng)
        context = peer.context(viewer)
        row = peer.row(context, slots=slots, at=done)
        for outcome in world.respond(viewer, row, rng, at=done):
            clicks += outcome.clicked
            plays += outcome.played
            batch[0].append((outcome.title_id, outcome.artwork_id))
            batch[1].append(1.0 if outcome.played else 0.0)
            batch[2].append(context)
        baselines = baseline_rows(world, viewer, row, at=done, reward="play", rng=baseline_rng)
        for name, candidate in (("peer", row), *baselines.items()):
            window_totals[name] += world.row_value(viewer, candidate, at=done, reward="play")
        shown += len(row)
        done += len(row)
        rows += 1
        if rows % learn_every == 0:
            peer.learn(*batch)
            batch = ([], [], [])
        if shown >= window or done >= impressions:
            points.append(
                Point(
                    impressions=done,
                    clicks=clicks,
                    plays=plays,
                    shown=shown,
                    expected={name: total / shown for name, total in window_totals.items()},
                )
            )
            window_totals = {name: 0.0 for name in window_totals}
            clicks = plays = shown = 0
    return points


def gap_breakdown(world: World, peer: Peer, *, at: int, seed: int, viewers: int = 2000) -> dict[str, float]:
    """Split the trained peer's shortfall from the oracle, per impression, as learning_bench splits Marquee's.

    The same sampled viewers (learning_bench's sample for the seed) are shown the peer's exploring
    rows, its greedy rows, those titles each in its best artwork, then in the best order, then the
    oracle's row; each step's gain is the part of the gap it closes (see ``learning_bench.gap_breakdown``).
    """
    rng = np.random.default_rng([seed, 2])
    sample = [world.draw_viewer(rng) for _ in range(viewers)]

    def value(rows: Sequence[Row]) -> float:
        return float(np.mean([world.row_value(v, row, at=at) for v, row in zip(sample, rows)])) / SLOTS

    exploring = [peer.row(peer.context(v), slots=SLOTS, at=at) for v in sample]
    greedy = [peer.row(peer.context(v), slots=SLOTS, at=at, explore=False) for v in sample]
    dressed = [[(t, world.best_artwork(v, t, at=at)) for t, _ in row] for v, row in zip(sample, greedy)]
    ordered = [world.oracle(v, slots=SLOTS, at=at, candidates=[t for t, _ in row]) for v, row in zip(sample, greedy)]
    oracle = [world.oracle(v, slots=SLOTS, at=at) for v in sample]
    values = [value(rows) for rows in (exploring, greedy, dressed, ordered, oracle)]
    return {
        "exploring": values[0],
        "oracle": values[4],
        "exploration": values[1] - values[0],
        "artwork": values[2] - values[1],
        "order": values[3] - values[2],
        "titles": values[4] - values[3],
    }


@dataclass
class Runs:
    """One configuration's results over the seeds."""

    at: dict[int, list[dict[str, float]]] = field(default_factory=dict)  # checkpoint -> expected per seed
    gaps: list[dict[str, float]] = field(default_factory=list)
    baselines: list[dict[str, float]] = field(default_factory=list)  # expected at the end, per seed
    seconds: float = 0.0

    def add(self, points: Sequence[Point], checkpoints: Iterable[int]) -> None:
        """Record a run's expected rewards at the checkpoints (the window nearest to each) and at the end."""
        at = {point.impressions: point.expected for point in points}
        for checkpoint in checkpoints:
            self.at.setdefault(checkpoint, []).append(at[min(at, key=lambda n: abs(n - checkpoint))])
        self.baselines.append(points[-1].expected)

    def cells(self) -> str:
        """Return learning_bench's cells: mean expected plays, lift over random, share of the oracle's lift (range)."""
        out = []
        for checkpoint, runs in self.at.items():
            shares = [(e["peer"] - e["uniform"]) / (e["oracle"] - e["uniform"]) for e in runs]
            lift = np.mean([e["peer"] / e["uniform"] - 1 for e in runs])
            spread = f" [{min(shares):.0%} to {max(shares):.0%}]" if len(runs) > 1 else ""
            out.append(
                f"{checkpoint // 1000}k: {np.mean([e['peer'] for e in runs]):.3f} "
                f"(+{lift:.0%} over random, {np.mean(shares):.0%}{spread} of oracle)"
            )
        return "; ".join(out) + f"; {self.seconds / len(self.baselines):.0f} s a run"

    def gap(self) -> str:
        """Return the mean gap to the oracle at the end and its parts."""
        gap = {key: float(np.mean([g[key] for g in self.gaps])) for key in self.gaps[0]}
        return (
            f"{gap['oracle'] - gap['exploring']:.4f} plays per impression = titles {gap['titles']:.4f} + order "
            f"{gap['order']:.4f} + artwork {gap['artwork']:.4f} + exploration {gap['exploration']:.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=100_000)
    parser.add_argument("--world", default="audience", choices=list(SHAPES), help="the shape of the simulated world")
    parser.add_argument("--titles", type=int, default=None, help="demo catalog titles (default: the world's)")
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=[1])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these configurations (by name)")
    parser.add_argument(
        "--reveal", nargs="*", choices=("segment", "tastes"), default=[], help="add to every context what none carries"
    )
    args = parser.parse_args()
    configurations = chosen(CONFIGURATIONS, args.only, parser)
    shape = SHAPES[args.world]
    titles = shape.titles if args.titles is None else args.titles
    checkpoints = [c for c in CHECKPOINTS if c <= args.impressions]
    result: dict[str, Any] = {
        "command": (
            f"python -m bench.peer_bench --impressions {args.impressions} --world {args.world} "
            f"--titles {titles} --seeds {' '.join(map(str, args.seeds))}"
            + (f" --reveal {' '.join(args.reveal)}" if args.reveal else "")
        ),
        "world": f"{args.world}: {shape.description}",
        "machine": machine(f"NumPy {np.__version__}", f"MABWiser {version('mabwiser')}"),
        "date": time.strftime("%Y-%m-%d"),
    }
    runs = {name: Runs() for name in configurations}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="marquee-peer-") as folder:
            transport, _ = scratch_service(
                folder, create_app=create_app, seed=seed, titles=titles, artworks_per_title=shape.artworks_per_title
            )
            world = World.build(
                catalog_from_service(transport),
                seed=seed,
                shape=args.world,
                reveal_segment="segment" in args.reveal,
                reveal_tastes="tastes" in args.reveal,
            )
        encoder = ContextEncoder.from_viewers(world.viewers)
        arms = sum(len(title.artworks) for title in world.titles.values())
        print(
            f"{args.world} world, seed {seed}: {arms} arms, {len(encoder.columns)} context columns",
            file=sys.stderr,
            flush=True,
        )
        for name, configuration in configurations.items():
            peer = Peer(world, encoder, configuration, seed=seed)
            started = time.perf_counter()
            points = run(world, peer, impressions=args.impressions, seed=seed)
            runs[name].seconds += time.perf_counter() - started
            runs[name].add(points, checkpoints)
            runs[name].gaps.append(gap_breakdown(world, peer, at=args.impressions, seed=seed))
            print(f"seed {seed}, {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    keys: dict[str, int] = {}  # feature -> its columns
    for column in encoder.columns:
        keys[column.split("=")[0]] = keys.get(column.split("=")[0], 0) + 1
    result["arms and context (last seed)"] = (
        f"{arms} (title, artwork) pairs of {len(world.titles)} titles; {len(encoder.columns)} context columns: "
        + ", ".join(f"{key} {count}" for key, count in keys.items())
    )
    for name, configuration_runs in runs.items():
        result[name] = configuration_runs.cells()
        result[f"{name}: gap to the oracle at the end"] = configuration_runs.gap()
    # The viewers drawn depend on the outcomes of the rows shown, so each configuration has its own baselines.
    result["baselines at the end (mean over runs)"] = "; ".join(
        f"{name}: oracle {np.mean([b['oracle'] for b in r.baselines]):.3f}, "
        f"uniform {np.mean([b['uniform'] for b in r.baselines]):.3f}, "
        f"default artwork {np.mean([b['default artwork'] for b in r.baselines]):.3f}"
        for name, r in runs.items()
    )
    report("peer", result)


if __name__ == "__main__":
    main()
