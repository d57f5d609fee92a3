"""Per-key rate limits: a token bucket for each API key, in each serving process.

A key may send ``rate`` requests a second on average and ``burst`` at once. Each serving process
keeps its own buckets (sharing them would cost a database write per request), so with N gunicorn
workers a key can get up to N times the rate through the service: set ``MARQUEE_RATE_LIMIT`` per
worker. A refused request is a 429 with ``Retry-After`` (whole seconds until a token is back) and
changes nothing.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_KEYS = 10_000  # buckets kept per process; the least recently used go first


class Limiter:
    """Token buckets by key: ``rate`` tokens a second, at most ``burst`` saved."""

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be above 0 and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend a token of ``key``; return 0.0 if there was one, else the seconds until there is."""
        with self._lock:
            now = self.clock()
            tokens, when = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
            return wait


def retry_after(wait: float) -> int:
    """Return the ``Retry-After`` value for a wait: whole seconds, at least 1."""
    return max(1, math.ceil(wait))
