"""Secrets never leave: not through a log line at DEBUG (a real tweepy request against the local X API fake), not
through the environment (keys come from a mounted folder), not to a plain-http or malformed URL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitpredict.config import ConfigError, load_settings
from bitpredict.data.ingest import ingest_batch_source, run_ingest
from bitpredict.data.sources.rss import RssSource
from bitpredict.data.sources.twitter import TwitterSource
from bitpredict.log import QUIET_ALWAYS, configure_logging
from tests.fakes import apis
from tests.fakes.server import FakeServer

TOKEN = "AAAAAAAAAAAAAAAAAAAAAbitpredictTestBearer0123456789"


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    """Our handler installed anew (on the stream pytest captures now), and the logging state restored after."""
    root = logging.getLogger()
    before = root.level, list(root.handlers), {n: logging.getLogger(n).level for n in QUIET_ALWAYS}
    for handler in [h for h in root.handlers if h.get_name() == "bitpredict"]:
        root.removeHandler(handler)
    yield
    for handler in [h for h in root.handlers if h.get_name() == "bitpredict"]:
        root.removeHandler(handler)
    root.setLevel(before[0])
    for handler in before[1]:
        if handler not in root.handlers:
            root.addHandler(handler)
    for name, level in before[2].items():
        logging.getLogger(name).setLevel(level)


def _search(server: FakeServer, make_settings) -> int:  # type: ignore[no-untyped-def]
    apis.twitter(server, apis.make_tweets(30), TOKEN)
    settings = make_settings(twitter_bearer_token=TOKEN)
    source = TwitterSource(settings.twitter_url, settings.twitter_query, settings.twitter_bearer_token, settings.http)
    summaries = ingest_batch_source(source, settings)
    assert all(s.ok for s in summaries), [s.error for s in summaries]
    return sum(s.fetched for s in summaries)


def test_debug_logs_of_a_real_x_request_hold_no_token(
    server: FakeServer,
    make_settings,  # type: ignore[no-untyped-def]
    fresh_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("DEBUG")
    assert _search(server, make_settings) == 30  # the token was sent: the fake answers 401 without it
    assert server.hits("/2/tweets/search/recent")[0].headers["authorization"] == f"Bearer {TOKEN}"
    err = capsys.readouterr().err
    assert "level=DEBUG" in err  # DEBUG lines were written …
    assert TOKEN not in err  # … and none holds the token


def test_a_library_forced_to_debug_is_redacted_on_the_way_out(
    server: FakeServer,
    make_settings,  # type: ignore[no-untyped-def]
    fresh_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("DEBUG")
    logging.getLogger("tweepy").setLevel(logging.DEBUG)  # someone's config turns tweepy's request dump back on
    _search(server, make_settings)
    err = capsys.readouterr().err
    assert "logger=tweepy" in err and "[REDACTED]" in err  # tweepy logged its headers; they were redacted
    assert TOKEN not in err


def test_keys_come_from_a_mounted_folder_not_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "twitter_bearer_token").write_text(TOKEN + "\n")  # a Secret's file ends with a newline
    (secrets / "coingecko_api_key").write_text("CG-key-from-file")
    monkeypatch.setenv("BITPREDICT_SECRETS_DIR", str(secrets))
    settings = load_settings()
    assert settings.twitter_bearer_token is not None and settings.twitter_bearer_token.get_secret_value() == TOKEN
    assert settings.coingecko_api_key is not None
    assert settings.coingecko_api_key.get_secret_value() == "CG-key-from-file"
    assert settings.cryptocompare_api_key is None
    monkeypatch.setenv("BITPREDICT_SECRETS_DIR", str(tmp_path / "not-mounted"))
    with pytest.raises(ConfigError, match="not a folder"):
        load_settings()


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "http://api.coingecko.com/api/v3", "https://", "ftp://x.org/feed", "https://u:p@x.org/"],
)
def test_malformed_or_plain_http_source_urls_are_refused_at_settings_time(url: str) -> None:
    with pytest.raises(ConfigError, match="coingecko_url"):
        load_settings(coingecko_url=url)
    with pytest.raises(ConfigError, match="rss_feeds"):
        load_settings(rss_feeds=["https://cointelegraph.com/rss", url])


def test_https_and_loopback_http_are_accepted() -> None:
    settings = load_settings(coingecko_url="https://pro-api.coingecko.com/api/v3/", rss_feeds=["http://127.0.0.1:8/x"])
    assert settings.coingecko_url == "https://pro-api.coingecko.com/api/v3" and settings.rss_feeds == [
        "http://127.0.0.1:8/x"
    ]


def test_a_feed_requests_cannot_send_does_not_hide_the_feeds_after_it(server: FakeServer, make_settings) -> None:  # type: ignore[no-untyped-def]
    apis.rss(server, {"/rss.xml": apis.RSS_DOC})
    settings = make_settings(rss_feeds=[server.url + "/rss.xml"])
    bad = "http://127.0.0.1:99999999/feed"  # past the settings (a source built directly): requests refuses it
    summaries = ingest_batch_source(RssSource([bad, server.url + "/rss.xml"], settings.http), settings)
    assert summaries[0].fetched > 0 and summaries[0].error and "1 of 2 feeds failed" in summaries[0].error
    assert run_ingest(settings, ["rss"])[0].ok
