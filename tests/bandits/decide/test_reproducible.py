"""The same client-chosen event id gives the same exploration draw; distinct ids draw independently."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from bandits.model.exploration import Exploration, epsilon_greedy_pmf, event_rng
from service import create_app
from tests.helpers import add_catalog


def _service(tmp_path, name):
    app = create_app({"DATA_DIR": str(tmp_path / name), "LEARNER": False, "EPSILON": 0.9})
    client = app.test_client()
    add_catalog(client, titles=8, seed=3)
    return client


def test_the_same_event_id_gives_the_same_row_on_two_services(tmp_path):
    first, second = _service(tmp_path, "a"), _service(tmp_path, "b")
    rows = []
    for event in range(12):
        body = {"user": {"features": {"device": "tv"}}, "slots": 4, "event_id": f"retry-{event}"}
        a, b = first.post("/v1/rank", json=body).get_json(), second.post("/v1/rank", json=body).get_json()
        assert a["slots"] == b["slots"]  # titles, artworks and probabilities, drawn alike from the id
        rows.append(tuple(slot["title_id"] for slot in a["slots"]))
    assert len(set(rows)) > 6  # and different ids draw differently
    # Without an id the service draws from its own randomness.
    unnamed = {
        tuple(s["title_id"] for s in first.post("/v1/rank", json={"slots": 4}).get_json()["slots"]) for _ in range(12)
    }
    assert len(unnamed) > 6


@pytest.mark.parametrize(
    "exploration",
    [Exploration(epsilon=0.5), Exploration(rule="squarecb", gamma=4.0)],
    ids=["epsilon-greedy", "squarecb"],
)
def test_draws_seeded_by_distinct_ids_match_the_logged_probabilities(exploration):
    costs = [0.3, -0.2, 0.1, 0.0]
    n = 30_000
    picks = [exploration.pick(costs, event_rng(f"e-{i}")) for i in range(n)]
    counts = Counter(pick.index for pick in picks)
    pmf = exploration.pmf(costs)
    for index, probability in enumerate(pmf):
        assert counts[index] / n == pytest.approx(probability, abs=4 * np.sqrt(probability / n))
    assert exploration.pick(costs, event_rng("e-7")) == picks[7]
    if exploration.rule == "epsilon-greedy":
        assert list(pmf) == pytest.approx(list(epsilon_greedy_pmf(costs, 0.5)))
