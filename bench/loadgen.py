"""An open-loop HTTP load generator: Poisson arrivals at a fixed rate, latency from the scheduled time.

Closed-loop tools (wrk, hey's per-worker tickers) wait for a response before sending the next
request, so a slow response delays the requests behind it and hides their waiting ("coordinated
omission"). Here every request has a scheduled send time drawn from a Poisson process, and its
latency is measured from that time, whether or not the generator could send it on schedule.
"""

from __future__ import annotations

import asyncio
import json
import random
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
        }


class _Pool:
    """Keep-alive connections, reused when the server keeps them open (gunicorn's sync workers do not)."""

    def __init__(self, host: str, port: int, headers: Mapping[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"{self.extra}Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            payload = await reader.readexactly(int(headers.get(b"content-length", b"0")))
        except BaseException:
            writer.close()
            raise
        if headers.get(b"connection", b"").lower() == b"close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return int(head.split(b" ", 2)[1]), payload


async def _run(
    host: str,
    port: int,
    *,
    rate: float,
    seconds: float,
    make: Callable[[int], tuple[str, str, dict]],
    seed: int,
    timeout: float,
    headers: Mapping[str, str] | None,
) -> LoadResult:
    rng = random.Random(seed)
    result = LoadResult()
    pool = _Pool(host, port, headers)
    tasks = []
    start = time.perf_counter()

    async def one(index: int, scheduled: float) -> None:
        result.send_lags.append(time.perf_counter() - scheduled)
        method, path, body = make(index)
        try:
            status, _ = await asyncio.wait_for(pool.request(method, path, json.dumps(body).encode()), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            result.failures += 1
            return
        result.latencies.append(time.perf_counter() - scheduled)
        result.statuses[status] = result.statuses.get(status, 0) + 1

    scheduled = start
    index = 0
    while True:
        scheduled += rng.expovariate(rate)
        if scheduled - start > seconds:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
        index += 1
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - start
    return result


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

    ``headers`` go with every request (an API key, say).
    """
    return asyncio.run(
        _run(host, port, rate=rate, seconds=seconds, make=make, seed=seed, timeout=timeout, headers=headers)
    )
