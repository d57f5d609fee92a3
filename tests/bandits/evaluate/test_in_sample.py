"""No flattering estimates: a stored model scored on decisions it learned is marked in sample and never applied."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bandits.evaluate.runs import verdict
from bandits.learn.learner import Learner
from bandits.storage import connect
from service import create_app
from service.runtime import serving_state
from tests.helpers import add_catalog, deployment, run_to_the_end

RATE = 0.3  # every artwork of every title is played at this rate, whoever looks: there is nothing to learn
MEMORISER = "-q IA -l 2 --clip_p 1"  # each viewer crossed with each artwork at a high rate: it learns the noise
EVENTS = 500


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A log of pure noise, learned by a memorising artwork model, then evaluated."""
    root: Path = tmp_path_factory.mktemp("in-sample")
    app = create_app(
        {
            "DATA_DIR": str(root / "data"),
            "LEARNER": False,
            "REWARD_WAIT_SECONDS": 60.0,
            "EPSILON": 0.3,
            "EPSILON_DECAY_AFTER": 0.0,
            "ARTWORK_TRIAL_SHARE": 0.0,
            "TITLE_TRIAL_SHARE": 0.0,
        }
    )
    client = app.test_client()
    db = connect(app.config["DATABASE"])
    add_catalog(client, titles=6)
    assert client.put("/v1/policies/artwork", json={"vw_args": MEMORISER, "epsilon": 0.3}).status_code == 200
    with app.app_context():
        serving_state(app.config["DATABASE"]).rng = np.random.default_rng(2)
    rng = np.random.default_rng(9)
    for _ in range(EVENTS):
        body = client.post("/v1/rank", json={"user": {"id": f"u{int(rng.integers(25))}"}, "slots": 3}).get_json()
        for slot in body["slots"]:
            if rng.random() < RATE:
                client.post(f"/v1/events/{body['event_id']}/reward", json={"title_id": slot["title_id"], "value": 1.0})
    Learner(db, deployment(app)).run_once(now=time.time() + 61)
    run = run_to_the_end(
        client,
        {
            "policy": "artwork",
            "candidates": [
                "logged",
                {"name": "newest model", "kind": "model", "epsilon": 0.05},
                {"name": "same options, progressive", "kind": "vw", "vw_args": MEMORISER, "epsilon": 0.05},
            ],
        },
    )
    return {"client": client, "run": run, "db": db}


def test_the_memoriser_looks_good_in_sample_and_is_marked(noise):
    report = noise["run"]["result"]
    found = {entry["name"]: entry for entry in report["candidates"]}
    newest, progressive = found["newest model"], found["same options, progressive"]
    # In sample, the model that memorised which viewer played what looks better than the logged policy, by
    # enough that the apply guard (DR lower bound above the logged mean) alone would let it win.
    assert newest["estimates"]["dr"]["ci_low"] > report["mean_reward"], newest["estimates"]["dr"]
    assert newest["in_sample"] is True and newest["scoring"] == "stored model"
    assert newest["in_sample_rounds"] == report["rounds"] and newest["out_of_sample_rounds"] == 0
    assert "out_of_sample" not in newest  # no decision was logged after it: nothing to score it on fairly
    # The same options scored progressively (each decision before it is learned) show no lift: the truth is covered.
    assert progressive["in_sample"] is False and progressive["scoring"] == "progressive"
    dr = progressive["estimates"]["dr"]
    assert dr["ci_low"] <= RATE <= dr["ci_high"], dr
    assert not found["logged"]["in_sample"]
    assert verdict(newest, report["mean_reward"]) == "in sample"


def test_an_in_sample_candidate_is_never_applied(noise):
    client, run = noise["client"], noise["run"]
    before = client.get("/v1/policies/artwork").get_json()
    response = client.post(f"/v1/evaluations/{run['id']}/apply", json={"candidate": "newest model"})
    assert response.status_code == 422
    message = response.get_json()["error"]["message"]
    assert "decisions logged before it was published" in message and "progressively" in message
    assert client.get("/v1/policies/artwork").get_json() == before


def test_the_report_page_and_cli_say_in_sample(noise):
    client, run = noise["client"], noise["run"]
    page = client.get(f"/evaluations/{run['id']}").get_data(as_text=True)
    assert "in sample" in page and "flatter" in page
    from service.cli import format_report

    text = format_report(run["result"])
    assert "IN SAMPLE" in text and "newest model" in text.split("IN SAMPLE:")[1]
