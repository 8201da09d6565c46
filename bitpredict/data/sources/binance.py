"""Binance public klines (``/api/v3/klines``) for BTCUSDT, paging forwards with ``startTime``.

Response: a JSON array of arrays ``[openTime, open, high, low, close, volume, closeTime, quoteVolume,
trades, takerBuyBase, takerBuyQuote, ignore]`` with prices as strings; errors are
``{"code": -1121, "msg": "Invalid symbol."}`` with a 4xx status. No key is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from bitpredict.config import HttpSettings
from bitpredict.data.schemas import INTERVAL_SECONDS, RAW_MARKET
from bitpredict.data.sources.base import Page, from_ms, ms
from bitpredict.data.sources.http import HttpClient, MalformedResponse

PAGE_LIMIT = 1000  # the API's maximum per request
SYMBOL = "BTCUSDT"


def _check_klines(document: Any) -> list[list[Any]]:
    if not isinstance(document, list):
        raise MalformedResponse(f"expected a JSON array of klines, got {type(document).__name__}")
    for row in document:
        if not isinstance(row, list) or len(row) < 8:
            raise MalformedResponse(f"kline is not an array of at least 8 fields: {str(row)[:80]}")
    return document


def klines_to_rows(klines: list[list[Any]], interval: str) -> pd.DataFrame:
    """Klines to raw market rows; values stay as the API sent them, ``validate`` coerces and checks them."""
    frame = pd.DataFrame([k[:8] for k in klines], columns=[
        "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
    ])  # fmt: skip
    return pd.DataFrame(
        {
            "source": "binance",
            "interval": interval,
            "timestamp": from_ms(pd.to_numeric(frame["open_time"], errors="coerce")),
            "open": frame["open"],
            "high": frame["high"],
            "low": frame["low"],
            "close": frame["close"],
            "volume": frame["volume"],
            "quote_volume": frame["quote_volume"],
        }
    )


class BinanceSource:
    name = "binance"
    schema = RAW_MARKET
    direction = "forward"

    def __init__(self, base_url: str, http: HttpSettings, client: HttpClient | None = None) -> None:
        self.base_url = base_url
        self.http = client or HttpClient(self.name, http)

    def intervals(self) -> tuple[str, ...]:
        return ("1d", "1h")

    def table_name(self, interval: str) -> str:
        return f"market_binance_{interval}"

    def pages(self, interval: str, start: pd.Timestamp, end: pd.Timestamp) -> Iterator[Page]:
        step = pd.Timedelta(seconds=INTERVAL_SECONDS[interval])
        cursor = start
        while cursor <= end:
            params = {
                "symbol": SYMBOL,
                "interval": interval,
                "startTime": ms(cursor),
                "endTime": ms(end),
                "limit": PAGE_LIMIT,
            }
            klines = self.http.get_json(
                f"{self.base_url}/api/v3/klines", params, what=f"klines {interval} from {cursor}", check=_check_klines
            )
            if not klines:
                yield Page(klines_to_rows([], interval), cursor, end)
                return
            rows = klines_to_rows(klines, interval)
            last = rows["timestamp"].max()
            if pd.isna(last):
                raise MalformedResponse(f"page starting {cursor}: no kline has a readable open time")
            if last < cursor:
                # Asked for bars from ``cursor`` on, the API answered with earlier ones only (it has nothing newer
                # yet; the bars are already stored): the range ends here, and the next run asks again.
                yield Page(rows.iloc[:0], cursor, end, note=f"nothing new from {cursor} (the newest bar is {last})")
                return
            yield Page(rows, cursor, last)
            if len(klines) < PAGE_LIMIT:
                return
            cursor = last + step
