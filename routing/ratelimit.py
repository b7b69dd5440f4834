"""Per-platform rate limits: a token bucket per platform (``ocpi-hub registry limit CC:PID --rps N --burst M``).

Owns: the bucket arithmetic and one bucket per limited platform in this process. A bucket holds up to ``burst``
requests and refills at ``rps``; a request that finds it empty is refused with the seconds until one is back
(HTTP 429 + Retry-After, hub/envelope.py). The limit is per hub process, like Envoy's local rate limit: with N
processes (workers, replicas) a platform may reach N times the rate in all — a shared count would cost a Redis
round trip per request.
Must not: do I/O or read a clock (``now`` is passed in).
"""

from __future__ import annotations

from routing.errors import RateLimitedError


class TokenBucket:
    __slots__ = ("burst", "level", "rps", "updated")

    def __init__(self, rps: float, burst: int, now: float) -> None:
        self.rps = rps
        self.burst = burst
        self.level = float(burst)
        self.updated = now

    def take(self, now: float) -> float:
        """Take one request's token: 0.0 when there was one, else the seconds until there is."""
        self.level = min(self.burst, self.level + (now - self.updated) * self.rps)
        self.updated = now
        if self.level >= 1.0:
            self.level -= 1.0
            return 0.0
        return (1.0 - self.level) / self.rps


class Limiter:
    """The buckets of this process; a platform whose limit changed gets a fresh bucket."""

    def __init__(self) -> None:
        self.buckets: dict[str, TokenBucket] = {}

    def admit(self, platform_id: str, limit: tuple[float, int], now: float) -> None:
        """Count one request of a limited platform; RateLimitedError (HTTP 429) when it is over its limit."""
        rps, burst = limit
        bucket = self.buckets.get(platform_id)
        if bucket is None or bucket.rps != rps or bucket.burst != burst:
            bucket = self.buckets[platform_id] = TokenBucket(rps, burst, now)
        wait = bucket.take(now)
        if wait > 0.0:
            raise RateLimitedError(f"rate limit of {rps:g} requests per second reached; retry later", wait)
