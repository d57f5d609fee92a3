"""A new model version is built after a response is sent, by one worker at a time, or by an idle process."""

from __future__ import annotations

import fcntl
import os
import time

from bandits.model.policy import latest_model, publish
from bandits.model.tried import Tried
from bandits.storage import write_transaction
from service import runtime


def republish(db, policy: str) -> int:
    """Publish the newest model of ``policy`` again, as a new version (what the learner's step does)."""
    record = latest_model(db, policy)
    with write_transaction(db):
        return publish(
            db,
            policy=policy,
            blob=record.blob,
            vw_args=record.vw_args,
            events_learned=record.events_learned,
            examples_learned=record.examples_learned,
            origin="learner",
            keep=20,
            tried=Tried.loads(record.tried),
        )


def serving(app) -> runtime.ServingState:
    return runtime.serving_state(app.config["DATABASE"])


def rank(client) -> dict:
    with client.post("/v1/rank", json={"slots": 2}) as response:  # leaving the block closes the response
        assert response.status_code == 200
        return response.get_json()


def test_the_request_that_finds_a_version_answers_with_the_old_one_and_loads_it_after(app, client, catalog, db):
    rank(client)  # the first request loads the models it needs
    state = serving(app)
    old = state.models["titles"].version
    new = republish(db, "titles")
    assert rank(client)["model_versions"]["titles"] == old  # not built inside this request
    assert state.models["titles"].version == new and not state.models_due  # built once it was closed
    assert rank(client)["model_versions"]["titles"] == new


def test_one_version_a_response_and_none_while_another_worker_loads(app, client, catalog, db):
    rank(client)
    state = serving(app)
    titles, artwork = republish(db, "titles"), republish(db, "artwork")
    turns = os.open(os.path.join(app.config["DATA_DIR"], "model-loads.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(turns, fcntl.LOCK_EX)  # another worker is loading (a lock is per open file, even in one process)
    try:
        rank(client)
        assert state.models_due and state.models["titles"].version < titles
    finally:
        os.close(turns)
    rank(client)  # its turn: one policy's version after this response, the other's after the next
    loaded = [state.models["titles"].version == titles, state.models["artwork"].version == artwork]
    assert loaded.count(True) == 1 and state.models_due
    rank(client)
    assert not state.models_due
    assert (state.models["titles"].version, state.models["artwork"].version) == (titles, artwork)


def test_an_idle_process_loads_a_new_version_in_the_background(app, client, catalog, db):
    rank(client)  # starts the background thread
    state = serving(app)
    new = republish(db, "artwork")
    deadline = time.monotonic() + 30
    while state.models["artwork"].version != new:  # no request comes: the background thread loads it
        assert time.monotonic() < deadline, "the idle process never loaded the new version"
        time.sleep(0.05)
    assert not state.models_due
