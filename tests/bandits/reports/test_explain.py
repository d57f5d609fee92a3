"""Explanations: exact Shapley contributions of each feature, and what a trained policy learned."""

from __future__ import annotations

import itertools
import math
import random
import time

import numpy as np
import pytest
import vowpal_wabbit_next as vw

from bandits.learn.learner import Learner
from bandits.model.policy import new_workspace
from bandits.reports import explain
from bandits.reports.explain import Explainer, Line
from bandits.vw import features
from bandits.vw.workspace import TextExamples
from service.runtime import serving_state
from tests.helpers import add_catalog, deployment, serve_newest_models

SHARED = "shared |U segment=a device=tv hour:0.7 |I id=u1"
ACTION = "|T id=t3 decade=1990s |G drama comedy"


def _trained(args: list[str], seed: int = 1) -> bytes:
    """A cb_adf model trained on random rows, so every weight and interaction is non-zero."""
    workspace = new_workspace(args)
    examples = TextExamples(workspace)
    rng = random.Random(seed)
    for _ in range(400):
        shared = (
            f"shared |U segment={rng.choice('ab')} device={rng.choice(['tv', 'web'])} hour:{rng.random():.2f} "
            f"|I id=u{rng.randrange(3)}"
        )
        actions = [
            f"|T id=t{k} decade={rng.choice(['1990s', '2000s'])} |G {rng.choice(['drama', 'comedy'])} comedy"
            for k in range(4)
        ]
        chosen = rng.randrange(4)
        actions[chosen] = features.labeled(actions[chosen], cost=-rng.random(), probability=0.25)
        examples.learn([shared, *actions])
    return workspace.serialize()


def _shapley_by_enumeration(blob: bytes, shared: str, action: str) -> list[float]:
    """Shapley values from every subset of features: 2^n predictions."""
    explainer = Explainer(blob)
    left, right = Line.parse(shared), Line.parse(action)
    n_left = len(left.tokens)
    n = n_left + len(right.tokens)

    def value(subset: frozenset[int]) -> float:
        return explainer._reward(
            left.render([i for i in subset if i < n_left]), right.render([i - n_left for i in subset if i >= n_left])
        )

    cache = {frozenset(s): value(frozenset(s)) for r in range(n + 1) for s in itertools.combinations(range(n), r)}
    phis = []
    for i in range(n):
        phi = 0.0
        for subset, v in cache.items():
            if i in subset:
                continue
            weight = math.factorial(len(subset)) * math.factorial(n - len(subset) - 1) / math.factorial(n)
            phi += weight * (cache[subset | {i}] - v)
        phis.append(phi)
    return phis


@pytest.mark.parametrize("args", [["-q", "UT", "-q", "UG"], ["-q", "UT", "-q", "IG", "--cb_type", "dr"]])
def test_contributions_are_the_exact_shapley_values_and_add_up(args):
    blob = _trained(args)
    result = Explainer(blob).explain(SHARED, ACTION, top=100)
    exact = _shapley_by_enumeration(blob, SHARED, ACTION)
    tokens = [*Line.parse(SHARED).tokens, *Line.parse(ACTION).tokens]
    by_name = {(item["namespace"], item["feature"]): item["contribution"] for item in result["features"]}
    names = {"U": "viewer", "I": "viewer id", "T": "title", "G": "genre"}
    for (namespace, token), phi in zip(tokens, exact):
        assert by_name[(names[namespace], token.split(":")[0])] == pytest.approx(phi, abs=1e-5)
    total = result["baseline"] + sum(by_name.values())
    assert total == pytest.approx(result["estimated_reward"], abs=1e-5)
    # The estimate is the one the serving path computes.
    scores = TextExamples(vw.Workspace([], model_data=blob)).predict([SHARED, ACTION])
    assert result["estimated_reward"] == pytest.approx(scores[0][1] / features.COST_PER_REWARD, abs=1e-6)
    assert result["feature_count"] == len(tokens) and result["other_features"] == 0.0


def test_line_parsing_keeps_empty_namespaces_and_numbers():
    line = Line.parse("shared |U hour:21 segment=a |I id=u1")
    assert line.shared and line.tokens == (("U", "hour:21"), ("U", "segment=a"), ("I", "id=u1"))
    assert line.render([1]) == "shared |U segment=a |I "
    assert Line.parse("|A id=x tag=y").render([]) == "|A "


def test_a_trained_policy_explains_its_artwork_by_the_segment_that_drives_it(app, client, db):
    add_catalog(client, titles=6)
    with app.app_context():
        serving_state(app.config["DATABASE"]).rng = np.random.default_rng(4)
    audience = random.Random(2)
    learner = Learner(db, deployment(app))
    for _ in range(400):
        segment = audience.choice(["night-owl", "family"])
        body = client.post(
            "/v1/rank", json={"user": {"features": {"segment": segment, "hour": audience.randrange(24)}}, "slots": 2}
        ).get_json()
        assert "explanation" not in body["slots"][0]
        for slot in body["slots"]:
            liked = "dark-warm" if segment == "night-owl" else "bright-cool"
            if slot["artwork_id"].endswith(liked) and audience.random() < 0.7:
                client.post(f"/v1/events/{body['event_id']}/reward", json={"title_id": slot["title_id"], "value": 1.0})
    with app.app_context():
        # Ranking without explain never built an explainer.
        assert all(model not in explain._explainers for model in serving_state(app.config["DATABASE"]).models.values())
    learner.run_once(now=time.time() + 3600)
    serve_newest_models(app)
    for segment, liked in (("night-owl", "dark-warm"), ("family", "bright-cool")):
        body = client.post(
            "/v1/rank", json={"user": {"features": {"segment": segment, "hour": 21}}, "slots": 3, "explain": True}
        ).get_json()
        for slot in body["slots"]:
            artwork = slot["explanation"]["artwork"]
            total = (
                artwork["baseline"] + sum(f["contribution"] for f in artwork["features"]) + artwork["other_features"]
            )
            assert total == pytest.approx(artwork["estimated_reward"], abs=1e-4)
            assert artwork["explored"] == (slot["artwork_id"] != artwork["greedy_artwork_id"])
            if slot["artwork_id"].endswith(liked):
                # The segment is what makes this poster the one to show: it is a top, positive reason.
                top = {f["feature"]: f["contribution"] for f in artwork["features"]}
                assert top.get(f"segment={segment}", 0.0) > 0.0, artwork["features"]
            title = slot["explanation"]["title"]
            assert title["greedy_title_id"] and isinstance(title["features"], list)

    # Over the logged decisions, the viewer's segment is among what the artwork policy looks at most.
    report = client.get("/v1/policies/artwork/importance?decisions=300").get_json()
    assert report["decisions"] == 300 and report["model_version"] >= 1
    ranked = [(item["namespace"], item["feature"]) for item in report["features"]]
    assert ("viewer", "segment") in ranked[:3], ranked[:6]
    values = [item["mean_abs_contribution"] for item in report["features"]]
    assert values == sorted(values, reverse=True)
    assert all(0.0 < item["present_share"] <= 1.0 for item in report["features"])
    assert {item["feature"] for item in report["features"] if item["namespace"] == "artwork"} >= {"id", "tag"}


@pytest.mark.parametrize(
    "query, status, message",
    [
        ("decisions=0", 422, "decisions"),
        ("decisions=many", 422, "decisions"),
        ("decisions=2001", 422, "decisions"),
    ],
)
def test_bad_importance_parameters(client, query, status, message):
    response = client.get(f"/v1/policies/titles/importance?{query}")
    assert response.status_code == status and message in response.get_json()["error"]["message"]
    assert client.get("/v1/policies/nope/importance").status_code == 404
