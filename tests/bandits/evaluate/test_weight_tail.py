"""Intervals that cannot be trusted are said so: a weight tail with too few rewards, and what R² means for DR."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bandits.evaluate import offline, runs
from bandits.storage import connect
from service import create_app


def tail_of(
    *, pscore: list[float], target: list[float], reward: list[float], default_reward: float = 0.0
) -> dict[str, Any]:
    rounds = SimpleNamespace(pscore=np.asarray(pscore), reward=np.asarray(reward))
    scores = offline.Scores(
        target_prob=np.asarray(target), q_target=np.zeros(len(pscore)), q_logged=np.zeros(len(pscore))
    )
    return offline.weight_tail(rounds, scores, default_reward=default_reward)  # type: ignore[arg-type]


def test_a_heavy_tail_with_few_rewards_is_fragile():
    # 96 rounds the candidate agrees with (weight 1), 4 it takes where the logger explored at 1 % (weight 95).
    pscore, target = [0.95] * 96 + [0.01] * 4, [0.95] * 96 + [0.95] * 4
    quiet = tail_of(pscore=pscore, target=target, reward=[1.0] * 30 + [0.0] * 70)
    assert quiet["rounds"] == 4 and quiet["rewarded"] == 0 and quiet["max_weight"] == pytest.approx(95)
    assert quiet["weight_share"] == pytest.approx(380 / (96 + 380)) and quiet["fragile"]
    many = [0.01] * 40 + [0.95] * 60
    rewarded = tail_of(pscore=many, target=[0.95] * 100, reward=[1.0] * 10 + [0.0] * 90)
    assert rewarded["rewarded"] == 10 and not rewarded["fragile"]  # the tail's variance shows in its rewards
    light = tail_of(pscore=[0.95] * 999 + [0.05], target=[0.95] * 999 + [0.6], reward=[0.0] * 1000)
    assert light["rounds"] == 1 and light["weight_share"] < offline.MIN_TAIL_SHARE and not light["fragile"]
    # With a default reward of -0.2, a decision no reward reached is credited -0.2: that is not a reward.
    shifted = tail_of(pscore=pscore, target=target, reward=[1.0] * 30 + [-0.2] * 70, default_reward=-0.2)
    assert shifted["rewarded"] == 0 and shifted["fragile"]
    none = tail_of(pscore=[0.5] * 10, target=[0.5] * 10, reward=[1.0] * 10)
    assert none == {
        "threshold": offline.LARGE_WEIGHT,
        "rounds": 0,
        "rewarded": 0,
        "weight_share": 0.0,
        "max_weight": 1.0,
        "fragile": False,
    }


@pytest.mark.parametrize(
    ("r_squared", "start"),
    [
        (None, "the reward model predicts no better than the mean"),
        (-0.1, "the reward model predicts no better"),
        (0.0, "the reward model predicts no better"),
        (0.05, "the reward model explains a little"),
        (0.15, "the reward model fits well"),
    ],
)
def test_r_squared_says_how_far_to_trust_dr(r_squared, start):
    assert offline.reward_model_guidance(r_squared).startswith(start)


def entry(name: str, *, ci_low: float, fragile: bool) -> dict[str, Any]:
    return {
        "name": name,
        "candidate": {
            "name": name,
            "kind": "vw",
            "vw_args": ["-q", "UA"],
            "exploration": "epsilon-greedy",
            "epsilon": 0.05,
        },
        "estimates": {"dr": {"value": ci_low + 0.05, "ci_low": ci_low, "ci_high": ci_low + 0.1}},
        "in_sample": False,
        "weight_tail": {
            "threshold": 10.0,
            "rounds": 7,
            "rewarded": 1 if fragile else 9,
            "weight_share": 0.3,
            "max_weight": 95.0,
            "fragile": fragile,
        },
    }


def test_a_fragile_candidate_is_not_applied_even_when_its_bound_beats_the_log(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path), "LEARNER": False, "AUTH": "off"})
    db = connect(app.config["DATABASE"])
    run_id = runs.create(db, offline.parse_spec({"policy": "artwork"}))
    report = {
        "policy": "artwork",
        "mean_reward": 0.2,
        "rounds": 4000,
        "events": 1000,
        "candidates": [entry("tail", ci_low=0.3, fragile=True), entry("steady", ci_low=0.25, fragile=False)],
    }
    runs._finish(db, run_id, status="done", result=report)
    assert runs.verdict(report["candidates"][0], 0.2) == "fragile interval"
    assert runs.verdict(report["candidates"][1], 0.2) == "beats logged"
    with pytest.raises(runs.ApplyRefused) as refused:
        runs.applicable(db, run_id, "tail")
    assert refused.value.status == 409
    assert str(refused.value).startswith(
        "candidate: 'tail' rests on 7 decisions weighted above 10 (30% of the weight), of which only 1 were rewarded"
    )
    assert runs.applicable(db, run_id, "steady").name == "steady"
    from bandits.evaluate.optimize import decide

    decision = decide(
        {**report, "candidates": [entry("serving options", ci_low=0.1, fragile=False), *report["candidates"]]}
    )
    assert decision["chosen"] == "steady"  # the higher bound is fragile: the optimization passes it over
