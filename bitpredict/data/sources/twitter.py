"""Tweets from the X API v2 recent search, through tweepy's ``Client.search_recent_tweets``.

tweepy hard-codes ``https://api.twitter.com`` as its host; the session below rewrites that prefix to
the configured ``BITPREDICT_TWITTER_URL`` so the same tweepy code talks to a test server or a proxy.
Pages are fetched one ``next_token`` at a time through the shared retry policy (tweepy's own
``wait_on_rate_limit`` would sleep without a cap), at most ``max_pages`` of them, and a ``next_token`` seen
before stops the source (``PageGuard``): the loop always ends. The newest id seen becomes ``since_id`` only after
every page of a run arrived, so an interrupted run is fetched again, never skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import requests
import tweepy
from pydantic import SecretStr

from bitpredict.config import HttpSettings
from bitpredict.data.schemas import TWEETS
from bitpredict.data.sources.base import Batch
from bitpredict.data.sources.http import (
    FatalSourceError,
    HttpClient,
    MalformedResponse,
    PageGuard,
    RetryableResponse,
    fill_body,
    read_capped,
)

log = logging.getLogger(__name__)

TWEEPY_HOST = "https://api.twitter.com"
TOKEN_SETTING = "BITPREDICT_TWITTER_BEARER_TOKEN"
TABLE = "tweets"
MAX_RESULTS = 100  # the API's maximum per page
TWEET_FIELDS = ["created_at", "public_metrics", "author_id", "lang"]


class RebasedSession(requests.Session):
    """A session that sends tweepy's requests to another base URL, under the shared HTTP layer's bounds.

    tweepy sets no timeout, follows redirects with the bearer token in ``Authorization`` (``requests`` drops that
    header only on a change of host, not of scheme or port) and reads bodies whole: here every request has the
    per-read timeout, an overall deadline and a byte cap, and a redirect is answered as it came (tweepy then raises
    on the 3xx status), never followed.
    """

    def __init__(self, base_url: str, http: HttpSettings) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.http = http

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        text = url.decode() if isinstance(url, bytes) else url
        if text.startswith(TWEEPY_HOST):
            text = self.base_url + text[len(TWEEPY_HOST) :]
        kwargs.setdefault("timeout", self.http.timeout_s)
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        started = time.monotonic()
        response = super().request(method, text, *args, **kwargs)
        try:
            body = read_capped(
                response,
                started=started,
                deadline_s=self.http.deadline_s,
                max_bytes=self.http.max_response_bytes,
                source="twitter",
            )
        finally:
            response.close()
        return fill_body(response, body)


def tweets_to_rows(response: Any) -> pd.DataFrame:
    users = {u.id: u for u in (response.includes or {}).get("users", [])}
    rows = []
    for tweet in response.data or []:
        metrics = tweet.public_metrics or {}
        author = users.get(tweet.author_id)
        author_metrics = getattr(author, "public_metrics", None) or {}
        rows.append(
            {
                "id": str(tweet.id),
                "created_at": tweet.created_at,
                "text": tweet.text,
                "author_id": str(tweet.author_id) if tweet.author_id else None,
                "lang": tweet.lang,
                "retweet_count": metrics.get("retweet_count"),
                "reply_count": metrics.get("reply_count"),
                "like_count": metrics.get("like_count"),
                "quote_count": metrics.get("quote_count"),
                "author_followers": author_metrics.get("followers_count"),
            }
        )
    return pd.DataFrame(rows, columns=[
        "id", "created_at", "text", "author_id", "lang",
        "retweet_count", "reply_count", "like_count", "quote_count", "author_followers",
    ])  # fmt: skip


class TwitterSource:
    name = "twitter"

    def __init__(
        self,
        base_url: str,
        query: str,
        bearer_token: SecretStr | None,
        http: HttpSettings,
        client: HttpClient | None = None,
    ) -> None:
        self.enabled = bearer_token is not None
        self.query = query
        self.http = client or HttpClient(self.name, http, key_setting=TOKEN_SETTING)
        self.client = tweepy.Client(bearer_token=bearer_token.get_secret_value() if bearer_token else None)
        self.client.session = RebasedSession(base_url, http)
        self.max_pages = http.max_pages

    def _page(self, since_id: str | None, next_token: str | None) -> Any:
        def attempt() -> Any:
            try:
                return self.client.search_recent_tweets(
                    self.query,
                    max_results=MAX_RESULTS,
                    since_id=since_id,
                    next_token=next_token,
                    tweet_fields=TWEET_FIELDS,
                    expansions=["author_id"],
                    user_fields=["public_metrics"],
                )
            except tweepy.TooManyRequests as exc:
                reset = exc.response.headers.get("x-rate-limit-reset")
                wait = max(0.0, float(reset) - pd.Timestamp.now(tz="UTC").timestamp()) if reset else None
                raise RetryableResponse("HTTP 429 rate limited", retry_after=wait) from exc
            except tweepy.TwitterServerError as exc:
                raise RetryableResponse(f"HTTP {exc.response.status_code} server error") from exc
            except (tweepy.Unauthorized, tweepy.Forbidden) as exc:
                raise FatalSourceError(
                    self.name, f"HTTP {exc.response.status_code}: the bearer token was refused; check {TOKEN_SETTING}"
                ) from exc
            except tweepy.HTTPException as exc:
                raise FatalSourceError(self.name, f"HTTP {exc.response.status_code}: {exc}") from exc
            except requests.JSONDecodeError as exc:
                raise MalformedResponse(f"invalid JSON from the search endpoint ({exc})") from exc

        return self.http.call(attempt, what=f"search page {next_token or 'first'}")

    def batches(self, state: dict[str, Any]) -> Iterator[Batch]:
        if not self.enabled:
            log.info(f"twitter skipped: no bearer token (set {TOKEN_SETTING})")
            return
        since_id = state.get("since_id")
        newest: str | None = None
        next_token: str | None = None
        guard = PageGuard(self.name, "recent search", self.max_pages, "new")
        while True:
            guard.advance(next_token)  # a next_token seen before would page in a circle
            response = self._page(since_id, next_token)
            meta = response.meta or {}
            newest = newest or meta.get("newest_id")
            yield Batch(TABLE, TWEETS, tweets_to_rows(response))
            next_token = meta.get("next_token")
            if not next_token:
                break
        if newest:
            state["since_id"] = newest
