"""CoinGecko: daily price, market cap and volume, and OHLC candles.

Endpoints: ``/coins/bitcoin/market_chart/range`` and ``/coins/bitcoin/ohlc``.

``market_chart/range`` returns ``{"prices": [[ms, v]], "market_caps": [[ms, v]], "total_volumes":
[[ms, v]]}``; for a span over 90 days the points are daily at 00:00 UTC (shorter spans give hourly
points, so we always ask for at least 91 days and keep the midnight points). ``ohlc?days=N`` returns
``[[ms, open, high, low, close]]`` where ``ms`` is the candle's *close* time and the candle length
depends on N (1–2 days: 30 minutes, 3–30: 4 hours, above: 4 days) — we store the bar's open time and
record the length as the interval. An API key (demo or pro) goes in the ``x-cg-demo-api-key`` header.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
from pydantic import SecretStr

from bitpredict.config import HttpSettings
from bitpredict.data.schemas import INTERVAL_SECONDS, MARKET_CHART, RAW_MARKET
from bitpredict.data.sources.base import Page, from_ms, seconds
from bitpredict.data.sources.http import HttpClient, MalformedResponse

KEY_SETTING = "BITPREDICT_COINGECKO_API_KEY"
CHART_CHUNK = pd.Timedelta(days=365)  # one request per year keeps responses small and retries cheap
MIN_DAILY_SPAN = pd.Timedelta(days=91)  # below 90 days the API switches to hourly points
OHLC_DAYS = (1, 7, 14, 30, 90, 180, 365)


def _pairs(document: dict[str, Any], field: str) -> list[list[Any]]:
    values = document.get(field)
    if not isinstance(values, list) or any(not isinstance(p, list) or len(p) != 2 for p in values):
        raise MalformedResponse(f"'{field}' is not a list of [time, value] pairs")
    return values


def _check_chart(document: Any) -> dict[str, list[list[Any]]]:
    if not isinstance(document, dict):
        raise MalformedResponse("expected a JSON object with prices, market_caps, total_volumes")
    return {f: _pairs(document, f) for f in ("prices", "market_caps", "total_volumes")}


def chart_to_rows(chart: dict[str, list[list[Any]]]) -> pd.DataFrame:
    """Join the three series on their timestamp; keep only the daily (midnight UTC) points."""
    frames = [
        pd.DataFrame(chart[field], columns=["ms", name]).drop_duplicates("ms", keep="last").set_index("ms")
        for field, name in (("prices", "price"), ("market_caps", "market_cap"), ("total_volumes", "total_volume"))
    ]
    joined = frames[0].join(frames[1:], how="outer").reset_index()
    joined["timestamp"] = from_ms(joined["ms"])
    midnight = joined["timestamp"] == joined["timestamp"].dt.floor("D")
    out = joined[midnight]
    return pd.DataFrame(
        {
            "source": "coingecko",
            "timestamp": out["timestamp"],
            "price": out["price"],
            "market_cap": out["market_cap"],
            "total_volume": out["total_volume"],
        }
    ).reset_index(drop=True)


def _check_ohlc(document: Any) -> list[list[Any]]:
    if not isinstance(document, list) or any(not isinstance(r, list) or len(r) != 5 for r in document):
        raise MalformedResponse("expected a JSON array of [time, open, high, low, close]")
    return document


def ohlc_interval(days: int) -> str:
    """The candle length CoinGecko's free OHLC endpoint uses for a ``days`` value."""
    if days <= 2:
        return "30m"
    if days <= 30:
        return "4h"
    return "4d"


def ohlc_to_rows(candles: list[list[Any]], interval: str) -> pd.DataFrame:
    frame = pd.DataFrame(candles, columns=["close_ms", "open", "high", "low", "close"])
    close_time = from_ms(pd.to_numeric(frame["close_ms"], errors="coerce"))
    return pd.DataFrame(
        {
            "source": "coingecko",
            "interval": interval,
            "timestamp": close_time - pd.Timedelta(seconds=INTERVAL_SECONDS[interval]),
            "open": frame["open"],
            "high": frame["high"],
            "low": frame["low"],
            "close": frame["close"],
            "volume": float("nan"),  # the OHLC endpoint has no volume; the market chart carries it
        }
    )


class _CoinGeckoBase:
    name = "coingecko"

    def __init__(
        self, base_url: str, api_key: SecretStr | None, http: HttpSettings, client: HttpClient | None = None
    ) -> None:
        self.base_url = base_url
        headers = {"x-cg-demo-api-key": api_key.get_secret_value()} if api_key else {}
        # the key rides in a custom header that requests keeps on a redirect to another host: never follow one
        self.http = client or HttpClient(
            self.name, http, headers=headers, key_setting=KEY_SETTING, follow_redirects=False
        )


class CoinGeckoChartSource(_CoinGeckoBase):
    """Daily price, market cap and 24h volume since 2013."""

    schema = MARKET_CHART
    direction = "forward"

    def intervals(self) -> tuple[str, ...]:
        return ("1d",)

    def table_name(self, interval: str) -> str:
        return "market_chart_coingecko_1d"

    def pages(self, interval: str, start: pd.Timestamp, end: pd.Timestamp) -> Iterator[Page]:
        cursor = start
        while cursor <= end:
            chunk_end = min(end, cursor + CHART_CHUNK)
            ask_from = min(cursor, chunk_end - MIN_DAILY_SPAN)
            params = {"vs_currency": "usd", "from": seconds(ask_from), "to": seconds(chunk_end)}
            chart = self.http.get_json(
                f"{self.base_url}/coins/bitcoin/market_chart/range",
                params,
                what=f"market_chart {cursor.date()}..{chunk_end.date()}",
                check=_check_chart,
            )
            rows = chart_to_rows(chart)
            rows = rows[(rows["timestamp"] >= cursor) & (rows["timestamp"] <= chunk_end)].reset_index(drop=True)
            yield Page(rows, cursor, chunk_end)
            cursor = chunk_end + pd.Timedelta(seconds=1)


class CoinGeckoOhlcSource(_CoinGeckoBase):
    """Recent OHLC candles; the free endpoint reaches back at most 365 days."""

    schema = RAW_MARKET
    direction = "forward"

    def intervals(self) -> tuple[str, ...]:
        return ("4d", "4h", "30m")

    def table_name(self, interval: str) -> str:
        return f"market_coingecko_{interval}"

    def pages(self, interval: str, start: pd.Timestamp, end: pd.Timestamp) -> Iterator[Page]:
        span_days = max(1, int((pd.Timestamp.now(tz="UTC") - start) / pd.Timedelta(days=1)) + 1)
        days = next((d for d in OHLC_DAYS if d >= span_days and ohlc_interval(d) == interval), None)
        if days is None:
            days = max(d for d in OHLC_DAYS if ohlc_interval(d) == interval)
        candles = self.http.get_json(
            f"{self.base_url}/coins/bitcoin/ohlc",
            {"vs_currency": "usd", "days": days},
            what=f"ohlc days={days}",
            check=_check_ohlc,
        )
        rows = ohlc_to_rows(candles, interval)
        rows = rows[(rows["timestamp"] >= start) & (rows["timestamp"] <= end)].reset_index(drop=True)
        yield Page(rows, start, end)
