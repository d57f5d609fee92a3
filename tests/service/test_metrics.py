"""Prometheus metrics: exact across real gunicorn workers, and in one process; ``/healthz``."""

from __future__ import annotations

import base64
import os
import signal
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bandits.storage import connect
from service import create_app
from tests.gunicorn_harness import SETTINGS, Service, Traffic, alive, wait_until_learned
from tests.helpers import sqlite_steps


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text) for s in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for n, ls, v in samples(text) if n == name and all(ls.get(k) == want for k, want in labels.items()))


def scrape(service: Service) -> str:
    status, body = service.request_raw("GET", "/metrics")
    assert status == 200
    return body.decode()


@pytest.mark.slow
def test_counts_add_up_every_worker_and_survive_a_killed_worker(tmp_path: Path):
    service = Service(tmp_path / "data", env=SETTINGS)
    service.flask("demo-catalog", "--titles", "12", "--seed", "3")
    service.start()
    try:
        traffic = Traffic(service, seed=5)
        traffic.run(60)
        db = connect(tmp_path / "data" / "marquee.sqlite3")
        rewards = db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0]
        wait_until_learned(db, 60)
        newest = {
            name: db.execute("SELECT MAX(version) FROM models WHERE policy = ?", [name]).fetchone()[0]
            for name in ("titles", "artwork", "actions")
        }
        deadline, extra = time.monotonic() + 20, 0
        # Every scrape, whichever worker answers it, reports the counts of both workers together.
        while True:
            text = scrape(service)
            serving = [
                (ls["pid"], ls["policy"], v) for n, ls, v in samples(text) if n == "marquee_serving_model_version"
            ]
            if {pid for pid, _, _ in serving} == {str(pid) for pid in service.worker_pids()} and all(
                v == newest[policy] for _, policy, v in serving
            ):
                break
            assert time.monotonic() < deadline, serving
            # Nudge each worker to refresh; a deferred row is never learned, so no newer version follows it.
            status, _ = service.request("POST", "/v1/rank", {"slots": 1, "defer_activation": True})
            assert status == 200
            extra += 1
            time.sleep(0.3)
        ranks = 60 + extra
        explored = db.execute("SELECT SUM(title_explored), SUM(artwork_explored) FROM impressions").fetchone()
        for _ in range(4):
            text = scrape(service)
            assert value(text, "marquee_decisions_total") == ranks
            assert value(text, "marquee_http_requests_total", endpoint="/v1/rank", method="POST", status="200") == ranks
            assert value(text, "marquee_http_request_duration_seconds_count", endpoint="/v1/rank") == ranks
            assert value(text, "marquee_rewards_total") == rewards
            assert value(text, "marquee_picks_total", policy="titles", explored="true") == explored[0]
            assert value(text, "marquee_picks_total", policy="artwork", explored="true") == explored[1]
            assert value(text, "marquee_model_version", policy="titles") == newest["titles"]
            assert value(text, "marquee_learner_running") == 1
            assert value(text, "marquee_metrics_multiprocess") == 1
        assert value(text, "marquee_picks_total", policy="artwork") == 4 * 60 + extra

        # kill -9 a worker: gunicorn replaces it; its counts stay, its live gauge goes.
        victim = service.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        # Reaped (gone from /proc, not a zombie: the master's child_exit has run) and replaced.
        while Path(f"/proc/{victim}").exists() or len([p for p in service.worker_pids() if alive(p)]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        text = scrape(service)
        assert value(text, "marquee_decisions_total") == ranks
        assert str(victim) not in {ls.get("pid") for n, ls, _ in samples(text) if n == "marquee_serving_model_version"}
        db.close()
    finally:
        service.stop()
    # A new run of the service starts its counts from zero.
    service.start()
    try:
        assert value(scrape(service), "marquee_decisions_total") == 0
    finally:
        service.stop()


def test_one_process_counts_decisions_refusals_and_rewards(client, catalog):
    before = client.get("/metrics").get_data(as_text=True)
    body = client.post("/v1/rank", json={"slots": 3}).get_json()
    client.post(
        f"/v1/events/{body['event_id']}/reward",
        json={"title_id": body["slots"][0]["title_id"], "value": 0.5},
        headers={"Idempotency-Key": "k1"},
    )
    client.post(
        f"/v1/events/{body['event_id']}/reward",
        json={"title_id": body["slots"][0]["title_id"], "value": 0.5},
        headers={"Idempotency-Key": "k1"},
    )  # a replay is not a second reward
    assert client.post("/v1/rank", json={"slots": "three"}).status_code == 422
    after = client.get("/metrics").get_data(as_text=True)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("marquee_decisions_total") == 1
    assert delta("marquee_picks_total", policy="titles") == 3 and delta("marquee_picks_total", policy="artwork") == 3
    assert delta("marquee_http_requests_total", endpoint="/v1/rank", status="422") == 1
    assert delta("marquee_http_requests_total", endpoint="/v1/events/<event_id>/reward", status="201") == 1
    assert delta("marquee_http_requests_total", endpoint="/v1/events/<event_id>/reward", status="200") == 1
    assert delta("marquee_rewards_total", credited="true") == 1
    assert delta("marquee_reward_value_sum") == pytest.approx(0.5)
    assert value(after, "marquee_events_pending", policy="titles", state="waiting_for_rewards") == 1
    assert value(after, "marquee_metrics_multiprocess") == 0


def test_metrics_need_an_admin_key_which_prometheus_can_send_as_basic_auth(tmp_path):
    app = create_app(
        {
            "DATA_DIR": str(tmp_path / "data"),
            "LEARNER": False,
            "AUTH": "keys",
            "API_KEYS": "client-key-1234567890",
            "ADMIN_KEYS": "admin-key-1234567890",
        }
    )
    client = app.test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/metrics", headers={"X-API-Key": "client-key-1234567890"}).status_code == 403
    basic = base64.b64encode(b"prometheus:admin-key-1234567890").decode()
    response = client.get("/metrics", headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    assert "marquee_model_version" in response.get_data(as_text=True)


def test_a_scrape_while_a_worker_starts_reads_every_sized_file_and_skips_the_empty_one(tmp_path):
    """A starting worker's file exists empty for a moment before it is sized; a scrape then still answers."""
    import struct

    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    from service.metrics import WorkerFiles

    running = MmapedDict(str(tmp_path / "counter_101.db"))
    running.write_value(mmap_key("marquee_decisions", "marquee_decisions_total", [], [], "Rows"), 7.0, 0.0)
    running.close()
    (tmp_path / "counter_102.db").touch()  # opened by the starting worker, not yet sized

    with pytest.raises(struct.error):  # what prometheus-client's own collector does in that moment
        multiprocess.MultiProcessCollector(None, path=str(tmp_path)).collect()
    families = {family.name: family for family in WorkerFiles(None, path=str(tmp_path)).collect()}
    assert [(s.name, s.value) for s in families["marquee_decisions"].samples] == [("marquee_decisions_total", 7.0)]


def test_health_checks_and_scrapes_read_no_more_as_the_log_grows_and_say_the_lag(app, client, db, learner, catalog):
    """``/healthz`` and ``/metrics`` read the newest models' stamps and the learner's backlog, not the log's size."""
    event = client.post("/v1/rank", json={"slots": 2}).get_json()["event_id"]
    learner.run_once(now=time.time() + 61)  # learned: version 1 of each row policy, one event each

    def steps(path: str) -> tuple[int | None, str]:
        counted, answer = sqlite_steps(app, lambda: client.get(path))
        assert answer.status_code == 200, (path, answer.get_data(as_text=True)[:200])
        return counted, answer.get_data(as_text=True)

    few = {path: min(steps(path)[0] or 0 for _ in range(3)) for path in ("/healthz", "/metrics")}
    db.executemany(
        "INSERT INTO learned (policy, event_seq, version, examples) VALUES (?, ?, 1, 1)",
        [(policy, seq) for seq in range(1000, 11000) for policy in ("titles", "artwork")],
    )
    many = {path: min(steps(path)[0] or 0 for _ in range(3)) for path in ("/healthz", "/metrics")}
    for path in few:  # counting the learned rows would add some 20,000 rows' steps (0 and 0 on PostgreSQL)
        assert many[path] <= 1.1 * few[path], (path, few[path], many[path])

    _, scraped = steps("/metrics")
    assert value(scraped, "marquee_model_version", policy="titles") == 1
    assert value(scraped, "marquee_events_learned", policy="titles") == 1  # the model's count, not the rows'
    # The lag is the oldest due window not yet learned: open past its due time, or closed and waiting.
    seq = db.execute("SELECT seq FROM events WHERE id = ?", [event]).fetchone()[0]
    now = time.time()
    db.executemany(
        "INSERT INTO pending (event_seq, policy, due_at, closed_at) VALUES (?, ?, ?, ?)",
        [(seq, "titles", now - 30, None), (seq, "artwork", now - 50, now - 40)],
    )
    health = client.get("/healthz").get_json()["policies"]
    assert 30 <= health["titles"]["learner_lag_seconds"] < 40
    assert 50 <= health["artwork"]["learner_lag_seconds"] < 60
    assert health["titles"]["version"] == 1 and health["actions"]["learner_lag_seconds"] == 0.0
