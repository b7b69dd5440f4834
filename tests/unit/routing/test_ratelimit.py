"""routing/ratelimit.py: token bucket arithmetic per platform, on a clock the test moves."""

from __future__ import annotations

import pytest

from routing.errors import RateLimitedError
from routing.outcome import Outcome
from routing.ratelimit import Limiter, TokenBucket


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def test_a_fresh_bucket_admits_its_burst_at_once_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rps=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token back after 1/rps
    assert bucket.take(0.0) == pytest.approx(0.5)  # a refusal costs nothing


def test_a_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rps=4.0, burst=1, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.125) == pytest.approx(0.125)  # half a token there, half to go
    assert bucket.take(0.25) == 0.0
    assert bucket.take(0.25) == pytest.approx(0.25)


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(rps=10.0, burst=2, now=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert [bucket.take(3_600.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]


def test_a_slow_rate_waits_whole_seconds() -> None:
    bucket = TokenBucket(rps=0.5, burst=1, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(2.0)
    assert bucket.take(1.5) == pytest.approx(0.5)
    assert bucket.take(2.0) == 0.0


def test_a_steady_sender_gets_exactly_the_rate_plus_the_burst() -> None:
    # A request every 10 ms for 10.05 s at 5 rps with a burst of 4: floor(4 + 5 * 10.05) = 54 admitted (the
    # window ends between two refills, clear of floating-point ties).
    bucket = TokenBucket(rps=5.0, burst=4, now=0.0)
    admitted = sum(bucket.take(i / 100) == 0.0 for i in range(1, 1006))
    assert admitted == 54


def test_the_wait_it_names_is_enough_and_not_more() -> None:
    bucket = TokenBucket(rps=3.0, burst=1, now=0.0)
    bucket.take(0.0)
    wait = bucket.take(0.1)
    assert wait > 0.0
    assert bucket.take(0.1 + wait * 0.999) > 0.0
    assert bucket.take(0.1 + wait) == 0.0


# -- Limiter: one bucket per platform, refused with the wait ----------------------------------------------------


def test_the_limiter_refuses_with_a_429_error_naming_the_wait() -> None:
    clock = Clock()
    limiter = Limiter()
    limiter.admit("p", (1.0, 2), clock.now)
    limiter.admit("p", (1.0, 2), clock.now)
    with pytest.raises(RateLimitedError, match="1 requests per second") as caught:
        limiter.admit("p", (1.0, 2), clock.now)
    assert caught.value.retry_after == pytest.approx(1.0)
    assert caught.value.outcome is Outcome.RATE_LIMITED
    limiter.admit("p", (1.0, 2), clock.advance(1.0))


def test_platforms_have_buckets_of_their_own() -> None:
    clock = Clock()
    limiter = Limiter()
    limiter.admit("a", (1.0, 1), clock.now)
    limiter.admit("b", (1.0, 1), clock.now)
    with pytest.raises(RateLimitedError):
        limiter.admit("a", (1.0, 1), clock.now)
    with pytest.raises(RateLimitedError):
        limiter.admit("b", (1.0, 1), clock.now)


def test_a_changed_limit_starts_a_fresh_full_bucket() -> None:
    clock = Clock()
    limiter = Limiter()
    limiter.admit("p", (1.0, 1), clock.now)
    with pytest.raises(RateLimitedError):
        limiter.admit("p", (1.0, 1), clock.now)
    for _ in range(5):  # the operator raised the burst: the new limit applies at once
        limiter.admit("p", (1.0, 5), clock.now)
    with pytest.raises(RateLimitedError):
        limiter.admit("p", (1.0, 5), clock.now)
    limiter.admit("p", (2.0, 5), clock.now)  # a new rate too
    assert limiter.buckets["p"].rps == 2.0


def test_the_same_limit_keeps_the_bucket_and_its_level() -> None:
    clock = Clock()
    limiter = Limiter()
    limiter.admit("p", (10.0, 1), clock.now)
    bucket = limiter.buckets["p"]
    with pytest.raises(RateLimitedError) as caught:
        limiter.admit("p", (10.0, 1), clock.advance(0.05))
    assert caught.value.retry_after == pytest.approx(0.05)
    assert limiter.buckets["p"] is bucket
