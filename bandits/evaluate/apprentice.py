"""Apprentice and logging-only modes: how closely the model follows the baseline, and whether it beats it.

In the ``apprentice`` learning mode a policy serves the baseline, the first action offered (the
caller's own choice, put first), and learns from it (``bandits.learn.learner.apprentice_examples``): the
baseline's reward, every other action at the default reward, so the model comes to prefer the
baseline wherever the baseline earns something. A share ``apprentice_exploration`` of decisions (0
by default) may be drawn by the model's exploration instead, and those teach it what the baseline
misses. In ``logging-only`` the policy serves the baseline and learns nothing. Either way every
decision logs the model's deterministic greedy choice next to what was served, so this report can say:

- **match rate**: the share of those decisions where the model's greedy choice is the baseline
  (with a Wilson interval);
- **baseline reward**: the mean reward of the decisions that served the baseline, and of those
  where the model agreed with it;
- **evidence** that the model beats the baseline: an IPS estimate of (greedy model - baseline),
  paired per decision, over the decisions logged with exploration (logged probability below 1:
  Online decisions, or apprentice decisions drawn by ``apprentice_exploration``). Each decision is
  judged by the model as it was when it decided, which had not learned that decision, so the
  estimate is out of sample. A decision served deterministically says nothing about an action it
  could not have served, so baseline-only traffic gives no evidence either way: the report says so.

With ``auto_switch``, the learner turns an apprentice policy ``online`` once the evidence's lower
bound is above zero over at least ``MIN_EVIDENCE`` decisions (``SwitchCheck``).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import numpy as np

from bandits.deployment import Deployment
from bandits.evaluate.estimators import mean_interval, wilson
from bandits.evaluate.offline import policy_rounds
from bandits.model.policy import APPRENTICE, ONLINE, POLICY_NAMES, load_policy, store_overrides, stored_overrides
from bandits.storage import Database, Writes, inline, write_transaction

log = logging.getLogger("marquee.apprentice")

REPORT_EVENTS = 20_000  # the newest closed events a report reads
MIN_EVIDENCE = 200  # exploring decisions before the model can be judged better than the baseline
LEVEL = 0.95


def report(db: Database, config: Deployment, policy: str, *, limit: int = REPORT_EVENTS) -> dict[str, Any]:
    """Return the policy's learning mode, match rate, baseline reward and evidence, over its newest closed events."""
    settings = load_policy(db, config, policy)
    rounds = policy_rounds(db, config, policy, limit=limit)
    modes = np.asarray(rounds.modes, dtype=object)
    known = rounds.greedy >= 0
    following = (modes != ONLINE) if len(rounds) else np.zeros(0, dtype=bool)  # served by the baseline rule
    judged = following & known
    served_baseline = following & (rounds.chosen == 0)
    exploring = known & (rounds.pscore < 1.0)
    model_hit = (rounds.chosen == rounds.greedy).astype(float)
    baseline_hit = (rounds.chosen == 0).astype(float)
    weights = rounds.reward / rounds.pscore
    difference = (weights * (model_hit - baseline_hit))[exploring]
    evidence = mean_interval(difference)
    ready = bool(evidence["n"] >= MIN_EVIDENCE and evidence["ci_low"] is not None and evidence["ci_low"] > 0.0)
    if evidence["n"] == 0:
        verdict = (
            "no evidence yet: every decision read served its action deterministically; Online traffic, or "
            "apprentice_exploration above 0, logs the exploration that can show the model beats the baseline"
        )
    elif evidence["n"] < MIN_EVIDENCE:
        verdict = f"{evidence['n']} exploring decisions; at least {MIN_EVIDENCE} are needed to judge"
    elif ready:
        verdict = "the model beats the baseline: the lower bound of (model - baseline) is above 0"
    else:
        verdict = "not shown better than the baseline: the lower bound of (model - baseline) is not above 0"
    return {
        "policy": policy,
        "learning_mode": settings.learning_mode,
        "auto_switch": settings.auto_switch,
        "apprentice_exploration": settings.apprentice_exploration,
        "decisions": int(len(rounds)),
        "baseline_decisions": int(following.sum()),
        "match_rate": wilson(int((rounds.greedy[judged] == 0).sum()), int(judged.sum())),
        "baseline_reward": mean_interval(rounds.reward[served_baseline]),
        "baseline_reward_when_model_agreed": mean_interval(rounds.reward[served_baseline & (rounds.greedy == 0)]),
        "evidence": {
            "decisions": evidence["n"],
            "model_reward": mean_interval((weights * model_hit)[exploring]),
            "baseline_reward": mean_interval((weights * baseline_hit)[exploring]),
            "model_minus_baseline": {key: evidence[key] for key in ("value", "ci_low", "ci_high")},
            "level": LEVEL,
        },
        "switch_ready": ready,
        "verdict": verdict,
    }


def switch_online(db: Database, policy: str) -> bool:
    """Turn an apprentice policy online (keeping its other overrides); return whether it was apprentice."""
    with write_transaction(db):
        overrides = stored_overrides(db, policy)
        if overrides.get("learning_mode") != APPRENTICE:
            return False
        overrides["learning_mode"] = ONLINE
        store_overrides(db, policy, overrides)
    return True


class SwitchCheck:
    """Runs ``report`` on ``auto_switch`` apprentice policies at most every ``every`` seconds; switches ready ones."""

    def __init__(self, *, every: float = 60.0) -> None:
        self.every = every
        self.next_at = 0.0

    def run_if_due(self, db: Database, config: Deployment, *, writes: Writes = inline) -> list[str]:
        """Return the policies switched online by this round (the switch's transaction run by ``writes``)."""
        if time.monotonic() < self.next_at:
            return []
        self.next_at = time.monotonic() + self.every
        switched = []
        for policy in POLICY_NAMES:
            settings = load_policy(db, config, policy)
            if settings.learning_mode != APPRENTICE or not settings.auto_switch:
                continue
            found = report(db, config, policy)
            if found["switch_ready"] and writes(partial(switch_online, db, policy)):
                log.info(
                    "policy %s: switched online (%s; model - baseline %s)",
                    policy,
                    found["verdict"],
                    found["evidence"]["model_minus_baseline"],
                )
                switched.append(policy)
        return switched
