"""Fake Binance, CryptoCompare, CoinGecko, RSS and X API v2 servers that answer in each API's real format.

Prices come from the real data in ``../shared/data`` (daily Yahoo bars, hourly CryptoCompare bars),
so paging, limits and time filters behave as they would on real history.
"""

from __future__ import annotations

import email.utils
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from tests.fakes.server import FakeServer, Request, Response

DAY_MS = 86_400_000


def load_daily(shared: Path) -> pd.DataFrame:
    df = pd.read_csv(shared / "btc_usd_daily.csv")
    df["t"] = pd.to_datetime(df["Date"], utc=True).astype("int64") // 10**9
    return df.rename(columns=str.lower)[["t", "open", "high", "low", "close", "volume"]]


def load_hourly(shared: Path) -> pd.DataFrame:
    df = pd.read_csv(shared / "btc_usd_hourly.csv")
    return df.rename(columns={"time": "t", "volumefrom": "volume"})[
        ["t", "open", "high", "low", "close", "volume", "volumeto"]
    ]


# --------------------------------------------------------------------------------------------
# Binance: GET /api/v3/klines
# --------------------------------------------------------------------------------------------


def binance(server: FakeServer, daily: pd.DataFrame, hourly: pd.DataFrame) -> None:
    bars = {"1d": daily, "1h": hourly}

    def klines(req: Request) -> Response:
        if req.params.get("symbol") != "BTCUSDT":
            return Response.json({"code": -1121, "msg": "Invalid symbol."}, status=400)
        interval = req.params.get("interval")
        if interval not in bars:
            return Response.json({"code": -1120, "msg": "Invalid interval."}, status=400)
        limit = int(req.params.get("limit", 500))
        if not 1 <= limit <= 1000:
            return Response.json({"code": -1100, "msg": "Illegal characters found in parameter 'limit'."}, status=400)
        frame = bars[interval]
        step = 86_400 if interval == "1d" else 3_600
        start = int(req.params.get("startTime", 0)) // 1000
        end = int(req.params.get("endTime", 2**42)) // 1000
        rows = frame[(frame["t"] >= start) & (frame["t"] <= end)].head(limit)
        out = [
            [
                int(r.t) * 1000,
                f"{r.open:.8f}",
                f"{r.high:.8f}",
                f"{r.low:.8f}",
                f"{r.close:.8f}",
                f"{r.volume / r.close:.8f}",
                (int(r.t) + step) * 1000 - 1,
                f"{r.volume:.8f}",
                1000,
                "0.0",
                "0.0",
                "0",
            ]
            for r in rows.itertuples()
        ]
        return Response.json(out, headers={"x-mbx-used-weight-1m": str(len(server.requests))})

    server.route("/api/v3/klines", klines)


# --------------------------------------------------------------------------------------------
# CryptoCompare: GET /data/v2/histoday, /data/v2/histohour
# --------------------------------------------------------------------------------------------


def cryptocompare(server: FakeServer, daily: pd.DataFrame, hourly: pd.DataFrame, api_key: str | None = None) -> None:
    def history(frame: pd.DataFrame, step: int):  # type: ignore[no-untyped-def]
        def handler(req: Request) -> Response:
            if api_key is not None and req.headers.get("authorization") != f"Apikey {api_key}":
                return Response.json(
                    {
                        "Response": "Error",
                        "Message": "You need a valid auth key or api key to access this endpoint",
                        "HasWarning": False,
                        "Type": 1,
                        "RateLimit": {},
                        "Data": {},
                    }
                )
            limit = int(req.params.get("limit", 30))
            if limit > 2000:
                return Response.json(
                    {"Response": "Error", "Message": "limit param is not valid", "Type": 2, "Data": {}}
                )
            to_ts = int(req.params.get("toTs", frame["t"].max()))
            to_ts -= to_ts % step
            times = np.arange(to_ts - limit * step, to_ts + step, step)
            indexed = frame.set_index("t")
            data = []
            for t in times:
                bar = {"time": int(t), "high": 0, "low": 0, "open": 0, "close": 0, "volumefrom": 0, "volumeto": 0}
                if t in indexed.index:  # else: before the coin traded the real API pads with zeros
                    r = indexed.loc[t]
                    quote = float(r.get("volumeto", r["volume"]))
                    bar.update(high=r["high"], low=r["low"], open=r["open"], close=r["close"])
                    bar.update(volumefrom=quote / r["close"], volumeto=quote)
                data.append({**bar, "conversionType": "direct", "conversionSymbol": ""})
            return Response.json(
                {
                    "Response": "Success",
                    "Message": "",
                    "HasWarning": False,
                    "Type": 100,
                    "RateLimit": {},
                    "Data": {"Aggregated": False, "TimeFrom": int(times[0]), "TimeTo": int(times[-1]), "Data": data},
                }
            )

        return handler

    server.route("/data/v2/histoday", history(daily, 86_400))
    server.route("/data/v2/histohour", history(hourly, 3_600))


# --------------------------------------------------------------------------------------------
# CoinGecko: GET /coins/bitcoin/market_chart/range, /coins/bitcoin/ohlc
# --------------------------------------------------------------------------------------------


def coingecko(server: FakeServer, daily: pd.DataFrame, api_key: str | None = None) -> None:
    def authorised(req: Request) -> Response | None:
        if api_key is not None and req.headers.get("x-cg-demo-api-key") != api_key:
            return Response.json(
                {"status": {"error_code": 10002, "error_message": "API Key Missing or invalid"}}, status=401
            )
        return None

    def chart(req: Request) -> Response:
        if (refused := authorised(req)) is not None:
            return refused
        start, end = int(float(req.params["from"])), int(float(req.params["to"]))
        # The price at 00:00 of day D is the close of day D-1; above 90 days the API gives daily points.
        points = daily.assign(t=daily["t"] + 86_400)
        points = points[(points["t"] >= start) & (points["t"] <= end)]
        if end - start <= 90 * 86_400:  # hourly granularity: add points between midnights
            hours = [
                (int(t) + h * 3600, c) for t, c in zip(points["t"], points["close"], strict=True) for h in range(24)
            ]
            prices = [[t * 1000, c] for t, c in hours if t <= end]
        else:
            prices = [[int(t) * 1000, c] for t, c in zip(points["t"], points["close"], strict=True)]
        caps = [[t, p * 19_000_000] for t, p in prices]
        volumes = [
            [t, float(v)] for (t, _), v in zip(prices, np.resize(points["volume"].to_numpy(), len(prices)), strict=True)
        ]
        return Response.json({"prices": prices, "market_caps": caps, "total_volumes": volumes})

    server.route("/api/v3/coins/bitcoin/market_chart/range", chart)


def coingecko_ohlc(server: FakeServer, hourly: pd.DataFrame, now: pd.Timestamp, api_key: str | None = None) -> None:
    """``/coins/bitcoin/ohlc``: candles stamped with their *close* time; 3-30 days gives 4-hour candles.

    Like the real endpoint, the last candle is the one still forming (its close time is in the future).
    """

    def ohlc(req: Request) -> Response:
        if api_key is not None and req.headers.get("x-cg-demo-api-key") != api_key:
            return Response.json({"status": {"error_code": 10002, "error_message": "API Key Missing"}}, status=401)
        days = int(req.params.get("days", 0))
        if days not in (1, 7, 14, 30, 90, 180, 365):
            return Response.json({"error": "invalid days"}, status=400)
        if not 3 <= days <= 30:
            return Response.json({"error": "this fake serves 4-hour candles only"}, status=400)
        end = int(now.timestamp())
        frame = hourly[(hourly["t"] >= end - days * 86_400) & (hourly["t"] < end)].copy()
        frame["bucket"] = frame["t"] - frame["t"] % 14_400
        candles = frame.groupby("bucket").agg(
            open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last")
        )
        out = [[(int(b) + 14_400) * 1000, r.open, r.high, r.low, r.close] for b, r in candles.iterrows()]
        return Response.json(out)

    server.route("/api/v3/coins/bitcoin/ohlc", ohlc)


# --------------------------------------------------------------------------------------------
# RSS / Atom
# --------------------------------------------------------------------------------------------

RSS_DOC = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
<title>Crypto &amp; Markets</title><link>https://news.test/</link><description>test feed</description>
<item><title>Bitcoin tops $70,000 &amp; sets a record</title><link>https://news.test/a</link>
  <guid isPermaLink="false">guid-a</guid><pubDate>Mon, 11 Mar 2024 23:59:30 +0000</pubDate>
  <description>&lt;p&gt;Prices &lt;b&gt;rose&lt;/b&gt; &#8212; again.&lt;/p&gt;</description></item>
<item><title>ETF inflows slow</title><link>https://news.test/b</link>
  <guid>guid-b</guid><pubDate>Tue, 12 Mar 2024 00:00:30 +0100</pubDate><description>Flows cooled.</description></item>
<item><title>Undated rumour</title><link>https://news.test/c</link><guid>guid-c</guid><description>No date here.</description></item>
<item><title>ETF inflows slow (updated)</title><link>https://news.test/b</link>
  <guid>guid-b</guid><pubDate>Tue, 12 Mar 2024 01:00:00 +0000</pubDate><description>Flows cooled further.</description></item>
</channel></rss>"""

ATOM_DOC = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom BTC</title><id>urn:feed</id>
<updated>2024-03-12T10:00:00Z</updated>
<entry><title>Miners sell ahead of halving</title><id>urn:entry:1</id><link href="https://atom.test/1"/>
  <updated>2024-03-12T10:00:00Z</updated><published>2024-03-12T09:30:00+02:00</published>
  <summary type="html">&lt;i&gt;Hash rate&lt;/i&gt; near highs</summary></entry>
<entry><title>Second entry</title><id>urn:entry:2</id><link href="https://atom.test/2"/>
  <updated>2024-03-12T11:00:00Z</updated><summary>Plain text</summary></entry>
</feed>"""


def rss(server: FakeServer, documents: dict[str, str]) -> None:
    for path, text in documents.items():
        body = text.encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        modified = email.utils.formatdate(1_710_000_000, usegmt=True)
        kind = "application/atom+xml" if "<feed" in text else "application/rss+xml"

        def handler(
            req: Request, body: bytes = body, etag: str = etag, kind: str = kind, modified: str = modified
        ) -> Response:
            if req.headers.get("if-none-match") == etag:
                return Response(304, b"", {"ETag": etag})
            return Response(200, body, {"Content-Type": kind, "ETag": etag, "Last-Modified": modified})

        server.route(path, handler)


# --------------------------------------------------------------------------------------------
# X API v2: GET /2/tweets/search/recent
# --------------------------------------------------------------------------------------------


def make_tweets(n: int) -> list[dict[str, object]]:
    """Newest first, like the API; ids increase with time."""
    base = pd.Timestamp("2024-03-12T12:00:00Z")
    tweets = []
    for i in range(n):
        tweets.append(
            {
                "id": str(1_700_000_000_000_000_000 + i),
                "text": f"BTC looking {'strong' if i % 3 else 'weak'} today #{i}",
                "created_at": (base + pd.Timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "author_id": str(100 + i % 5),
                "lang": "en",
                "edit_history_tweet_ids": [str(1_700_000_000_000_000_000 + i)],
                "public_metrics": {"retweet_count": i % 4, "reply_count": 1, "like_count": i, "quote_count": 0},
            }
        )
    return tweets[::-1]


def twitter(server: FakeServer, tweets: list[dict[str, object]], token: str) -> None:
    users = [
        {"id": str(100 + k), "name": f"user{k}", "username": f"u{k}", "public_metrics": {"followers_count": 10 * k}}
        for k in range(5)
    ]

    def search(req: Request) -> Response:
        if req.headers.get("authorization") != f"Bearer {token}":
            return Response.json(
                {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}, status=401
            )
        if "query" not in req.params:
            return Response.json({"errors": [{"message": "query is required"}], "title": "Invalid Request"}, status=400)
        size = int(req.params.get("max_results", 10))
        since = int(req.params.get("since_id", 0))
        pool = [t for t in tweets if int(str(t["id"])) > since]
        offset = int(req.params.get("next_token", "0") or 0)
        page = pool[offset : offset + size]
        meta: dict[str, object] = {"result_count": len(page)}
        if page:
            meta.update(newest_id=page[0]["id"], oldest_id=page[-1]["id"])
        if offset + size < len(pool):
            meta["next_token"] = str(offset + size)
        body: dict[str, object] = {"meta": meta}
        if page:
            body["data"] = page
            body["includes"] = {"users": users}
        return Response.json(body)

    server.route("/2/tweets/search/recent", search)
