"""The data sources, registered by name: the one table every list of source names is derived from.

The CLI's ``--source`` check, the pipeline's default ``sources`` and the local runner's ``live`` choice read
``SOURCES``; the settings own the vocabulary (``bitpredict.config.SourceName``, ``DEFAULT_SOURCES``) and a test
holds it equal to this table. Adding a source is one row here, its module and its name in the settings.

Each row says how the ingest engine drives the source (``range``: pages over a time range, market data;
``batch``: whatever is new since the source's own cursors) and opens it lazily, so importing this table
imports no source module and no HTTP client. The opener hands each source only its own section of the
settings (its URL, key, the shared ``http`` policy): a source module may name ``HttpSettings``, never the whole
settings object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Union

from bitpredict.errors import BitPredictError

if TYPE_CHECKING:
    from bitpredict.config import Settings
    from bitpredict.data.sources.base import BatchSource, RangeSource

RangeJobs = list[tuple["RangeSource", str]]
Opened = Union[RangeJobs, "BatchSource"]


@dataclass(frozen=True)
class OpenRequest:
    """What a run asks of every source: the settings, the bar intervals, and (files source) explicit files."""

    settings: Settings
    intervals: tuple[str, ...]
    files: list[str] | None = None
    preset: str | None = None


@dataclass(frozen=True)
class SourceEntry:
    """One registered source.

    ``network``: fetched from a public API (not from a folder of exports); ``needs_key``: runs only with a
    credential setting (so a keyless ``live`` run leaves it out). ``open`` returns the (source, interval)
    jobs of a ``range`` source or the ``batch`` source itself, or raises ``SourceUnavailable``.
    """

    name: str
    kind: Literal["range", "batch"]
    network: bool
    needs_key: bool
    open: Callable[[OpenRequest], Opened]


def _interval_jobs(source: RangeSource, request: OpenRequest) -> RangeJobs:
    from bitpredict.data.sources.base import SourceUnavailable

    jobs = [(source, interval) for interval in request.intervals if interval in source.intervals()]
    if not jobs:
        raise SourceUnavailable(f"no {'/'.join(request.intervals)} data here", failed=False)
    return jobs


def _binance(request: OpenRequest) -> RangeJobs:
    from bitpredict.data.sources.binance import BinanceSource

    s = request.settings
    return _interval_jobs(BinanceSource(s.binance_url, s.http), request)


def _cryptocompare(request: OpenRequest) -> RangeJobs:
    from bitpredict.data.sources.cryptocompare import CryptoCompareSource

    s = request.settings
    return _interval_jobs(CryptoCompareSource(s.cryptocompare_url, s.cryptocompare_api_key, s.http), request)


def _coingecko(request: OpenRequest) -> RangeJobs:
    """CoinGecko's free OHLC endpoint has no daily candles: with 1d asked, it brings the daily market chart
    (price, market cap, volume) plus the last 30 days of 4-hour candles."""
    from bitpredict.data.sources.base import SourceUnavailable
    from bitpredict.data.sources.coingecko import CoinGeckoChartSource, CoinGeckoOhlcSource

    if "1d" not in request.intervals:
        raise SourceUnavailable(f"no {'/'.join(request.intervals)} data here", failed=False)
    section = (request.settings.coingecko_url, request.settings.coingecko_api_key, request.settings.http)
    return [(CoinGeckoChartSource(*section), "1d"), (CoinGeckoOhlcSource(*section), "4h")]


def _rss(request: OpenRequest) -> BatchSource:
    from bitpredict.data.sources.rss import RssSource

    return RssSource(request.settings.rss_feeds, request.settings.http)


def _twitter(request: OpenRequest) -> BatchSource:
    from bitpredict.data.sources.base import SourceUnavailable
    from bitpredict.data.sources.twitter import TOKEN_SETTING, TwitterSource

    s = request.settings
    twitter = TwitterSource(s.twitter_url, s.twitter_query, s.twitter_bearer_token, s.http)
    if not twitter.enabled:
        raise SourceUnavailable(f"skipped: no bearer token ({TOKEN_SETTING} is not set)", table="tweets", failed=False)
    return twitter


def _files(request: OpenRequest) -> BatchSource:
    from bitpredict.data.sources.base import SourceUnavailable
    from bitpredict.data.sources.files import FileImportError, FilesSource

    if not request.files and not request.settings.files_dir:  # not the current directory by accident
        raise SourceUnavailable("no exports to import: set files_dir (BITPREDICT_FILES_DIR) or give --path")
    try:
        if request.files:
            return FilesSource(request.files, request.preset)
        return FilesSource.from_dir(request.settings.files_dir or "")
    except FileImportError as exc:
        raise SourceUnavailable(str(exc)) from exc


SOURCES: dict[str, SourceEntry] = {
    entry.name: entry
    for entry in (
        SourceEntry("binance", "range", network=True, needs_key=False, open=_binance),
        SourceEntry("cryptocompare", "range", network=True, needs_key=False, open=_cryptocompare),
        SourceEntry("coingecko", "range", network=True, needs_key=False, open=_coingecko),
        SourceEntry("rss", "batch", network=True, needs_key=False, open=_rss),
        SourceEntry("twitter", "batch", network=True, needs_key=True, open=_twitter),
        SourceEntry("files", "batch", network=False, needs_key=False, open=_files),
    )
}
SOURCE_NAMES: tuple[str, ...] = tuple(SOURCES)  # the settings' ``SourceName``, one row each (a test holds them equal)
# The public APIs a run can use with no credential: `make run SOURCES=live`, the pipeline's default.
KEYLESS_SOURCES: tuple[str, ...] = tuple(n for n, e in SOURCES.items() if e.network and not e.needs_key)


class UnknownSource(BitPredictError, ValueError):
    """A source name that is not in the registry; the message lists the known ones."""


def source_entry(name: str) -> SourceEntry:
    """The registered source ``name``, or ``UnknownSource``."""
    if name not in SOURCES:
        raise UnknownSource(f"unknown source {name!r}; choose from {list(SOURCE_NAMES)}")
    return SOURCES[name]
