"""CryptoCompare ``/data/v2/histoday`` and ``/data/v2/histohour`` for BTC/USD, paging backwards with ``toTs``.

Response: ``{"Response": "Success", "Data": {"TimeFrom": s, "TimeTo": s, "Data": [{"time", "open",
"high", "low", "close", "volumefrom", "volumeto", …}]}}``. Errors come back as HTTP 200 with
``{"Response": "Error", "Message": …}`` — a rate-limit message is retried, anything else stops the
source. Before BTC traded, the API pads with all-zero bars: a page of only zeros ends the backfill. A ``TimeFrom``
that does not move back, or more pages than ``max_pages``, stops the source (``PageGuard``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
from pydantic import SecretStr

from bitpredict.config import HttpSettings
from bitpredict.data.schemas import INTERVAL_SECONDS, RAW_MARKET
from bitpredict.data.sources.base import Page, seconds
from bitpredict.data.sources.http import (
    FatalSourceError,
    HttpClient,
    MalformedResponse,
    PageGuard,
    RetryableResponse,
)

PAGE_LIMIT = 2000  # the API's maximum ``limit`` (it returns limit + 1 bars)
ENDPOINTS = {"1d": "histoday", "1h": "histohour"}
KEY_SETTING = "BITPREDICT_CRYPTOCOMPARE_API_KEY"


def _check_history(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict) or "Response" not in document:
        raise MalformedResponse("expected an object with a 'Response' field")
    if document["Response"] != "Success":
        message = str(document.get("Message", "no message"))
        if "rate limit" in message.lower():
            raise RetryableResponse(f"rate limited: {message}")
        raise FatalSourceError("cryptocompare", f"API error: {message}")
    data = document.get("Data")
    if not isinstance(data, dict) or not isinstance(data.get("Data"), list):
        raise MalformedResponse("'Data.Data' is not a list of bars")
    if not isinstance(data.get("TimeFrom"), int | float):
        raise MalformedResponse("'Data.TimeFrom' missing")
    return data


def bars_to_rows(bars: list[dict[str, Any]], interval: str) -> pd.DataFrame:
    frame = pd.DataFrame(bars, columns=["time", "open", "high", "low", "close", "volumefrom", "volumeto"])
    return pd.DataFrame(
        {
            "source": "cryptocompare",
            "interval": interval,
            "timestamp": pd.to_datetime(pd.to_numeric(frame["time"], errors="coerce"), unit="s", utc=True),
            "open": frame["open"],
            "high": frame["high"],
            "low": frame["low"],
            "close": frame["close"],
            "volume": frame["volumefrom"],
            "quote_volume": frame["volumeto"],
        }
    )


def _all_zero(bars: list[dict[str, Any]]) -> bool:
    return all(not any(float(b.get(k) or 0) for k in ("open", "high", "low", "close")) for b in bars)


class CryptoCompareSource:
    name = "cryptocompare"
    schema = RAW_MARKET
    direction = "backward"

    def __init__(
        self, base_url: str, api_key: SecretStr | None, http: HttpSettings, client: HttpClient | None = None
    ) -> None:
        self.base_url = base_url
        headers = {"authorization": f"Apikey {api_key.get_secret_value()}"} if api_key else {}
        self.max_pages = http.max_pages
        # the key rides in a header requests would carry to a redirect's host: redirects stop the source instead
        self.http = client or HttpClient(
            self.name, http, headers=headers, key_setting=KEY_SETTING, follow_redirects=False
        )

    def intervals(self) -> tuple[str, ...]:
        return ("1d", "1h")

    def table_name(self, interval: str) -> str:
        return f"market_cryptocompare_{interval}"

    def pages(self, interval: str, start: pd.Timestamp, end: pd.Timestamp) -> Iterator[Page]:
        step = pd.Timedelta(seconds=INTERVAL_SECONDS[interval])
        cursor = end
        guard = PageGuard(self.name, f"{ENDPOINTS[interval]} back to {start}", self.max_pages, "backward")
        while cursor >= start:
            guard.advance(cursor)  # ``TimeFrom`` that does not go back would page the same bars forever
            span = int((cursor - start) / step)
            params = {"fsym": "BTC", "tsym": "USD", "limit": max(1, min(PAGE_LIMIT, span)), "toTs": seconds(cursor)}
            data = self.http.get_json(
                f"{self.base_url}/data/v2/{ENDPOINTS[interval]}",
                params,
                what=f"{ENDPOINTS[interval]} to {cursor}",
                check=_check_history,
            )
            bars = data["Data"]
            if not bars or _all_zero(bars):
                yield Page(bars_to_rows([], interval), start, cursor)  # nothing earlier exists
                return
            rows = bars_to_rows(bars, interval)
            rows = rows[(rows["timestamp"] >= start) & (rows["timestamp"] <= cursor)]
            first = pd.Timestamp(int(data["TimeFrom"]), unit="s", tz="UTC")
            yield Page(rows.reset_index(drop=True), max(first, start), cursor)
            cursor = first - step
