"""A Personalizer-style DSJson log of a world whose true values are known: drinks offered by time of day.

The logging policy's distribution depends on the time of day, and so do the click rates, so a
candidate's true value is known exactly; ``tests/bandits/log/test_logimport.py`` checks the estimates against it
and ``bench/evaluation_bench.py`` times importing and evaluating it at scale.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

TASTE = {  # click probability of each drink by time of day: what the foreign service's users do
    "morning": {"latte": 0.6, "cold-brew": 0.2, "tea": 0.3},
    "evening": {"latte": 0.1, "cold-brew": 0.3, "tea": 0.5},
}
DRINKS: list[dict[str, Any]] = [
    {"_tag": "latte", "drink": {"type": "hot", "milk": True}, "price": 4.5},
    {"_tag": "cold-brew", "drink": {"type": "cold", "milk": False}, "price": 5},
    {"_tag": "tea", "drink": {"type": "hot"}, "price": 3, "_note": "not a feature"},
]
LOGGING = {"morning": [0.6, 0.2, 0.2], "evening": [0.2, 0.2, 0.6]}  # the foreign policy's distribution


def foreign_log(lines: int, *, seed: int) -> tuple[list[str], float, float]:
    """Personalizer-style DSJson lines of a known world; return them with the true value of 'default' and 'uniform'."""
    out, default_truth, uniform_truth = [], [], []
    for line, default, uniform in generate(lines, seed=seed):
        out.append(line)
        default_truth.append(default)
        uniform_truth.append(uniform)
    return out, float(np.mean(default_truth)), float(np.mean(uniform_truth))


def generate(lines: int, *, seed: int) -> Iterator[tuple[str, float, float]]:
    """Yield each DSJson line with the true value of 'default' and of 'uniform' for its context."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    for n in range(lines):
        tod = "morning" if rng.random() < 0.5 else "evening"
        pmf = LOGGING[tod]
        chosen = int(rng.choice(3, p=pmf))
        tag = str(DRINKS[chosen]["_tag"])
        reward = float(rng.random() < TASTE[tod][tag])
        ranking = [chosen + 1, *[j + 1 for j in range(3) if j != chosen]]
        stamp = (start + timedelta(seconds=37 * n)).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")  # 7 digits, as Personalizer's
        line = json.dumps(
            {
                "_label_cost": -reward if reward else 0.0,
                "_label_probability": pmf[chosen],
                "_label_Action": chosen + 1,
                "_labelIndex": chosen,
                "o": [{"v": reward, "EventId": f"e{n}"}],
                "Timestamp": stamp,
                "Version": "1",
                "EventId": uuid.UUID(int=int(rng.integers(2**63))).hex,
                "DeferredAction": False,
                "a": ranking,
                "c": {
                    "Context": {"tod": tod, "weather": "rain" if rng.random() < 0.3 else "sun"},
                    "visits": 3,
                    "_multi": DRINKS,
                },
                "p": [pmf[j - 1] for j in ranking],
                "VWState": {"m": "a1b2/c3d4"},
            }
        )
        yield line, TASTE[tod]["latte"], float(np.mean(list(TASTE[tod].values())))
