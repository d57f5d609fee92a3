"""Prometheus metrics at ``/metrics``, correct across gunicorn workers.

Under gunicorn, ``gunicorn.conf.py`` (read by gunicorn from the working directory) points
``PROMETHEUS_MULTIPROC_DIR`` at ``<DATA_DIR>/metrics`` before anything imports prometheus-client,
and empties it when the master starts; each worker then keeps its counters and histograms in memory-mapped
files there and a scrape of any worker sums them all (prometheus-client's multiprocess mode). A worker
that dies keeps its counts (they stay in its files); its live gauges are dropped when the master reaps
it. Without that variable (``flask run``, tests) the metrics live in the one process.

What the database knows (newest model versions and their age, learner lag, windows pending, whether
the learner holds its lock) is read at scrape time by the worker that answers, so it is the same
whichever worker Prometheus reaches and costs nothing between scrapes.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bandits.learn.learner import learner_running
from bandits.log import eventlog
from bandits.model.policy import POLICY_NAMES, newest_stamps
from service.db import get_db

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "marquee_http_requests",
    "HTTP requests answered, by route, method and status code",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    "marquee_http_request_duration_seconds",
    "Time from a request's arrival to its response, by route",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
DECISIONS = Counter("marquee_decisions", "Rows ranked and logged")
PICKS = Counter(
    "marquee_picks", "Title and artwork picks, by policy and whether the pick explored", ["policy", "explored"]
)
REWARDS = Counter(
    "marquee_rewards",
    "Rewards stored, by type (value: sent as a number) and whether any policy's window was still open (credited)",
    ["type", "credited"],
)
REWARD_VALUES = Summary("marquee_reward_value", "Values of the rewards stored")
_PICK_CHILDREN = {
    (policy, explored): PICKS.labels(policy, "true" if explored else "false")
    for policy in ("titles", "artwork")
    for explored in (True, False)
}
SERVING_VERSION = Gauge(
    "marquee_serving_model_version",
    "Model version each serving process decides with",
    ["policy"],
    multiprocess_mode="liveall",
)


def multiprocess_mode() -> bool:
    """Whether this process shares its metrics with other workers through files."""
    return bool(os.environ.get(MULTIPROC_ENV))


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time: models, learner lag, pending windows, learner up."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        with self.app.app_context():
            db = get_db()
            now = time.time()
            version = GaugeMetricFamily("marquee_model_version", "Newest published model version", labels=["policy"])
            age = GaugeMetricFamily(
                "marquee_model_age_seconds", "Seconds since the newest model version was published", labels=["policy"]
            )
            lag = GaugeMetricFamily(
                "marquee_learner_lag_seconds",
                "How long the oldest impression due for learning has waited (0: none waiting)",
                labels=["policy"],
            )
            waiting = GaugeMetricFamily(
                "marquee_events_pending", "Events not yet learned, by state", labels=["policy", "state"]
            )
            learned = GaugeMetricFamily(
                "marquee_events_learned",
                "Events the policy's newest model has learned, along its versions (a reset starts again at 0)",
                labels=["policy"],
            )
            # A scrape reads no model and counts no more of the log than the reward windows still open.
            stamps = newest_stamps(db)
            for name in POLICY_NAMES:
                stamp = stamps.get(name)
                if stamp is not None:
                    version.add_metric([name], stamp.version)
                    age.add_metric([name], now - stamp.created_at)
                    learned.add_metric([name], stamp.events_learned)
                lag.add_metric([name], eventlog.learner_lag(db, name, now=now))
                windows = eventlog.window_counts(db, name, now=now)
                waiting.add_metric([name, "waiting_for_rewards"], windows["events_waiting_for_rewards"])
                waiting.add_metric([name, "due"], windows["events_due"])
                waiting.add_metric([name, "deferred"], windows["events_deferred_not_activated"])
            up = GaugeMetricFamily("marquee_learner_running", "1 when a learner holds the database's learner lock")
            up.add_metric([], 1.0 if learner_running(self.app.config["DATABASE"]) else 0.0)
            mode = GaugeMetricFamily(
                "marquee_metrics_multiprocess",
                "1 when the counters add up every gunicorn worker (see gunicorn.conf.py)",
            )
            mode.add_metric([], 1.0 if multiprocess_mode() else 0.0)
        yield from (version, age, lag, waiting, learned, up, mode)


class WorkerFiles(multiprocess.MultiProcessCollector):
    """Every worker's metric files summed, less any file a starting worker has created and not yet sized.

    prometheus-client creates a worker's file empty and then grows it to its first size; a scrape that
    lists the folder in between would fail to read its header (a 500 from ``/metrics`` whenever a
    worker is replaced during a scrape). An empty file holds no samples, so leaving it out is exact.
    A live gauge's file the master removes between the listing and the read is left out too.
    """

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(path) > 0:
                    files.append(path)
            except FileNotFoundError:
                continue
        return self.merge(files, accumulate=True)


def _endpoint() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def register(app: Flask) -> None:
    """Time and count every request, and build the registry ``/metrics`` reads."""
    if multiprocess_mode():
        Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)
        registry = CollectorRegistry()
        WorkerFiles(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_ProcessMetrics())
    registry.register(DatabaseCollector(app))
    app.extensions["marquee_metrics"] = registry

    @app.before_request
    def _start() -> None:
        g.marquee_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("marquee_started")
        if started is not None:
            endpoint = _endpoint()
            LATENCY.labels(endpoint).observe(time.perf_counter() - started)
            REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        return response


class _ProcessMetrics(Collector):
    """This process's own metrics (the default registry), for a service that is one process."""

    def collect(self) -> Iterator[Metric]:
        for collector in (REQUESTS, LATENCY, DECISIONS, PICKS, REWARDS, REWARD_VALUES, SERVING_VERSION):
            yield from collector.collect()


def exposition() -> Response:
    """The metrics in Prometheus's text format."""
    registry: CollectorRegistry = current_app.extensions["marquee_metrics"]
    return Response(generate_latest(registry), mimetype="text/plain", content_type=CONTENT_TYPE)


def decision(slots: Any) -> None:
    """Count a logged row and its picks (at most four increments, whatever the row's length)."""
    DECISIONS.inc()
    explored_titles = sum(1 for slot in slots if slot.title_explored)
    explored_artwork = sum(1 for slot in slots if slot.artwork_explored)
    for policy, explored in (("titles", explored_titles), ("artwork", explored_artwork)):
        if explored:
            _PICK_CHILDREN[policy, True].inc(explored)
        if len(slots) - explored:
            _PICK_CHILDREN[policy, False].inc(len(slots) - explored)


def reward(value: float, *, reward_type: str | None, credited: bool, replayed: bool) -> None:
    """Count a stored reward (a replayed one was counted the first time)."""
    if replayed:
        return
    REWARDS.labels(reward_type or "value", "true" if credited else "false").inc()
    REWARD_VALUES.observe(value)


def serving(policy: str, version: int) -> None:
    """Record the model version this process now serves for ``policy``."""
    SERVING_VERSION.labels(policy).set(version)
