"""News (RSS/Atom via feedparser) and tweets (tweepy against a local X API v2 server)."""

from __future__ import annotations

import pandas as pd

from bitpredict import storage
from bitpredict.data.ingest import raw_table_uri, run_ingest
from bitpredict.pipeline.stage_table import QUARANTINE, data_path
from tests.fakes import apis
from tests.fakes.server import FakeServer, Fault


def _feeds(server: FakeServer) -> list[str]:
    apis.rss(server, {"/rss.xml": apis.RSS_DOC, "/atom.xml": apis.ATOM_DOC})
    return [server.url + "/rss.xml", server.url + "/atom.xml"]


def test_rss_and_atom_entries_are_normalised(server: FakeServer, make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(rss_feeds=_feeds(server))
    summaries = run_ingest(settings, ["rss"])
    assert all(s.ok for s in summaries), [s.error for s in summaries]
    news = storage.read_parquet(raw_table_uri(settings, "news_rss")).set_index("id")
    a = news.loc["guid-a"]
    assert a["title"] == "Bitcoin tops $70,000 & sets a record"  # entity decoded
    assert a["summary"] == "Prices rose — again."  # HTML stripped, numeric entity decoded
    assert a["published_at"] == pd.Timestamp("2024-03-11T23:59:30Z")
    assert news.loc["guid-b", "title"] == "ETF inflows slow (updated)"  # duplicate guid: the later entry wins
    assert news.loc["urn:entry:1", "published_at"] == pd.Timestamp("2024-03-12T07:30:00Z")  # +02:00 to UTC
    assert news.loc["urn:entry:2", "published_at"] == pd.Timestamp("2024-03-12T11:00:00Z")  # updated when no published
    assert set(news["feed"]) == set(settings.rss_feeds)

    quarantine = storage.read_parquet(storage.join(data_path(settings, QUARANTINE), "news_rss.parquet"))
    reasons = dict(zip(quarantine["id"], quarantine["reason"], strict=True))
    assert reasons["guid-c"] == "published_at: missing"  # the undated entry is not guessed
    assert "duplicate key" in reasons["guid-b"]
    assert len(news) + len(quarantine) == 6  # 4 RSS + 2 Atom entries: nothing lost


def test_unchanged_feeds_cost_one_304_each(server: FakeServer, make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(rss_feeds=_feeds(server))
    run_ingest(settings, ["rss"])
    before = storage.read_bytes(raw_table_uri(settings, "news_rss"))[0]
    [again] = run_ingest(settings, ["rss"])
    assert again.ok and again.fetched == 0
    assert [r.headers.get("if-none-match") is not None for r in server.requests[-2:]] == [True, True]
    assert storage.read_bytes(raw_table_uri(settings, "news_rss"))[0] == before


def test_a_broken_feed_is_retried_and_does_not_hide_the_others(server: FakeServer, make_settings) -> None:  # type: ignore[no-untyped-def]
    feeds = _feeds(server)
    server.inject("/rss.xml", Fault.html(status=502), Fault.truncated())
    settings = make_settings(rss_feeds=[*feeds, server.url + "/missing.xml"])
    summaries = run_ingest(settings, ["rss"])
    [summary] = summaries
    assert not summary.ok and "1 of 3 feeds failed" in summary.error and "HTTP 404" in summary.error
    news = storage.read_parquet(raw_table_uri(settings, "news_rss"))
    assert {"guid-a", "urn:entry:1"} <= set(news["id"])  # the two good feeds were stored
    assert server.faults_served == 2


TOKEN = "test-bearer"
SEARCH = "/2/tweets/search/recent"


def test_tweets_through_tweepy_paginate_and_resume_from_since_id(server: FakeServer, make_settings) -> None:  # type: ignore[no-untyped-def]
    tweets = apis.make_tweets(250)
    apis.twitter(server, tweets, TOKEN)
    reset = str(int(pd.Timestamp.now(tz="UTC").timestamp()) + 1)
    server.inject(SEARCH, Fault.status(429, headers={"x-rate-limit-reset": reset}), Fault.status(503))
    settings = make_settings(twitter_bearer_token=TOKEN)
    [summary] = run_ingest(settings, ["twitter"])
    assert summary.ok, summary.error
    assert summary.retries == 2 and summary.new == 250
    stored = storage.read_parquet(raw_table_uri(settings, "tweets"))
    assert len(stored) == 250 and stored["id"].is_unique
    assert stored["author_followers"].notna().all() and stored["created_at"].dt.tz is not None
    pages = [r for r in server.hits(SEARCH)]
    assert [p.params.get("next_token") for p in pages[-3:]] == [None, "100", "200"]

    ids = [str(1_700_000_000_000_001_000 + i) for i in range(3)]
    newer = [{**tweets[0], "id": i, "edit_history_tweet_ids": [i], "text": f"new {i}"} for i in ids]
    tweets[:0] = newer[::-1]  # the API lists newest first
    [again] = run_ingest(settings, ["twitter"])
    assert again.ok and again.new == 3
    assert server.hits(SEARCH)[-1].params["since_id"] == str(max(int(t["id"]) for t in tweets[3:]))


def test_twitter_bad_token_and_no_token(server: FakeServer, make_settings) -> None:  # type: ignore[no-untyped-def]
    apis.twitter(server, apis.make_tweets(5), TOKEN)
    [bad] = run_ingest(make_settings(twitter_bearer_token="wrong"), ["twitter"])
    assert not bad.ok and "BITPREDICT_TWITTER_BEARER_TOKEN" in bad.error and bad.retries == 0
    [skipped] = run_ingest(make_settings(), ["twitter"])
    assert skipped.ok and "skipped: no bearer token" in skipped.note
    assert len(server.hits(SEARCH)) == 1
