"""Warm start: train a policy on an imported log before it serves, and say how well it did on that log.

A dataset (``bandits.log.datasets``) whose decisions are in a policy's encoding (Marquee's own export of
that policy, or another service's DSJson imported with ``policy=actions``) is learned in the file's
order, each decision labelled with its logged reward and probability as the learner labels the
service's own, into a new model version of the policy (origin ``warm start``). While it learns, each
decision is first decided by the model as it is so far (progressive validation), which gives an
out-of-sample IPS estimate of the greedy model, next to the logged policy's and the baseline's (the
first action) on the same decisions. For the doubly robust estimate, evaluate the dataset with a
``vw`` candidate of the policy's options (``POST /v1/evaluations``): that candidate is this training.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bandits.deployment import Deployment
from bandits.errors import Invalid, SpecError
from bandits.evaluate.estimators import mean_interval
from bandits.log import datasets
from bandits.model.exploration import lead_of
from bandits.model.policy import latest_model, load_policy, new_workspace, publish
from bandits.model.tried import Tried
from bandits.storage import Database, write_transaction
from bandits.vw.options import learns_chosen_alone, model_options
from bandits.vw.workspace import TextExamples

STARTS = ("empty", "newest")
MAX_PASSES = 10


class WarmStartError(Invalid, ValueError):
    """The warm start cannot run; the message names the field."""


def warm_start(
    db: Database,
    config: Deployment,
    policy: str,
    dataset_id: str,
    *,
    start: str = "empty",
    passes: int = 1,
    progress: Callable[[float], None] = lambda fraction: None,
) -> dict[str, Any]:
    """Learn a ready dataset into a new model version of ``policy``; return the version and the estimates.

    ``start``: ``empty`` (a new model with the policy's options) or ``newest`` (the newest version,
    which keeps what it learned). ``passes`` over the data (1 to ``MAX_PASSES``); the estimates come
    from the first.

    Raises:
        WarmStartError: the dataset does not exist, is not ready, or is not in the policy's encoding.
    """
    if start not in STARTS:
        raise WarmStartError(f"start: must be one of {', '.join(STARTS)}, got {start!r}")
    if isinstance(passes, bool) or not isinstance(passes, int) or not 1 <= passes <= MAX_PASSES:
        raise WarmStartError(f"passes: must be a whole number from 1 to {MAX_PASSES}")
    try:
        found = datasets.ready(db, dataset_id)
    except SpecError as exc:
        raise WarmStartError(str(exc)) from None
    if found["policy"] != policy:
        held = f"decisions of the {found['policy']} policy" if found["policy"] else "decisions of no Marquee policy"
        hint = " (import another service's DSJson with policy=actions)" if policy == "actions" else ""
        raise WarmStartError(f"dataset: {dataset_id!r} holds {held}, not in the {policy} policy's encoding{hint}")
    settings = load_policy(db, config, policy)
    newest = latest_model(db, policy)
    if start == "newest" and newest is not None:
        workspace, vw_args, learned = new_workspace([], model_data=newest.blob), newest.vw_args, newest
        tried = Tried.loads(newest.tried)
        chosen_alone = learns_chosen_alone(model_options(newest.blob))
    else:
        workspace, vw_args, learned = new_workspace(settings.vw_args), settings.vw_args, None
        tried = Tried()
        chosen_alone = learns_chosen_alone(settings.vw_args)
    rounds = datasets.load(db, dataset_id)
    examples = TextExamples(workspace, chosen_alone=chosen_alone)
    n = len(rounds)
    model_hit, baseline_hit = np.zeros(n), np.zeros(n)
    for step in range(passes):
        for i in range(n):
            if step == 0:
                costs = np.zeros(int(rounds.sizes[i]))
                for index, score in examples.predict(rounds.example(i, labeled=False)):
                    costs[index] = score
                model_hit[i] = float(lead_of(costs) == rounds.chosen[i])  # ties name no choice, as in serving
                baseline_hit[i] = float(rounds.chosen[i] == 0)
            example = rounds.example(i, labeled=True)
            examples.learn(example)
            if tried is not None:
                tried.learn(example)
            if i % 1000 == 999:
                progress((step * n + i + 1) / (passes * n))
    weights = rounds.reward / rounds.pscore
    blob = workspace.serialize()
    with write_transaction(db):
        version = publish(
            db,
            policy=policy,
            blob=blob,
            vw_args=vw_args,
            events_learned=(learned.events_learned if learned else 0) + rounds.n_events,
            examples_learned=(learned.examples_learned if learned else 0) + n * passes,
            origin=f"warm start from {dataset_id}",
            keep=config.model_versions_kept,
            tried=tried,
        )
    progress(1.0)
    return {
        "policy": policy,
        "version": version,
        "dataset": found,
        "start": start,
        "passes": passes,
        "decisions": n,
        "finished_at": time.time(),
        "progressive": {
            "greedy_model": mean_interval(weights * model_hit),
            "baseline": mean_interval(weights * baseline_hit),
            "logged": mean_interval(rounds.reward),
            "greedy_minus_baseline": mean_interval(weights * (model_hit - baseline_hit)),
        },
    }
