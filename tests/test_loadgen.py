"""The open-loop generator (bench.loadgen): every request counted, latency from its scheduled time."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

import pytest

from bench.loadgen import run


class _Recorder:
    """What a test server saw: request bodies, header values, connections accepted."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.keys: list[str | None] = []
        self.connections = 0
        self.lock = threading.Lock()


def _handler(recorder: _Recorder, *, keep_alive: bool, stall_first: float = 0.0) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def setup(self) -> None:
            super().setup()
            with recorder.lock:
                recorder.connections += 1

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with recorder.lock:
                first = not recorder.bodies
                recorder.bodies.append(body)
                recorder.keys.append(self.headers.get("X-API-Key"))
            if first and stall_first:
                time.sleep(stall_first)
            answer = json.dumps({"index": body["index"]}).encode()
            self.send_response(201 if body["index"] % 5 == 0 else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            if not keep_alive:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[tuple[int, _Recorder]]:
    """A local HTTP server; the test's parameters choose threads, keep-alive and a stalled first answer."""
    threaded, keep_alive, stall_first = request.param
    recorder = _Recorder()
    kind = ThreadingHTTPServer if threaded else HTTPServer
    httpd = kind(("127.0.0.1", 0), _handler(recorder, keep_alive=keep_alive, stall_first=stall_first))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], recorder
    finally:
        httpd.shutdown()
        httpd.server_close()


def _make(index: int) -> tuple[str, str, dict]:
    return "POST", "/v1/rank", {"index": index, "user": {"id": f"u-{index % 7}"}}


@pytest.mark.parametrize("server", [(True, False, 0.0)], indirect=True)
def test_every_scheduled_request_is_sent_answered_and_counted(server: tuple[int, _Recorder]) -> None:
    port, recorder = server
    result = run("127.0.0.1", port, rate=200, seconds=1.0, make=_make, seed=3, headers={"X-API-Key": "k-1"})
    summary = result.summary()
    assert result.failures == 0
    assert summary["requests"] == len(result.latencies) == len(result.send_lags) == len(recorder.bodies)
    assert 120 < summary["requests"] < 300  # a Poisson second at 200 a second
    # Each body as made for its index, each once; the header on every request; the statuses as answered.
    assert sorted(body["index"] for body in recorder.bodies) == list(range(summary["requests"]))
    assert recorder.bodies[0] == _make(recorder.bodies[0]["index"])[2]
    assert set(recorder.keys) == {"k-1"}
    created = sum(1 for index in range(summary["requests"]) if index % 5 == 0)
    assert result.statuses == {200: summary["requests"] - created, 201: created}
    assert summary["non_2xx"] == 0
    assert result.cpu_seconds > 0 and summary["generator_cores"] > 0


@pytest.mark.parametrize("server", [(True, False, 0.0)], indirect=True)
def test_the_same_seed_schedules_the_same_requests(server: tuple[int, _Recorder]) -> None:
    port, _ = server
    counts = [len(run("127.0.0.1", port, rate=150, seconds=0.5, make=_make, seed=seed).latencies) for seed in (7, 7, 8)]
    assert counts[0] == counts[1] != counts[2]


@pytest.mark.parametrize("server", [(False, False, 0.4)], indirect=True)
def test_latency_counts_the_wait_behind_a_stalled_answer(server: tuple[int, _Recorder]) -> None:
    """A server answering one request at a time stalls on the first: those scheduled meanwhile waited.

    A closed-loop generator would send them only after the stall and report them fast; measured from
    their scheduled times, each reports at least what was left of the stall when it was due.
    """
    port, recorder = server
    result = run("127.0.0.1", port, rate=100, seconds=1.0, make=_make, seed=1)
    assert result.failures == 0 and len(result.latencies) == len(recorder.bodies)
    waited = [latency for latency in result.latencies if latency >= 0.2]
    assert len(waited) >= 10  # some 20 requests fall due in the stall's first 0.2 s
    assert max(result.latencies) >= 0.4


@pytest.mark.parametrize("server", [(True, True, 0.0)], indirect=True)
def test_connections_the_server_keeps_open_are_used_again(server: tuple[int, _Recorder]) -> None:
    port, recorder = server
    result = run("127.0.0.1", port, rate=200, seconds=1.0, make=_make, seed=2)
    assert result.failures == 0 and len(result.latencies) == len(recorder.bodies)
    assert recorder.connections < len(recorder.bodies) / 2


def test_a_server_that_is_not_there_counts_every_request_failed() -> None:
    with socket.socket() as placeholder:  # a port nothing listens on once closed
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    result = run("127.0.0.1", port, rate=100, seconds=0.3, make=_make, seed=4)
    assert result.latencies == [] and result.statuses == {}
    assert result.failures == len(result.send_lags) > 0
