"""The one HTTP layer every source uses: timeouts, retries with backoff and jitter, Retry-After, rate limits.

Why one layer: the public crypto APIs fail in the same handful of ways — 429 with or without
``Retry-After``, bursts of 5xx, slow responses, an HTML error page from a CDN where JSON was expected,
a JSON body cut short. Each source only says what a good page looks like (``parse``); this module
decides what is worth a retry and what must stop the source at once with a message saying what to fix
(a 401 means a bad key, no retry will help).
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests

from bitpredict.config import HttpSettings
from bitpredict.errors import BitPredictError

log = logging.getLogger(__name__)

T = TypeVar("T")
USER_AGENT = "bitpredict/0.1 (+https://github.com/bitpredict/bitpredict)"
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class SourceError(BitPredictError, RuntimeError):
    """A source failed; the message says what happened and, where possible, what to fix."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


class FatalSourceError(SourceError):
    """Retrying cannot help (bad key, bad request, unknown endpoint): the source stops at once."""


class MalformedResponse(BitPredictError, ValueError):
    """A response arrived but its body is not what the API returns (truncated JSON, HTML, wrong shape)."""


class RetryableResponse(BitPredictError):
    """The API answered with a body that means "try again later" (e.g. a rate-limit message on HTTP 200)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def note(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


class RateLimiter:
    """At most ``rate`` calls per second, spread evenly (a minimum interval between calls)."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate_per_s
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, sleep: Callable[[float], None]) -> None:
        with self._lock:
            now = self._clock()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            sleep(delay)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def _hint_for(status: int, source: str, key_setting: str | None) -> str:
    if status in (401, 403):
        where = f" (set {key_setting})" if key_setting else ""
        return f"HTTP {status}: the API refused the credentials{where}; check the key and its plan"
    if status == 404:
        return "HTTP 404: endpoint not found; check the base URL setting for this source"
    if status == 418:
        return "HTTP 418: this IP is banned for ignoring rate limits; wait before running again"
    return f"HTTP {status}: the request was rejected"


def _body_excerpt(response: requests.Response) -> str:
    text = response.text[:200].replace("\n", " ")
    return f": {text}" if text else ""


class DeadlineExceeded(requests.Timeout):
    """The whole request (headers and body) took longer than ``deadline_s``: a server trickling bytes, each
    within the per-read timeout, would otherwise hold the run forever. Retried like any timeout."""


def read_capped(
    response: requests.Response, *, started: float, deadline_s: float, max_bytes: int, source: str
) -> bytes:
    """The body of a ``stream=True`` response, read under an overall deadline and a byte cap.

    Why here and not ``requests``' timeout: that one bounds each socket read, not the sum of them. A body larger
    than ``max_bytes`` is no page any API sends: the source stops (``FatalSourceError``) rather than fill memory.
    """
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FatalSourceError(source, f"the response declares {declared} bytes, over the {max_bytes}-byte cap")
    chunks, size = [], 0
    raw = response.raw
    # ``read1`` returns what has arrived (``read``/``iter_content`` block until the whole chunk is there, so a
    # trickle of one byte a second would never reach the deadline check below)
    read = getattr(raw, "read1", None) or raw.read
    while chunk := read(65536, decode_content=True):
        size += len(chunk)
        if size > max_bytes:
            raise FatalSourceError(source, f"the response exceeded the {max_bytes}-byte cap; stopped reading")
        chunks.append(chunk)
        if time.monotonic() - started > deadline_s:
            raise DeadlineExceeded(f"the response was still arriving after {deadline_s:g} s ({size} bytes)")
    return b"".join(chunks)


def fill_body(response: requests.Response, body: bytes) -> requests.Response:
    """Make a streamed response behave as a read one (``.text``, ``.json()``) with ``body``."""
    response._content = body  # type: ignore[attr-defined]
    response._content_consumed = True  # type: ignore[attr-defined]
    return response


class PageGuard:
    """Ends a pager that would not: at most ``max_pages`` pages, and each cursor must move on.

    ``direction``: "backward" (each cursor earlier than the last: CryptoCompare's ``toTs``), "forward" (later), or
    "new" (never seen before: an opaque ``next_token``). A cursor that does not move is an API bug or a proxy
    replaying a page; either way paging again would loop, so the source stops with the cursor in the message.
    """

    def __init__(self, source: str, what: str, max_pages: int, direction: str) -> None:
        self.source, self.what, self.max_pages, self.direction = source, what, max_pages, direction
        self.pages = 0
        self.seen: list[Any] = []

    def advance(self, cursor: Any) -> None:
        """Record the next page's cursor; raise ``SourceError`` when it did not move or the pages are spent."""
        last = self.seen[-1] if self.seen else None
        moved = (
            last is None
            or (self.direction == "backward" and cursor < last)
            or (self.direction == "forward" and cursor > last)
            or (self.direction == "new" and cursor not in self.seen)
        )
        if not moved:
            raise SourceError(
                self.source, f"{self.what}: the cursor did not move ({cursor!r} after {last!r}); stopped paging"
            )
        self.pages += 1
        if self.pages > self.max_pages:
            raise SourceError(
                self.source,
                f"{self.what}: more than {self.max_pages} pages in one run; stopped (BITPREDICT_HTTP__MAX_PAGES)",
            )
        self.seen.append(cursor)


class HttpClient:
    """A ``requests`` session for one source, with that source's rate limit and the shared retry policy.

    ``follow_redirects=False`` for a source that sends a key: ``requests`` keeps custom headers (CoinGecko's
    ``x-cg-demo-api-key``) on a redirect to another host, so a redirect would hand the key to whoever the API, a
    proxy or a hijacked DNS name sends us to. A redirect then stops the source, naming where it pointed.
    """

    def __init__(
        self,
        source: str,
        settings: HttpSettings,
        *,
        headers: dict[str, str] | None = None,
        key_setting: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        follow_redirects: bool = True,
    ) -> None:
        self.source = source
        self.settings = settings
        self.key_setting = key_setting
        self.follow_redirects = follow_redirects
        self.stats = HttpStats()
        self._sleep = sleep
        self._limiter = RateLimiter(settings.rate_limit_per_s.get(source, 1.0))
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, **(headers or {})})

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the retry loop -------------------------------------------------------------------------

    def call(self, attempt: Callable[[], T], what: str) -> T:
        """Run ``attempt`` (one request + parse) with the retry policy; raise ``SourceError`` when spent."""
        retries = self.settings.max_retries
        last_problem = "no attempt made"
        for n in range(retries + 1):
            self._limiter.wait(self._sleep)
            self.stats.requests += 1
            wait_hint: float | None = None
            try:
                return attempt()
            except FatalSourceError:
                raise
            except RetryableResponse as exc:
                last_problem, wait_hint = str(exc), exc.retry_after
                self.stats.note("api-retry")
            except _HttpStatusError as exc:
                last_problem, wait_hint = str(exc), exc.retry_after
                self.stats.note(f"http-{exc.status}")
            except DeadlineExceeded as exc:
                last_problem = f"deadline exceeded: {exc}"
                self.stats.note("deadline")
            except requests.Timeout as exc:
                last_problem = f"timed out after {self.settings.timeout_s:g}s ({type(exc).__name__})"
                self.stats.note("timeout")
            except requests.ConnectionError as exc:
                last_problem = f"connection failed ({exc.__class__.__name__})"
                self.stats.note("connection")
            except MalformedResponse as exc:
                last_problem = f"malformed response: {exc}"
                self.stats.note("malformed")
            if n == retries:
                break
            delay = self._backoff(n, wait_hint)
            self.stats.retries += 1
            log.warning(
                "retrying",
                extra={"source": self.source, "what": what, "problem": last_problem, "wait_s": round(delay, 2)},
            )
            self._sleep(delay)
        raise SourceError(self.source, f"{what}: gave up after {retries + 1} attempts; last problem: {last_problem}")

    def _backoff(self, n: int, retry_after: float | None) -> float:
        cap = self.settings.backoff_max_s
        if retry_after is not None:
            return min(retry_after, cap)
        base = self.settings.backoff_base_s * (2**n)
        return min(cap, base * (0.5 + random.random()))  # "equal jitter": between 50% and 150%

    # -- requests ---------------------------------------------------------------------------------

    def get(
        self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> requests.Response:
        """One GET: a 2xx/304 response, ``_HttpStatusError`` for retryable statuses, ``FatalSourceError`` else."""
        started = time.monotonic()
        response = self.session.get(
            url,
            params=params,
            headers=headers,
            timeout=self.settings.timeout_s,
            stream=True,
            allow_redirects=self.follow_redirects,
        )
        try:
            body = read_capped(
                response,
                started=started,
                deadline_s=self.settings.deadline_s,
                max_bytes=self.settings.max_response_bytes,
                source=self.source,
            )
        finally:
            response.close()
        fill_body(response, body)
        status = response.status_code
        if status < 300 or status == 304:
            return response
        if 300 <= status < 400 and not self.follow_redirects:
            raise FatalSourceError(
                self.source,
                f"HTTP {status}: redirected to {response.headers.get('Location', '?')}; redirects are off for a "
                "source that sends a key (it would follow); set the source's URL to where it now lives",
            )
        if status in RETRY_STATUS:
            raise _HttpStatusError(
                status, parse_retry_after(response.headers.get("Retry-After")), _body_excerpt(response)
            )
        raise FatalSourceError(self.source, _hint_for(status, self.source, self.key_setting) + _body_excerpt(response))

    def get_json(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        *,
        what: str | None = None,
        check: Callable[[Any], T] | None = None,
    ) -> T:
        """GET a JSON document with retries; ``check`` validates its shape (raising ``MalformedResponse``)."""

        def attempt() -> Any:
            response = self.get(url, params)
            document = decode_json(response)
            return check(document) if check else document

        return self.call(attempt, what or url)


class _HttpStatusError(Exception):
    def __init__(self, status: int, retry_after: float | None, detail: str) -> None:
        super().__init__(f"HTTP {status}{detail}")
        self.status = status
        self.retry_after = retry_after


def decode_json(response: requests.Response) -> Any:
    """The JSON body, or ``MalformedResponse`` for an HTML error page or a truncated document."""
    content_type = response.headers.get("Content-Type", "")
    if "html" in content_type.lower() or response.text.lstrip()[:1] == "<":
        raise MalformedResponse(f"got an HTML page instead of JSON (Content-Type {content_type or 'missing'})")
    try:
        return response.json()
    except (json.JSONDecodeError, requests.JSONDecodeError) as exc:
        raise MalformedResponse(f"invalid JSON ({exc}); body starts {response.text[:60]!r}") from exc
