"""The shared HTTP layer's policy pieces: Retry-After parsing, backoff bounds, the rate limiter."""

from __future__ import annotations

import email.utils

import pytest

from bitpredict.config import HttpSettings
from bitpredict.data.sources.http import HttpClient, RateLimiter, SourceError, parse_retry_after


def test_retry_after_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_grows_with_jitter_and_respects_the_cap() -> None:
    client = HttpClient("x", HttpSettings(backoff_base_s=1.0, backoff_max_s=5.0))
    delays = [client._backoff(n, None) for n in range(6)]
    assert 0.5 <= delays[0] <= 1.5 and 1.0 <= delays[1] <= 3.0
    assert max(delays) <= 5.0
    assert client._backoff(0, 120.0) == 5.0  # a huge Retry-After is capped too
    assert client._backoff(0, 2.0) == 2.0


def test_rate_limiter_spaces_calls() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    limiter = RateLimiter(rate_per_s=2.0, clock=lambda: clock[0])
    for _ in range(4):
        limiter.wait(sleep)
    assert slept == [0.5, 0.5, 0.5]


def test_connection_refused_is_retried_then_reported() -> None:
    slept: list[float] = []
    client = HttpClient("x", HttpSettings(max_retries=2, backoff_base_s=0.01, timeout_s=0.2), sleep=slept.append)
    with pytest.raises(SourceError, match="x: ping: gave up after 3 attempts; last problem: connection failed"):
        client.get_json("http://127.0.0.1:9/", what="ping")  # port 9 (discard) is closed on loopback
    assert client.stats.retries == 2 and client.stats.failures == {"connection": 3}
