"""The learner: every due impression learned exactly once, in order, across crashes and model imports."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace

import pytest

from bandits.learn.learner import Learner, PriorityWrites, _close_due, lower_priority
from bandits.model.policy import latest_model, load_policy
from bandits.storage import connect
from tests.helpers import copy_of_store, deployment, learned_state

# Every test here that opens a store runs on SQLite and on PostgreSQL (tests/conftest.py).
BACKENDS = ("sqlite", "postgresql")

USER = {"id": "u-1", "features": {"segment": "a"}}


def rank_many(client, n, slots=3):
    events = []
    for _ in range(n):
        body = client.post("/v1/rank", json={"user": USER, "slots": slots}).get_json()
        events.append(body)
    return events


def test_each_due_event_is_learned_once_and_versions_count_examples(app, client, db, learner, catalog):
    rank_many(client, 25)
    later = time.time() + 61
    first = learner.run_once(now=later)
    assert first["titles"].events == 25 and first["titles"].examples == 75
    assert learner.run_once(now=later)["titles"].events == 0  # nothing twice
    rank_many(client, 5)
    learner.run_once(now=time.time() + 61)
    for policy in ("titles", "artwork"):
        model = latest_model(db, policy)
        assert (model.events_learned, model.examples_learned) == (30, 90)
        rows = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT event_seq), SUM(examples) FROM learned WHERE policy = ?", [policy]
        ).fetchone()
        assert rows == (30, 30, 90)
    assert db.execute("SELECT COUNT(*) FROM pending").fetchone()[0] == 0


def test_nothing_is_learned_before_the_window_closes(client, db, learner, catalog):
    rank_many(client, 3)
    assert learner.run_once()["titles"].events == 0
    assert latest_model(db, "titles").version == 0


def test_batches_are_learned_in_due_order(app, client, db, catalog):
    rank_many(client, 7)
    small = Learner(db, replace(deployment(app), learner_batch=3))
    result = small.run_once(now=time.time() + 61)
    assert result["titles"].events == 7
    versions = [row[0] for row in db.execute("SELECT version FROM learned WHERE policy = 'titles' ORDER BY event_seq")]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_crash_after_closing_windows_learns_each_event_once(app, client, db, catalog):
    rank_many(client, 10)
    later = time.time() + 61
    # A learner closes the windows, then dies before publishing.
    _close_due(db, load_policy(db, deployment(app), "titles"), now=later, limit=100)
    events = client.get("/v1/events/" + db.execute("SELECT id FROM events LIMIT 1").fetchone()[0]).get_json()
    late = client.post(
        f"/v1/events/{events['event_id']}/reward", json={"title_id": events["slots"][0]["title_id"], "value": 1}
    ).get_json()
    assert late["credited_policies"] == ["artwork"]  # titles window already closed
    restarted = Learner(db, deployment(app))
    result = restarted.run_once(now=later)
    assert result["titles"].events == 10 and result["artwork"].events == 10
    assert latest_model(db, "titles").examples_learned == 30
    assert restarted.run_once(now=later)["titles"].events == 0


def test_model_published_during_learning_is_not_overwritten(app, client, db, catalog):
    rank_many(client, 4)
    learner = Learner(db, deployment(app))
    later = time.time() + 61
    learner.run_once(now=later)
    rank_many(client, 4)
    reset = client.post("/v1/policies/titles/reset")
    assert reset.status_code == 201
    # The learner's cached workspace is at the pre-reset version: it must build on the reset model.
    result = learner.run_once(now=later + 1)
    model = latest_model(db, "titles")
    assert result["titles"].events == 4
    assert model.origin == "learner" and model.examples_learned == 12  # only what came after the reset


def test_discarded_step_is_redone_on_the_new_version(app, client, db, catalog, monkeypatch):
    rank_many(client, 3)
    learner = Learner(db, deployment(app))
    original = learner._workspace
    calls = {"n": 0}

    def publish_meanwhile(policy):
        found = original(policy)
        if policy == "titles" and calls["n"] == 0:
            calls["n"] += 1
            client.post("/v1/policies/titles/reset")  # lands between phase 1 and phase 3
        return found

    monkeypatch.setattr(learner, "_workspace", publish_meanwhile)
    result = learner.run_once(now=time.time() + 61)
    assert calls["n"] == 1 and result["titles"].events == 3
    model = latest_model(db, "titles")
    assert model.origin == "learner" and model.examples_learned == 9
    assert db.execute("SELECT COUNT(*) FROM learned WHERE policy = 'titles'").fetchone()[0] == 3


def test_feature_blocks_are_stored_once_and_survive_a_rolled_back_event(app, client, db, learner, catalog):
    rank_many(client, 5)
    # one block of candidate titles, one block of artworks per title shown
    shown = db.execute("SELECT COUNT(DISTINCT title_id) FROM impressions").fetchone()[0]
    assert db.execute("SELECT COUNT(*) FROM feature_blocks").fetchone()[0] == 1 + shown
    client.post("/v1/rank", json={"slots": 1, "event_id": "taken"})
    client.put("/v1/titles/t00", json={"name": "Renamed", "genres": ["noir"]})  # new lines from here on
    blocks_before = db.execute("SELECT COUNT(*) FROM feature_blocks").fetchone()[0]
    refused = client.post("/v1/rank", json={"slots": 6, "event_id": "taken"})
    assert refused.status_code == 409
    assert db.execute("SELECT COUNT(*) FROM feature_blocks").fetchone()[0] == blocks_before  # rolled back
    rank_many(client, 2, slots=6)  # must store the new blocks even though the refused event tried first
    result = learner.run_once(now=time.time() + 61)
    assert result["titles"].events == 8 and result["artwork"].events == 8


def test_a_failed_commit_does_not_learn_the_batch_twice(app, client, db, catalog, monkeypatch, tmp_path):
    import bandits.learn.learner as learner_module
    from bandits.storage import StorageBusy

    rank_many(client, 6)
    later = time.time() + 61
    # The reference: what one clean pass publishes, computed on a copy of the log.
    with copy_of_store(app.config["DATABASE"], tmp_path) as copy:
        reference = Learner(connect(copy), deployment(app))
        reference.run_once(now=later)
        expected = latest_model(reference.db, "titles")
        reference.db.close()

    real = learner_module.write_transaction
    calls = {"n": 0}

    def failing_once(database):
        calls["n"] += 1
        if calls["n"] == 2:  # the titles commit (the first call closed the windows)
            raise StorageBusy("simulated: the database stayed locked")
        return real(database)

    monkeypatch.setattr(learner_module, "write_transaction", failing_once)
    learner = Learner(db, deployment(app))
    with pytest.raises(StorageBusy):
        learner.step("titles", now=later)
    monkeypatch.setattr(learner_module, "write_transaction", real)
    learner.run_once(now=later)  # the retry, as the learner loop does after StorageBusy
    published = latest_model(db, "titles")
    assert published.examples_learned == expected.examples_learned == 18
    assert published.blob == expected.blob  # the same model as one clean pass: nothing learned twice


def test_the_write_lock_is_never_held_while_learning_or_serializing(app, client, db, catalog, monkeypatch):
    """Serving waits for the write lock while the learner holds it: VW work happens outside it."""
    import vowpal_wabbit_next as vw

    from bandits.vw.workspace import TextExamples

    learner = Learner(db, deployment(app))
    calls = []
    learn, learn_chosen, serialize = TextExamples.learn, TextExamples.learn_chosen, vw.Workspace.serialize

    def learn_outside(self, lines):
        calls.append(("learn", db.in_transaction))
        return learn(self, lines)

    def learn_chosen_outside(self, shared, labelled, *, actions):
        calls.append(("learn", db.in_transaction))
        return learn_chosen(self, shared, labelled, actions=actions)

    def serialize_outside(self):
        calls.append(("serialize", db.in_transaction))
        return serialize(self)

    monkeypatch.setattr(TextExamples, "learn", learn_outside)
    monkeypatch.setattr(TextExamples, "learn_chosen", learn_chosen_outside)
    monkeypatch.setattr(vw.Workspace, "serialize", serialize_outside)
    rank_many(client, 5)
    result = learner.run_once(now=time.time() + 61)
    assert result["titles"].events == 5 and result["artwork"].events == 5
    assert {name for name, _ in calls} == {"learn", "serialize"}
    assert not any(in_transaction for _, in_transaction in calls)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_transactions_run_at_normal_priority_while_learning_runs_at_idle(app, client, db, catalog):
    """At idle priority the learner would hold serving's write lock while preempted: its transactions run apart."""
    rank_many(client, 6)
    seen: list[tuple[str, int, int]] = []
    outcome: dict[str, object] = {}

    def learner_thread() -> None:  # a thread of its own: the test process keeps its priority
        writes = PriorityWrites()
        try:
            lower_priority("idle")
            db.trace(
                lambda sql: seen.append((sql.split()[0].upper(), os.sched_getscheduler(0), threading.get_native_id()))
            )
            outcome["result"] = Learner(db, deployment(app), writes=writes).run_once(now=time.time() + 61)
            with pytest.raises(ZeroDivisionError):  # the work's error reaches the caller
                writes(lambda: 1 / 0)
            outcome["writer"] = writes.thread_id
        finally:
            db.trace(None)
            writes.close()

    thread = threading.Thread(target=learner_thread)
    thread.start()
    thread.join(timeout=60)
    assert outcome["result"]["titles"].events == 6 and outcome["result"]["artwork"].events == 6  # type: ignore[index]
    writes_seen = [
        (policy, tid) for verb, policy, tid in seen if verb in ("BEGIN", "UPDATE", "INSERT", "DELETE", "COMMIT")
    ]
    reads_seen = [(policy, tid) for verb, policy, tid in seen if verb == "SELECT"]
    assert {verb for verb, _, _ in seen} >= {"BEGIN", "UPDATE", "INSERT", "DELETE", "COMMIT", "SELECT"}
    assert set(writes_seen) == {(os.SCHED_OTHER, outcome["writer"])}
    assert os.SCHED_IDLE in {policy for policy, _ in reads_seen}  # the reads around learning stay at idle
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


@pytest.mark.parametrize("vw_args", ["", "-q UT -q UG --cb_type dr"], ids=["defaults (mtr)", "cb_type dr"])
def test_the_learner_publishes_the_model_the_whole_examples_teach(
    app, client, db, catalog, monkeypatch, tmp_path, vw_args
):
    """Under mtr the learner shows VW a decision's chosen action alone (TextExamples.learn_chosen): the same model."""
    import bandits.learn.learner as learner_module
    from bandits.vw.workspace import TextExamples

    if vw_args:
        for policy in ("titles", "artwork"):
            assert client.patch(f"/v1/policies/{policy}", json={"vw_args": vw_args}).status_code == 200
    events = rank_many(client, 30, slots=4)
    for n, event in enumerate(events[::3]):
        title = event["slots"][n % 4]["title_id"]
        assert (
            client.post(f"/v1/events/{event['event_id']}/reward", json={"title_id": title, "value": 1}).status_code
            == 201
        )
    later = time.time() + 61
    with copy_of_store(app.config["DATABASE"], tmp_path) as copy:  # the reference: every decision's whole example
        with monkeypatch.context() as whole_examples:
            whole_examples.setattr(learner_module, "learns_chosen_alone", lambda options: False)
            reference = Learner(connect(copy), deployment(app))
            reference.run_once(now=later)
        expected = {policy: latest_model(reference.db, policy) for policy in ("titles", "artwork")}
        reference.db.close()
    calls = []
    learn_chosen = TextExamples.learn_chosen
    monkeypatch.setattr(
        TextExamples,
        "learn_chosen",
        lambda self, *args, **kwargs: calls.append(1) or learn_chosen(self, *args, **kwargs),
    )
    Learner(db, deployment(app)).run_once(now=later)
    assert len(calls) == (0 if vw_args else 2 * 30 * 4)  # every slot of both policies, under mtr only
    for policy, model in expected.items():
        published = latest_model(db, policy)
        assert published.examples_learned == model.examples_learned == 120
        assert published.tried == model.tried
        assert learned_state(published.blob) == learned_state(model.blob)
        if vw_args:
            assert published.blob == model.blob


def test_the_learner_keeps_every_thread_on_one_cpu_and_any_leaves_them_be():
    """In a child process (the test's own threads keep their CPUs): threads started before and after."""
    import json
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import json, os, sys, threading
        from bandits.learn.learner import keep_to_one_cpu
        never = threading.Event()
        threading.Thread(target=never.wait, daemon=True).start()
        cpu = keep_to_one_cpu(sys.argv[1])
        threading.Thread(target=never.wait, daemon=True).start()
        tasks = os.listdir("/proc/self/task")
        print(json.dumps({"cpu": cpu, "threads": [sorted(os.sched_getaffinity(int(t))) for t in tasks]}))
        """
    )

    def run(choice: str) -> dict:
        done = subprocess.run([sys.executable, "-c", script, choice], capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    allowed = sorted(os.sched_getaffinity(0))
    for choice, expected in (("last", allowed[-1]), (str(allowed[0]), allowed[0])):
        found = run(choice)  # the main thread, the two started, and any the imports started (BLAS)
        assert found["cpu"] == expected and len(found["threads"]) >= 3, found
        assert all(cpus == [expected] for cpus in found["threads"]), (choice, found)
    untouched = run("any")
    assert untouched["cpu"] is None and all(cpus == allowed for cpus in untouched["threads"]), untouched
