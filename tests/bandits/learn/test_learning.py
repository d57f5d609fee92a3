"""The policies learn: per-segment artwork taste and title appeal, through the HTTP API and the learner."""

from __future__ import annotations

import time

import numpy as np

from bandits.vw import features
from service.runtime import serving_state
from tests.helpers import add_catalog, deployment
from tests.worlds import POPULAR, SEGMENT_TASTE, click_probability


def test_policies_learn_segment_artwork_and_popular_titles(app, client, db, learner):
    titles = add_catalog(client, titles=12)
    with app.app_context():
        serving_state(app.config["DATABASE"]).rng = np.random.default_rng(5)  # the service's exploration
    rng = np.random.default_rng(11)  # the audience
    segments = list(SEGMENT_TASTE)
    wait = app.config["REWARD_WAIT_SECONDS"]
    for event in range(3000):
        segment = segments[int(rng.integers(2))]
        user = {"id": f"u{int(rng.integers(500))}", "features": {"segment": segment, "device": "tv"}}
        response = client.post("/v1/rank", json={"user": user, "slots": 4})
        assert response.status_code == 200
        body = response.get_json()
        for slot in body["slots"]:
            if rng.random() < click_probability(
                segment=segment, title_id=slot["title_id"], artwork_id=slot["artwork_id"]
            ):
                reward = client.post(
                    f"/v1/events/{body['event_id']}/reward", json={"title_id": slot["title_id"], "value": 1.0}
                )
                assert reward.status_code == 201
        if event % 200 == 199:
            learner.run_once(now=time.time() + wait + 1)
    learner.run_once(now=time.time() + wait + 1)

    with app.app_context():
        state = serving_state(app.config["DATABASE"])
        state.refresh(db, deployment(app))
        snapshot = state.snapshot
        artwork_model, titles_model = state.models["artwork"], state.models["titles"]
        assert titles_model.version > 10 and artwork_model.version > 10
        for segment, liked in SEGMENT_TASTE.items():
            shared = features.viewer_shared(user_id="u-new", features={"segment": segment, "device": "tv"})
            correct = 0
            for title_id in titles:
                title = snapshot.titles[title_id]
                costs = artwork_model.costs(features.artwork_shared(shared, title.action_line), title.artwork_lines)
                correct += title.artwork_ids[int(np.argmin(costs))].endswith(liked)
            assert correct / len(titles) >= 0.9, (segment, correct)
            costs = titles_model.costs(shared, [snapshot.titles[t].action_line for t in titles])
            top = {titles[i] for i in np.argsort(costs, kind="stable")[: len(POPULAR)]}
            assert top == POPULAR, (segment, sorted(top))
