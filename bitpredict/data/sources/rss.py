"""News from RSS 2.0 / Atom feeds through feedparser, fetched by the shared HTTP layer.

Why fetch with our client instead of ``feedparser.parse(url)``: feedparser's own fetcher has no
retries, no rate limit and no timeout policy. We GET the document (conditionally, with the ETag and
Last-Modified the feed sent last time, so an unchanged feed costs one 304) and hand the bytes to
feedparser. Entries keep their guid (or link, or a hash of title and date when a feed has neither),
the published time in UTC, title, plain-text summary, link and feed URL. An entry without a date is
not guessed: it goes to the quarantine with that reason.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import feedparser
import pandas as pd
import requests

from bitpredict.config import HttpSettings
from bitpredict.data.schemas import NEWS
from bitpredict.data.sources.base import Batch
from bitpredict.data.sources.http import HttpClient, MalformedResponse, SourceError

_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")
TABLE = "news_rss"


def plain_text(value: str | None) -> str | None:
    """HTML summary to plain text (tags dropped, entities decoded, whitespace collapsed)."""
    if value is None:
        return None
    text = _SPACES.sub(" ", html.unescape(_TAGS.sub(" ", value))).strip()
    return text or None


def _published(entry: Any) -> pd.Timestamp | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    return pd.Timestamp(calendar.timegm(parsed), unit="s", tz="UTC")


def _entry_id(entry: Any, published: pd.Timestamp | None) -> str:
    for key in ("id", "guid", "link"):
        value = entry.get(key)
        if value:
            return str(value)
    digest = hashlib.sha256(f"{entry.get('title', '')}|{published}".encode()).hexdigest()[:20]
    return f"sha256:{digest}"


def entries_to_rows(parsed: Any, feed_url: str) -> pd.DataFrame:
    host = urlparse(feed_url).netloc or feed_url
    rows = []
    for entry in parsed.entries:
        published = _published(entry)
        rows.append(
            {
                "source": host,
                "id": _entry_id(entry, published),
                "published_at": published,
                "title": plain_text(entry.get("title")),
                "summary": plain_text(entry.get("summary")),
                "url": entry.get("link"),
                "feed": feed_url,
            }
        )
    columns = ["source", "id", "published_at", "title", "summary", "url", "feed"]
    return pd.DataFrame(rows, columns=columns)


def parse_feed(content: bytes, feed_url: str) -> Any:
    """feedparser on the bytes; a document that is neither RSS nor Atom is ``MalformedResponse``."""
    # No base URL on purpose: feedparser would resolve a bare guid against it and change the entry's id.
    parsed = feedparser.parse(content)
    if parsed.bozo and not parsed.entries and not parsed.feed.get("title"):
        raise MalformedResponse(f"not an RSS/Atom document ({parsed.get('bozo_exception')})")
    return parsed


class RssSource:
    name = "rss"

    def __init__(self, feeds: list[str], http: HttpSettings, client: HttpClient | None = None) -> None:
        self.feeds = feeds
        self.http = client or HttpClient(self.name, http)

    def batches(self, state: dict[str, Any]) -> Iterator[Batch]:
        cursors: dict[str, dict[str, str]] = state.setdefault("feeds", {})
        failed: list[str] = []
        for url in self.feeds:
            cursor = cursors.get(url, {})
            headers = {}
            if cursor.get("etag"):
                headers["If-None-Match"] = cursor["etag"]
            if cursor.get("modified"):
                headers["If-Modified-Since"] = cursor["modified"]

            def attempt(url: str = url, headers: dict[str, str] = headers) -> tuple[Any, Any] | None:
                response = self.http.get(url, headers=headers)
                if response.status_code == 304:
                    return None
                return parse_feed(response.content, url), response.headers

            try:
                fetched = self.http.call(attempt, what=f"feed {url}")
            except SourceError as exc:  # one broken feed must not hide the others' news
                failed.append(str(exc))
                continue
            except requests.RequestException as exc:  # a URL requests cannot even send (InvalidURL, InvalidSchema)
                failed.append(f"feed {url}: {type(exc).__name__}: {exc}")
                continue
            if fetched is None:
                continue  # unchanged since the last run
            parsed, response_headers = fetched
            yield Batch(TABLE, NEWS, entries_to_rows(parsed, url))
            cursors[url] = {
                k: v
                for k, v in (
                    ("etag", response_headers.get("ETag")),
                    ("modified", response_headers.get("Last-Modified")),
                )
                if v
            }
        if failed:
            raise SourceError(self.name, f"{len(failed)} of {len(self.feeds)} feeds failed: " + " | ".join(failed))
