"""An open-loop HTTP load generator: Poisson arrivals at a fixed rate, latency from the scheduled time.

Closed-loop tools (wrk, hey's per-worker tickers) wait for a response before sending the next
request, so a slow response delays the requests behind it and hides their waiting ("coordinated
omission"). Here every request has a scheduled send time drawn from a Poisson process, and its
latency is measured from that time, whether or not the generator could send it on schedule.

The generator shares the machine with the server it measures, so its own CPU is part of what the
server's tail sees; it reports that CPU (``generator_cores``, ``generator_ms_per_request``) beside
how late it sent (``generator_send_lag_p99_ms``).
"""

from __future__ import annotations

import json
import random
import selectors
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    """Latencies (seconds, from scheduled time) and status counts of one run."""

    latencies: list[float] = field(default_factory=list)
    send_lags: list[float] = field(default_factory=list)  # how late the generator itself sent each request
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    elapsed: float = 0.0
    cpu_seconds: float = 0.0  # the generator's own CPU while it sent and read (its thread's, not the process's)

    def summary(self) -> dict[str, float]:
        """Return rate, percentiles in milliseconds and error counts."""
        lat = np.array(self.latencies) * 1000 if self.latencies else np.array([np.nan])
        ok = self.statuses.get(200, 0) + self.statuses.get(201, 0)
        return {
            "requests": len(self.latencies) + self.failures,
            "achieved_per_second": round(ok / self.elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "max_ms": round(float(lat.max()), 2),
            "non_2xx": sum(n for s, n in self.statuses.items() if s not in (200, 201)),
            "failures": self.failures,
            "generator_send_lag_p99_ms": round(float(np.percentile(np.array(self.send_lags) * 1000, 99)), 2)
            if self.send_lags
            else float("nan"),
            "generator_cores": round(self.cpu_seconds / self.elapsed, 3),
            "generator_ms_per_request": round(1000 * self.cpu_seconds / max(len(self.send_lags), 1), 3),
        }


class _Request:
    """One request in flight: its socket, the bytes still to send and the answer read so far."""

    __slots__ = ("sock", "scheduled", "payload", "sent", "answer", "head_end", "length", "deadline")

    def __init__(self, sock: socket.socket, scheduled: float, payload: bytes, deadline: float) -> None:
        self.sock, self.scheduled, self.payload, self.deadline = sock, scheduled, payload, deadline
        self.sent = 0
        self.answer = bytearray()
        self.head_end = -1  # where the answer's head ends, once it has
        self.length = -1  # the answer's Content-Length, once its head is read

    def complete(self) -> bool:
        """Return whether the whole answer (head and body) has been read."""
        if self.head_end < 0:
            end = self.answer.find(b"\r\n\r\n")
            if end < 0:
                return False
            self.head_end = end + 4
            self.length = 0
            for line in bytes(self.answer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    self.length = int(value)
        return len(self.answer) >= self.head_end + self.length

    def status(self) -> int:
        """Return the answer's status code."""
        return int(bytes(self.answer[: self.answer.find(b"\r\n")]).split(b" ", 2)[1])

    def keeps_alive(self) -> bool:
        """Return whether the server left the connection open for another request."""
        return b"connection: close" not in bytes(self.answer[: self.head_end]).lower()


def _encoded(host: str, method: str, path: str, body: dict, extra: str) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{extra}Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )


def run(
    host: str,
    port: int,
    *,
    rate: float,
    seconds: float,
    make: Callable[[int], tuple[str, str, dict]],
    seed: int = 0,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Send ``rate`` requests per second (Poisson) for ``seconds``; ``make(i)`` gives (method, path, JSON body).

    ``headers`` go with every request (an API key, say). Every request's bytes are made before the
    first is sent, and one thread drives all connections through the kernel's readiness events
    (``selectors``, epoll on Linux), so the generator spends as little CPU a request as Python
    allows on the cores it shares with the server (under half of what an asyncio generator
    spent). A connection the server keeps open is used again.
    """
    rng = random.Random(seed)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    offsets: list[float] = []
    at = 0.0
    while True:
        at += rng.expovariate(rate)
        if at > seconds:
            break
        offsets.append(at)
    payloads = [_encoded(host, *make(index), extra) for index in range(len(offsets))]
    result = LoadResult()
    selector = selectors.DefaultSelector()
    idle: list[socket.socket] = []
    flying: dict[int, _Request] = {}  # by socket file number

    def finish(request: _Request, *, failed: bool) -> None:
        selector.unregister(request.sock)
        del flying[request.sock.fileno()]
        if failed:
            request.sock.close()
            result.failures += 1
            return
        result.latencies.append(time.perf_counter() - request.scheduled)
        status = request.status()
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if request.keeps_alive():
            idle.append(request.sock)
        else:
            request.sock.close()

    def send(request: _Request) -> bool:
        """Send what the socket takes; return whether the whole request is out."""
        request.sent += request.sock.send(request.payload[request.sent :])
        return request.sent == len(request.payload)

    cpu = time.thread_time()
    start = time.perf_counter()
    following = 0
    next_sweep = start + 1.0
    while following < len(offsets) or flying:
        now = time.perf_counter()
        while following < len(offsets) and start + offsets[following] <= now:
            scheduled = start + offsets[following]
            result.send_lags.append(now - scheduled)
            if idle:
                sock = idle.pop()
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect_ex((host, port))
            request = _Request(sock, scheduled, payloads[following], scheduled + timeout)
            flying[sock.fileno()] = request
            selector.register(sock, selectors.EVENT_WRITE, request)
            following += 1
        wait = (start + offsets[following] - time.perf_counter()) if following < len(offsets) else 0.05
        for key, events in selector.select(timeout=max(wait, 0.0)):
            request = key.data
            try:
                if events & selectors.EVENT_WRITE:
                    if send(request):
                        selector.modify(request.sock, selectors.EVENT_READ, request)
                    continue
                chunk = request.sock.recv(65536)
                if not chunk:
                    finish(request, failed=True)
                    continue
                request.answer += chunk
                if request.complete():
                    finish(request, failed=False)
            except BlockingIOError:  # not ready after all: wait for the next event
                continue
            except (OSError, ValueError, IndexError):
                finish(request, failed=True)
        now = time.perf_counter()
        if now >= next_sweep:
            next_sweep = now + 1.0
            for request in [r for r in flying.values() if r.deadline < now]:
                finish(request, failed=True)
    for sock in idle:
        sock.close()
    selector.close()
    result.elapsed = time.perf_counter() - start
    result.cpu_seconds = time.thread_time() - cpu
    return result
