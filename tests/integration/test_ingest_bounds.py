"""Ingest always ends, and a keyed source never hands its key to another host: local servers on 127.0.0.1 that
never advance their cursor, trickle their body, send more bytes than any page, or redirect elsewhere."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from pydantic import SecretStr

from bitpredict.config import HttpSettings
from bitpredict.data.ingest import ingest_batch_source, ingest_range_source
from bitpredict.data.sources.coingecko import CoinGeckoChartSource
from bitpredict.data.sources.cryptocompare import CryptoCompareSource
from bitpredict.data.sources.twitter import TwitterSource
from tests.fakes import apis
from tests.fakes.server import FakeServer, Fault, Request, Response

NOW = pd.Timestamp("2024-06-10 12:00", tz="UTC")
DAY = 86_400
BOUNDED = {"timeout_s": 0.5, "max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "deadline_s": 1.0}
pytestmark = pytest.mark.timeout(60)  # before the bounds, each of these ran until this timeout


def _http(**overrides: Any) -> HttpSettings:
    rates = {s: 1000.0 for s in ("binance", "cryptocompare", "coingecko", "rss", "twitter")}
    return HttpSettings(**{**BOUNDED, "rate_limit_per_s": rates, **overrides})


def _stuck_history(req: Request) -> Response:
    """A CryptoCompare (or a caching proxy) that answers every ``toTs`` with the same three newest days."""
    last = int(NOW.floor("D").timestamp()) - DAY
    bars = [{"time": last - k * DAY, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volumefrom": 1.0,
             "volumeto": 1.5} for k in (2, 1, 0)]  # fmt: skip
    data = {"Aggregated": False, "TimeFrom": last - 2 * DAY, "TimeTo": last, "Data": bars}
    return Response.json({"Response": "Success", "Message": "", "Type": 100, "Data": data})


def test_a_cursor_that_does_not_move_back_stops_the_source(server: FakeServer, make_settings) -> None:  # type: ignore[no-untyped-def]
    server.route("/data/v2/histoday", _stuck_history)
    settings = make_settings(http=dict(BOUNDED))
    source = CryptoCompareSource(server.url, None, _http())
    summary = ingest_range_source(source, "1d", settings, since=pd.Timestamp("2015-01-01", tz="UTC"), now=NOW)
    assert summary.error and "cursor did not move" in summary.error
    assert len(server.hits("/data/v2/histoday")) == 2  # the page that moved, the one that did not: then stop
    assert summary.fetched == 3  # what arrived before is kept


def test_a_pager_is_capped_at_max_pages(server: FakeServer, make_settings) -> None:  # type: ignore[no-untyped-def]
    daily = pd.DataFrame({"t": [int(NOW.floor("D").timestamp()) - k * DAY for k in range(400)]})
    daily = daily.assign(open=1.0, high=2.0, low=0.5, close=1.5, volume=1.0).sort_values("t")
    apis.cryptocompare(server, daily, daily)
    source = CryptoCompareSource(server.url, None, _http(max_pages=3))
    settings = make_settings(http=dict(BOUNDED))
    since = pd.Timestamp("2015-01-01", tz="UTC")
    source_pages = []
    original = source.pages

    def counted(*args: Any) -> Iterator[Any]:
        for page in original(*args):
            source_pages.append(page)
            yield page

    source.pages = counted  # type: ignore[method-assign]
    source_limit = 30
    import bitpredict.data.sources.cryptocompare as cc

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cc, "PAGE_LIMIT", source_limit)  # small pages: 400 days would take 14
        summary = ingest_range_source(source, "1d", settings, since=since, now=NOW)
    assert summary.error and "more than 3 pages" in summary.error
    assert len(source_pages) == 3


def test_a_trickling_server_meets_the_overall_deadline(server: FakeServer, make_settings) -> None:  # type: ignore[no-untyped-def]
    server.route("/data/v2/histoday", _stuck_history)
    server.inject("/data/v2/histoday", Fault.trickle(0.05), Fault.trickle(0.05))  # each byte well within 0.5 s
    source = CryptoCompareSource(server.url, None, _http())
    started = time.monotonic()
    summary = ingest_range_source(source, "1d", make_settings(http=dict(BOUNDED)), since=NOW - pd.Timedelta(days=2),
                                  now=NOW)  # fmt: skip
    took = time.monotonic() - started
    assert summary.error and "deadline exceeded" in summary.error, summary.error
    assert took < 6, f"two attempts under a 1 s deadline took {took:.1f} s"  # the body alone would take ~40 s each


def test_a_body_over_the_byte_cap_stops_the_source(server: FakeServer, make_settings) -> None:  # type: ignore[no-untyped-def]
    server.route("/data/v2/histoday", _stuck_history)
    source = CryptoCompareSource(server.url, None, _http(max_response_bytes=200))
    summary = ingest_range_source(source, "1d", make_settings(), since=NOW - pd.Timedelta(days=2), now=NOW)
    assert summary.error and "200-byte cap" in summary.error
    assert len(server.hits("/data/v2/histoday")) == 1  # not retried: no page of the API is that large


def test_a_next_token_seen_before_stops_twitter(server: FakeServer, make_settings) -> None:  # type: ignore[no-untyped-def]
    tweets = apis.make_tweets(5)

    def circular(req: Request) -> Response:
        meta = {"result_count": 5, "newest_id": tweets[0]["id"], "oldest_id": tweets[-1]["id"], "next_token": "abc"}
        return Response.json({"data": tweets, "meta": meta})

    server.route("/2/tweets/search/recent", circular)
    source = TwitterSource(server.url, "bitcoin", SecretStr("token-1"), _http())
    summaries = ingest_batch_source(source, make_settings())
    assert summaries[0].error and "cursor did not move" in summaries[0].error
    assert len(server.hits("/2/tweets/search/recent")) == 2


def test_a_keyed_source_does_not_follow_a_redirect_with_its_key(server: FakeServer, make_settings) -> None:  # type: ignore[no-untyped-def]
    elsewhere = FakeServer().start()
    try:
        elsewhere.route("/api/v3/coins/bitcoin/market_chart/range", lambda req: Response.json({"prices": []}))
        target = f"{elsewhere.url}/api/v3/coins/bitcoin/market_chart/range"
        server.route("/api/v3/coins/bitcoin/market_chart/range",
                     lambda req: Response(302, b"", {"Location": target}))  # fmt: skip
        source = CoinGeckoChartSource(server.url + "/api/v3", SecretStr("cg-secret-key"), _http())
        summary = ingest_range_source(source, "1d", make_settings(), since=NOW - pd.Timedelta(days=3), now=NOW)
        assert summary.error and "redirected to" in summary.error
        assert not elsewhere.requests, "the key was carried to the redirect's host"
    finally:
        elsewhere.stop()
