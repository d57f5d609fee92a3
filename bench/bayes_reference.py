"""What the requests and responses allow: a policy told every parameter of the world, learning only who viewers are.

Usage (from the repository root):

    python -m bench.bayes_reference [--world audience] [--seeds 1 2 3] [--impressions 100000]
                                    [--evidence request responses] [--prior 60000] [--keep 3000]

The learning benchmarks compare Marquee with the oracle, which knows each viewer's segment and
personal tastes. Between the two lies a policy that knows everything a world's builder chose (every
title's appeal and quality, every segment's share, hours, devices, regions, genre and look tastes
and their drift, the spread of personal tastes) but not which segment a viewer is in nor their own
deviation from it: what a learner could at best come to know about the world, with only the viewer
left to infer. Its belief about each viewer is a set of hypothetical viewers drawn from the world's
prior (``World.draw_hypotheses``, ``--prior`` of them), weighted by the likelihood of the viewer's
request fields (``World.request_log_likelihood``; with ``--evidence request``) and resampled to
``--keep``; every click, play and ignored slot then reweights them (with ``--evidence responses``).
Each row is the best row for the belief's expected plays (``World.best_row``), without exploring.

Rows of four, viewers, outcomes and the uniform baseline are drawn from the streams
``bench.direct_learning`` uses for a seed, and the figures are the same: the share of the oracle's
lift over uniform rows, window by window of 1,000 impressions, and the mean over 96k-100k.
The reference has no learning to do, so it is not a target a learner must reach at 100k
impressions; it bounds from above what a policy can make of what the viewers send and do.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np

from bandits.simulator import POSITION_DECAY, SHAPES, World
from bench.direct_learning import SLOTS, Curve, summary
from bench.report import machine, report
from service import create_app
from service.simulate import catalog_from_service, scratch_service

EVIDENCE = ("request", "responses")


class Beliefs:
    """Each viewer's weighted hypotheses (segment, genre tastes), drawn at their first row."""

    def __init__(self, world: World, *, prior: int, keep: int, evidence: set[str], rng: np.random.Generator) -> None:
        self.world, self.prior, self.keep, self.evidence, self.rng = world, prior, keep, evidence, rng
        self.of: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # viewer id -> segments, tastes, log-weights

    def hypotheses(self, viewer_id: str, features: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        found = self.of.get(viewer_id)
        if found is None:
            if "request" in self.evidence:
                segments, tastes = self.world.draw_hypotheses(self.prior, self.rng)
                log = self.world.request_log_likelihood(features, segments, tastes, self.rng)
                weights = np.exp(log - log.max())
                picked = self.rng.choice(self.prior, size=self.keep, p=weights / weights.sum())
                segments, tastes = segments[picked], tastes[picked]
            else:  # the prior itself: nothing to resample
                segments, tastes = self.world.draw_hypotheses(self.keep, self.rng)
            found = self.of[viewer_id] = (segments, tastes, np.zeros(self.keep))
        return found


def run(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Drive one world of ``seed`` with the reference policy; return its curve of shares."""
    shape = SHAPES[args.world]
    with tempfile.TemporaryDirectory(prefix="marquee-bayes-") as folder:
        transport, _ = scratch_service(
            folder, create_app=create_app, seed=seed, titles=shape.titles, artworks_per_title=shape.artworks_per_title
        )
        world = World.build(catalog_from_service(transport), seed=seed, shape=shape)
    viewers, baselines, prior = (np.random.default_rng([seed, k]) for k in (12, 13, 14))
    beliefs = Beliefs(world, prior=args.prior, keep=args.keep, evidence=set(args.evidence), rng=prior)
    curve = Curve(world, baselines)
    for row in range(args.impressions // SLOTS):
        at = row * SLOTS
        viewer = world.draw_viewer(viewers)
        segments, tastes, log = beliefs.hypotheses(viewer.id, dict(viewer.features))
        click, play = world.hypothetical_values(segments, tastes, at=at)
        weights = np.exp(log - log.max())
        shown = world.best_row(weights @ (click * play) / weights.sum(), slots=SLOTS, at=at)
        outcomes = world.respond(viewer, shown, viewers, at=at)
        if "responses" in args.evidence:
            for outcome in outcomes:
                arm = world.arm_of(outcome.title_id, outcome.artwork_id)
                clicked = POSITION_DECAY**outcome.position * click[:, arm]
                if outcome.played:
                    chance = clicked * play[:, arm]
                elif outcome.clicked:
                    chance = clicked * (1.0 - play[:, arm])
                else:
                    chance = 1.0 - clicked
                log += np.log(np.maximum(chance, 1e-300))
        curve.add(viewer, shown, at=at)
    return curve.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="audience", choices=sorted(SHAPES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--impressions", type=int, default=100_000)
    parser.add_argument(
        "--evidence", nargs="+", choices=EVIDENCE, default=list(EVIDENCE), help="what the beliefs are updated on"
    )
    parser.add_argument("--prior", type=int, default=60_000, help="hypotheses drawn for each viewer")
    parser.add_argument("--keep", type=int, default=3_000, help="hypotheses kept for each viewer after the request")
    args = parser.parse_args()
    if args.keep > args.prior:
        parser.error("--keep: at most --prior")
    started = time.perf_counter()
    runs = {seed: run(args, seed) for seed in args.seeds}
    result: dict[str, Any] = {
        "command": f"python -m bench.bayes_reference --world {args.world} --impressions {args.impressions} "
        f"--evidence {' '.join(args.evidence)} --prior {args.prior} --keep {args.keep} "
        f"--seeds {' '.join(map(str, args.seeds))}",
        "machine": machine(f"NumPy {np.__version__}"),
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - started),
    }
    result.update(summary(runs, args.impressions))
    report("bayes-reference", result)


if __name__ == "__main__":
    main()
