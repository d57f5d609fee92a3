"""Simulated audiences the tests share: a logged world whose click rates are known, and catalog looks.

Test modules import these from here, never from one another; each module builds the worlds it
needs in its own fixtures (a world is changed by the tests that use it: policies applied, models
published), so no module depends on another's state.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bandits.evaluate import offline
from bandits.learn.learner import Learner
from bandits.storage import connect
from service import create_app
from service.runtime import serving_state
from tests.helpers import add_catalog, deployment

SEGMENT_TASTE = {"night-owl": "dark-warm", "family": "bright-cool"}  # the artwork each segment clicks most
POPULAR = {"t00", "t03", "t06", "t09"}  # titles clicked far more often than the rest


def click_probability(*, segment: str, title_id: str, artwork_id: str) -> float:
    appeal = 0.6 if title_id in POPULAR else 0.15
    liked = artwork_id.endswith(SEGMENT_TASTE[segment])
    return appeal * (1.0 if liked else 0.35)


STYLES = (("dark-warm", "face"), ("bright-cool", "ensemble"), ("neutral", "text"), ("bright-warm", "landscape"))
GENRES = ("thriller", "animation", "drama", "comedy", "action", "documentary")


EVENTS, SLOTS, TITLES = 1500, 4, 12


class LoggedWorld:
    """A service that ranked ``EVENTS`` rows for a simulated audience whose click rates are known."""

    def __init__(
        self,
        root: Path,
        *,
        events: int = EVENTS,
        config: dict[str, Any] | None = None,
        policies: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """``config`` adds to the service's settings; ``policies`` are overrides set before any ranking."""
        self.app = create_app(
            {
                "DATA_DIR": str(root / "data"),
                "LEARNER": False,
                "REWARD_WAIT_SECONDS": 60.0,
                # A log for offline evaluation: exploring at 0.2 for its first 2,000 examples and
                # decaying slowly after, whatever the deployment default's decay is.
                "EPSILON": 0.2,
                "EPSILON_DECAY_AFTER": 2000.0,
                **(config or {}),
            }
        )
        self.client = self.app.test_client()
        self.db = connect(self.app.config["DATABASE"])
        self.titles = add_catalog(self.client, titles=TITLES)
        for name, overrides in (policies or {}).items():
            response = self.client.put(f"/v1/policies/{name}", json=overrides)
            assert response.status_code == 200, response.get_json()
        learner = Learner(self.db, deployment(self.app))
        with self.app.app_context():
            serving_state(self.app.config["DATABASE"]).rng = np.random.default_rng(5)
        rng = np.random.default_rng(11)
        segments = list(SEGMENT_TASTE)
        self.segment_of: dict[str, str] = {}
        for event in range(events):
            segment = segments[int(rng.integers(2))]
            user = {"id": f"u{int(rng.integers(300))}", "features": {"segment": segment, "device": "tv"}}
            body = self.client.post("/v1/rank", json={"user": user, "slots": SLOTS}).get_json()
            self.segment_of[body["event_id"]] = segment
            for slot in body["slots"]:
                if rng.random() < click_probability(
                    segment=segment, title_id=slot["title_id"], artwork_id=slot["artwork_id"]
                ):
                    self.client.post(
                        f"/v1/events/{body['event_id']}/reward", json={"title_id": slot["title_id"], "value": 1.0}
                    )
            if event % 150 == 149:
                learner.run_once(now=time.time() + 61)
        learner.run_once(now=time.time() + 61)

    def true_artwork_value(self, rounds: offline.Rounds, pmf: np.ndarray) -> float:
        """The candidate's expected reward over the logged artwork rounds, from the audience's click rates."""
        title_of = {artwork_id: artwork_id.rsplit("-", 2)[0] for artwork_id in rounds.action_ids}
        values = []
        for i in range(len(rounds)):
            segment = self.segment_of[rounds.event_ids[i]]
            start, stop = int(rounds.offsets[i]), int(rounds.offsets[i + 1])
            values.append(
                sum(
                    float(pmf[j])
                    * click_probability(
                        segment=segment, title_id=title_of[rounds.action_ids[j]], artwork_id=rounds.action_ids[j]
                    )
                    for j in range(start, stop)
                )
            )
        return float(np.mean(values))
