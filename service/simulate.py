"""Drive Marquee with the simulated audience through its HTTP API, and keep score against baselines.

Each step draws a viewer, asks the service for a row (``POST /v1/rank``), lets the viewer respond,
and posts a reward for every click or play (``POST /v1/events/{id}/reward``). The score of every
row is its exact expected reward in the simulated world, so learning curves are free of the
viewers' coin flips; the same is scored, on the same viewer at the same moment, for the baselines:

* ``oracle``: the best row the world knows of;
* ``uniform``: titles and artworks drawn uniformly (a fresh random row per step);
* ``default artwork``: the service's titles, each in its first artwork (what artwork personalization adds).

A ``Transport`` is the HTTP client: Flask's test client in the process, or a connection to a
running service.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from assets.demo import build_demo_catalog
from bandits.learn.learner import Learner
from bandits.learn.tastes import refit_if_due
from bandits.simulator import REWARDS, Viewer, World
from bandits.storage import connect

BASELINES = ("oracle", "uniform", "default artwork")
POLICIES = ("marquee", *BASELINES)


class Transport(Protocol):
    """Sends requests to the service and returns (status, JSON body)."""

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]: ...

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]: ...

    def get(self, path: str) -> tuple[int, Any]: ...


class FlaskTransport:
    """Requests through a Flask test client (the app in this process)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        response = self.client.open(path, method=method, json=body)
        return response.status_code, response.get_json(silent=True)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        return self.send("POST", path, body)

    def get(self, path: str) -> tuple[int, Any]:
        return self.send("GET", path)


class HttpTransport:
    """Requests over one kept-alive HTTP connection to a running service."""

    def __init__(self, url: str, *, timeout: float = 10.0, api_key: str | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"url: must be http://host[:port], got {url!r}")
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=timeout)
        self.prefix = parsed.path.rstrip("/")
        self.headers = {"X-API-Key": api_key} if api_key else {}

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        headers = {**self.headers, **({"Content-Type": "application/json"} if body is not None else {})}
        self.connection.request(
            method, self.prefix + path, body=json.dumps(body) if body is not None else None, headers=headers
        )
        response = self.connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        return self.send("POST", path, body)

    def get(self, path: str) -> tuple[int, Any]:
        return self.send("GET", path)


class SimulationError(RuntimeError):
    """The service answered a request of the simulation with an error."""


def _expect(transport: Transport, method: str, path: str, *, status: int, body: dict[str, Any] | None = None) -> Any:
    answered, answer = transport.send(method, path, body)
    if answered != status:
        raise SimulationError(f"{method} {path} answered {answered}: {answer}")
    return answer


def _ok(transport: Transport, path: str) -> Any:
    return _expect(transport, "GET", path, status=200)


def catalog_from_service(transport: Transport) -> list[dict[str, Any]]:
    """Return the service's active titles with their active artworks and the visual features measured on them."""
    return [
        {
            "id": title["id"],
            "genres": title["genres"],
            "artworks": [
                {"id": a["id"], "visual": a["visual"]}
                for a in _ok(transport, f"/v1/titles/{title['id']}/artworks")["artworks"]
            ],
        }
        for title in _ok(transport, "/v1/titles")["titles"]
    ]


@dataclass
class Point:
    """Scores over one window of impressions: expected reward per impression of each policy."""

    impressions: int  # impressions shown so far, at the end of the window
    clicks: int  # clicks the simulated viewers made in the window
    plays: int
    shown: int  # impressions in the window
    expected: dict[str, float]  # policy -> expected reward per impression in the window
    rates: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # "click"/"play" -> policy -> expected per impression

    def as_dict(self) -> dict[str, Any]:
        """Return the point as JSON-ready data."""
        return {
            "impressions": self.impressions,
            "click_rate": self.clicks / self.shown if self.shown else 0.0,
            "play_rate": self.plays / self.shown if self.shown else 0.0,
            "expected": self.expected,
            "expected_rates": self.rates,
        }


@dataclass
class Curve:
    """A simulation's learning curve and totals."""

    reward: str
    slots: int
    points: list[Point] = field(default_factory=list)

    def summary(self, last: int | None = None) -> dict[str, float]:
        """Return each policy's expected reward per impression over the last ``last`` points (all by default)."""
        points = self.points[-last:] if last else self.points
        total = sum(p.shown for p in points)
        return {name: sum(p.expected[name] * p.shown for p in points) / total if total else 0.0 for name in POLICIES}


def _restore(transport: Transport, kind: str, item_id: str) -> None:
    """Put a retired title (a PUT of its own fields reactivates it) or artwork back into the service's catalog."""
    if kind == "artwork":
        _expect(transport, "POST", f"/v1/artworks/{item_id}/restore", status=200)
        return
    title = _expect(transport, "GET", f"/v1/titles/{item_id}", status=200)
    _expect(
        transport,
        "PUT",
        f"/v1/titles/{item_id}",
        status=200,
        body={key: title[key] for key in ("name", "genres", "year", "maturity", "features")},
    )


def baseline_rows(
    world: World, viewer: Viewer, row: list[tuple[str, str]], *, at: int, reward: str, rng: np.random.Generator
) -> dict[str, list[tuple[str, str]]]:
    """Return the baselines' rows for the viewer a policy just showed ``row`` to, at impression ``at``.

    ``oracle``: the best row for ``reward``; ``uniform``: as many titles drawn uniformly from those
    offered, each in an artwork drawn uniformly from its offered ones (from ``rng``); ``default
    artwork``: the row's titles, each in its first artwork.
    """
    available = world.available(at)
    picks = rng.choice(len(available), size=min(len(row), len(available)), replace=False)
    uniform = []
    for i in picks:
        offered = world.artworks(available[i], at)
        uniform.append((available[i], offered[int(rng.integers(len(offered)))].id))
    return {
        "oracle": world.oracle(viewer, slots=len(row), at=at, reward=reward),
        "uniform": uniform,
        "default artwork": [(title_id, world.titles[title_id].artworks[0].id) for title_id, _ in row],
    }


def set_reward_rule(transport: Transport, reward: str) -> None:
    """Make both row policies learn ``reward``: worth 1, the other outcome 0, the best of a title's rewards counts.

    The simulation reports every click and every play as a typed reward, as a client would; this rule
    (``PATCH /v1/policies/{name}``, other settings kept) decides which of them the policies learn.

    Raises:
        SimulationError: the service refused the change (an admin key is needed).
    """
    rule = {"reward_values": {kind: 1.0 if kind == reward else 0.0 for kind in REWARDS}, "aggregation": "max"}
    for policy in ("titles", "artwork"):
        status, answer = transport.send("PATCH", f"/v1/policies/{policy}", rule)
        if status != 200:
            raise SimulationError(
                f"PATCH /v1/policies/{policy} answered {status}: {answer}; the simulation sets the "
                f"reward rule so that the policies learn {reward}s, which takes an admin key"
            )


def drive(
    transport: Transport,
    world: World,
    *,
    impressions: int,
    slots: int = 4,
    reward: str = "play",
    seed: int = 0,
    window: int = 1000,
    learn: Callable[[], None] | None = None,
    learn_every: int = 200,
    progress: Callable[[Point], None] | None = None,
) -> Curve:
    """Show about ``impressions`` impressions (rows of ``slots``) to simulated viewers; return the learning curve.

    Titles and artworks of the world that arrive late are retired from the service's catalog first
    and put back when the simulation reaches their arrival, or when it stops early.

    Every click and every play is reported as a typed reward (``click``, ``play``), and both row
    policies are set to learn ``reward`` (``set_reward_rule``): ``play`` or ``click``. ``learn`` is called every
    ``learn_every`` rows (in the process, to run the learner; a running service learns by itself).

    Raises:
        SimulationError: the service refused a rank or a reward.
    """
    if reward not in REWARDS:
        raise ValueError(f"reward: must be one of {', '.join(REWARDS)}, got {reward!r}")
    # Titles and artworks that arrive late are not in the catalog until they arrive.
    waiting = sorted(
        [(title.arrives_at, "title", title_id) for title_id, title in world.titles.items() if title.arrives_at > 0]
        + [
            (artwork.arrives_at, "artwork", artwork.id)
            for title in world.titles.values()
            for artwork in title.artworks
            if artwork.arrives_at > 0
        ]
    )
    for _, kind, item_id in waiting:
        _expect(transport, "DELETE", f"/v1/{kind}s/{item_id}", status=204)
    set_reward_rule(transport, reward)
    rng = np.random.default_rng(seed)  # the viewers and their responses
    baseline_rng = np.random.default_rng([seed, 1])  # the uniform baseline's rows
    curve = Curve(reward=reward, slots=slots)
    window_totals = {(kind, name): 0.0 for kind in REWARDS for name in POLICIES}
    clicks = plays = shown = done = rows = 0
    try:
        while done < impressions:
            while waiting and waiting[0][0] <= done:
                _restore(transport, *waiting.pop(0)[1:])
            viewer = world.draw_viewer(rng)
            status, body = transport.post(
                "/v1/rank", {"user": {"id": viewer.id, "features": dict(viewer.features)}, "slots": slots}
            )
            if status != 200:
                raise SimulationError(f"POST /v1/rank answered {status}: {body}")
            row = [(slot["title_id"], slot["artwork_id"]) for slot in body["slots"]]
            for outcome in world.respond(viewer, row, rng, at=done):
                clicks += outcome.clicked
                plays += outcome.played
                for kind, happened in (("click", outcome.clicked), ("play", outcome.played)):
                    if not happened:
                        continue
                    status, answer = transport.post(
                        f"/v1/events/{body['event_id']}/reward", {"title_id": outcome.title_id, "type": kind}
                    )
                    if status != 201:
                        raise SimulationError(f"POST /v1/events/.../reward answered {status}: {answer}")
            for name, candidate in (
                ("marquee", row),
                *baseline_rows(world, viewer, row, at=done, reward=reward, rng=baseline_rng).items(),
            ):
                for kind in REWARDS:  # the oracle's row is the best for ``reward``; its other rate is that row's
                    window_totals[kind, name] += world.row_value(viewer, candidate, at=done, reward=kind)
            shown += len(row)
            done += len(row)
            rows += 1
            if learn is not None and rows % learn_every == 0:
                learn()
            if shown >= window or done >= impressions:
                rates = {kind: {name: window_totals[kind, name] / shown for name in POLICIES} for kind in REWARDS}
                curve.points.append(
                    Point(
                        impressions=done, clicks=clicks, plays=plays, shown=shown, expected=rates[reward], rates=rates
                    )
                )
                window_totals = {key: 0.0 for key in window_totals}
                clicks = plays = shown = 0
                if progress is not None:
                    progress(curve.points[-1])
    finally:  # stopped early (an error, Ctrl-C): what had not arrived goes back into the catalog
        for _, kind, item_id in waiting:
            _restore(transport, kind, item_id)
    return curve


def format_summary(curve: Curve) -> str:
    """Return a table of each policy's expected reward per impression, early and late, and its share of the lift."""
    quarter = max(1, len(curve.points) // 4)
    early = Curve(reward=curve.reward, slots=curve.slots, points=curve.points[:quarter]).summary()
    late = curve.summary(last=quarter)
    shown = sum(p.shown for p in curve.points[-quarter:])
    lines = [
        f"expected {curve.reward}s per impression; first and last quarter of {curve.points[-1].impressions} "
        f"impressions (last quarter: {shown})",
        "",
        f"{'policy':<16} {'first':>8} {'last':>8}  share of the oracle's lift over uniform (last)",
        "-" * 76,
    ]
    span = late["oracle"] - late["uniform"]
    for name in POLICIES:
        share = f"{(late[name] - late['uniform']) / span:7.0%}" if span > 0 else "    n/a"
        lines.append(f"{name:<16} {early[name]:>8.4f} {late[name]:>8.4f}  {share}")
    clicks = sum(p.clicks for p in curve.points[-quarter:])
    plays = sum(p.plays for p in curve.points[-quarter:])
    lines += [
        "",
        f"marquee, observed in the last quarter: {clicks / shown:.3f} clicks and {plays / shown:.3f} plays per "
        "impression",
    ]
    return "\n".join(lines)


def scratch_service(
    folder: str,
    *,
    create_app: Callable[[Mapping[str, Any]], Any],
    seed: int,
    titles: int,
    settings: Mapping[str, Any] | None = None,
    artworks_per_title: int | None = None,
) -> tuple[FlaskTransport, Callable[[], None]]:
    """Start a service in this process on a fresh demo catalog in ``folder``; return its transport and learner step.

    The demo catalog has ``titles`` titles with ``artworks_per_title`` artworks each (None: 3 to 6).
    ``create_app`` is the app factory (``service.create_app``; the caller hands it down, as this module is
    below it). ``settings`` override the scratch service's configuration (e.g. ``EPSILON``). Its reward windows
    last a second and the learner step closes them at once, so that the simulation need not wait; the step also
    refits the viewers' taste classes when due (``bandits.learn.tastes``).
    """
    # AUTH off: the scratch service lives in this process only and nothing else can reach it.
    app = create_app(
        {"DATA_DIR": folder, "LEARNER": False, "REWARD_WAIT_SECONDS": 1.0, "AUTH": "off", **(settings or {})}
    )
    db = connect(app.config["DATABASE"])
    build_demo_catalog(db, data_dir=folder, seed=seed, count=titles, artworks_per_title=artworks_per_title)
    config = app.extensions["marquee"]["deployment"]
    learner = Learner(db, config)

    def learn() -> None:
        learner.run_once(now=time.time() + 2.0)
        refit_if_due(db, config)

    return FlaskTransport(app.test_client()), learn
