"""Market ingest against fake Binance, CryptoCompare and CoinGecko servers with injected faults."""

from __future__ import annotations

import pandas as pd

from bitpredict import storage
from bitpredict.data.ingest import StateStore, raw_table_uri, run_ingest
from bitpredict.pipeline.stage_table import QUARANTINE, RAW, data_path
from tests.fakes import apis
from tests.fakes.server import FakeServer, Fault, Request, Response

NOW = pd.Timestamp("2024-03-31T12:00:00Z")  # the daily file ends 2024-03-31: that bar is still open
KLINES = "/api/v3/klines"


def _expected_days(daily: pd.DataFrame, since: str, until: str = "2024-03-30") -> int:
    t = pd.to_datetime(daily["t"], unit="s", utc=True)
    return int(((t >= pd.Timestamp(since, tz="UTC")) & (t <= pd.Timestamp(until, tz="UTC"))).sum())


def _stored(settings, table: str) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return storage.read_parquet(raw_table_uri(settings, table))


def test_binance_backfill_then_second_run_fetches_nothing(server: FakeServer, make_settings, daily, hourly) -> None:  # type: ignore[no-untyped-def]
    apis.binance(server, daily, hourly)
    settings = make_settings()
    [first] = run_ingest(settings, ["binance"], since=pd.Timestamp("2019-01-01", tz="UTC"), now=NOW)
    assert first.ok, first.error
    stored = _stored(settings, "market_binance_1d")
    assert len(stored) == _expected_days(daily, "2019-01-01") == first.new
    assert stored["timestamp"].max() == pd.Timestamp("2024-03-30", tz="UTC")  # the open bar of 03-31 is not stored
    assert not stored.duplicated(["source", "interval", "timestamp"]).any()
    assert len(server.hits(KLINES)) == 2  # 1,916 days at 1,000 per page

    requests_before = len(server.requests)
    before = (
        data_path(settings, RAW) + "/market_binance_1d.parquet",
        storage.read_bytes(raw_table_uri(settings, "market_binance_1d"))[0],
    )
    [second] = run_ingest(settings, ["binance"], since=pd.Timestamp("2019-01-01", tz="UTC"), now=NOW)
    assert second.ok and second.new == 0 and second.fetched == 0 and second.note == "up to date"
    assert len(server.requests) == requests_before  # nothing was missing, so nothing was asked
    assert storage.read_bytes(raw_table_uri(settings, "market_binance_1d"))[0] == before[1]

    # A day later exactly one new bar is fetched.
    [third] = run_ingest(
        settings, ["binance"], since=pd.Timestamp("2019-01-01", tz="UTC"), now=NOW + pd.Timedelta(days=1)
    )
    assert third.new == 1 and len(server.requests) == requests_before + 1


def test_binance_survives_every_kind_of_fault(server: FakeServer, make_settings, daily, hourly) -> None:  # type: ignore[no-untyped-def]
    apis.binance(server, daily, hourly)
    server.inject(
        KLINES,
        Fault.status(429, headers={"Retry-After": "1"}),
        Fault.status(500),
        Fault.status(502),
        Fault.status(503),
        Fault.slow(1.5),  # past the 0.5 s timeout
        Fault.truncated(),
        Fault.html(),
    )
    settings = make_settings()
    [summary] = run_ingest(settings, ["binance"], since=pd.Timestamp("2022-01-01", tz="UTC"), now=NOW)
    assert summary.ok, summary.error
    assert server.faults_served == 7 and summary.retries == 7
    stored = _stored(settings, "market_binance_1d")
    assert len(stored) == _expected_days(daily, "2022-01-01") and not stored.duplicated(["timestamp"]).any()
    hits = server.hits(KLINES)
    assert hits[1].at - hits[0].at >= 0.95, "Retry-After: 1 was not honoured"


def test_failure_on_a_later_page_keeps_earlier_pages_and_the_next_run_resumes(
    server: FakeServer, make_settings, daily, hourly
) -> None:  # type: ignore[no-untyped-def]
    apis.binance(server, daily, hourly)
    real = server.routes[KLINES]
    broken = {"after": 2}

    def flaky(req: Request) -> Response:
        if len(server.hits(KLINES)) > broken["after"]:
            return Response.json({"error": "maintenance"}, status=503)
        return real(req)

    server.route(KLINES, flaky)
    settings = make_settings(http={"max_retries": 2})
    since = pd.Timestamp("2024-01-01", tz="UTC")
    [failed] = run_ingest(settings, ["binance"], intervals=["1h"], since=since, now=NOW)
    assert not failed.ok and "gave up after 3 attempts" in failed.error and "HTTP 503" in failed.error
    stored = _stored(settings, "market_binance_1h")
    assert len(stored) == 2000  # pages 1 and 2 kept
    gaps = StateStore(data_path(settings, RAW)).load("market_binance_1h")["gaps"]
    assert gaps and pd.Timestamp(gaps[0][0]) == stored["timestamp"].max() + pd.Timedelta(hours=1)

    broken["after"] = 10**9
    [resumed] = run_ingest(settings, ["binance"], intervals=["1h"], since=since, now=NOW)
    assert resumed.ok and resumed.updated == 0
    stored = _stored(settings, "market_binance_1h")
    t = pd.to_datetime(hourly["t"], unit="s", utc=True)
    expected = int(((t >= since) & (t <= NOW.floor("h") - pd.Timedelta(hours=1))).sum())
    assert len(stored) == expected and not stored.duplicated(["timestamp"]).any()
    assert StateStore(data_path(settings, RAW)).load("market_binance_1h")["gaps"] == []


def test_overlapping_pages_never_duplicate_rows(server: FakeServer, make_settings, daily, hourly) -> None:  # type: ignore[no-untyped-def]
    apis.binance(server, daily, hourly)
    real = server.routes[KLINES]

    def overlapping(req: Request) -> Response:  # every page also repeats the 5 days before startTime
        params = dict(req.params, startTime=str(int(req.params["startTime"]) - 5 * apis.DAY_MS), limit="1000")
        return real(Request(req.method, req.path, params, req.headers, req.at))

    server.route(KLINES, overlapping)
    settings = make_settings()
    [summary] = run_ingest(settings, ["binance"], since=pd.Timestamp("2020-06-01", tz="UTC"), now=NOW)
    stored = _stored(settings, "market_binance_1d")
    assert summary.ok and not stored.duplicated(["timestamp"]).any()
    assert stored["timestamp"].min() >= pd.Timestamp("2020-05-27", tz="UTC")
    assert summary.fetched > len(stored)  # the overlap was really served


def test_bad_request_fails_at_once_with_the_api_message(server: FakeServer, make_settings, daily, hourly) -> None:  # type: ignore[no-untyped-def]
    apis.binance(server, daily, hourly)
    server.inject(KLINES, Fault.status(400, body={"code": -1121, "msg": "Invalid symbol."}))
    [summary] = run_ingest(make_settings(), ["binance"], since=pd.Timestamp("2024-01-01", tz="UTC"), now=NOW)
    assert not summary.ok and "Invalid symbol" in summary.error and summary.retries == 0


def test_cryptocompare_pages_backwards_until_the_zero_padding(server: FakeServer, make_settings, daily, hourly) -> None:  # type: ignore[no-untyped-def]
    apis.cryptocompare(server, daily, hourly, api_key="k-123")
    settings = make_settings(cryptocompare_api_key="k-123")
    [first] = run_ingest(settings, ["cryptocompare"], since=pd.Timestamp("2014-01-01", tz="UTC"), now=NOW)
    assert first.ok, first.error
    stored = _stored(settings, "market_cryptocompare_1d")
    assert len(stored) == _expected_days(daily, "2014-01-01")
    assert stored["timestamp"].min() == pd.Timestamp("2014-09-17", tz="UTC")
    assert first.quarantined > 0 and "open: must be > 0" in first.reasons  # padding before the first trade
    hits = server.hits("/data/v2/histoday")
    assert all(h.headers.get("authorization") == "Apikey k-123" for h in hits)
    assert [int(h.params["toTs"]) for h in hits] == sorted((int(h.params["toTs"]) for h in hits), reverse=True)

    before = len(server.requests)
    [second] = run_ingest(settings, ["cryptocompare"], since=pd.Timestamp("2014-01-01", tz="UTC"), now=NOW)
    assert second.ok and second.new == 0 and len(server.requests) == before  # the floor is remembered


def test_cryptocompare_error_payloads(server: FakeServer, make_settings, daily, hourly) -> None:  # type: ignore[no-untyped-def]
    apis.cryptocompare(server, daily, hourly, api_key="right")
    rate_limited = {
        "Response": "Error",
        "Message": "You are over your rate limit please upgrade your account!",
        "Type": 99,
    }
    server.inject("/data/v2/histoday", Fault.status(200, body=rate_limited))
    [bad_key] = run_ingest(
        make_settings(cryptocompare_api_key="wrong"),
        ["cryptocompare"],
        since=pd.Timestamp("2024-01-01", tz="UTC"),
        now=NOW,
    )
    assert not bad_key.ok and "valid auth key" in bad_key.error
    assert bad_key.retries == 1  # the rate-limit answer was retried, the key error was not


def test_coingecko_bad_key_is_a_401_that_says_what_to_fix(server: FakeServer, make_settings, daily, hourly) -> None:  # type: ignore[no-untyped-def]
    apis.coingecko(server, daily, api_key="good")
    apis.coingecko_ohlc(server, hourly, NOW, api_key="good")
    settings = make_settings(coingecko_api_key="bad")
    summaries = run_ingest(settings, ["coingecko"], since=pd.Timestamp("2023-01-01", tz="UTC"), now=NOW)
    for summary in summaries:  # chart and OHLC: each refused at once, no retries
        assert not summary.ok and "HTTP 401" in summary.error and "BITPREDICT_COINGECKO_API_KEY" in summary.error
    assert len(summaries) == 2 and len(server.requests) == 2


def test_coingecko_daily_chart_and_ohlc(server: FakeServer, make_settings, daily, hourly) -> None:  # type: ignore[no-untyped-def]
    apis.coingecko(server, daily)
    apis.coingecko_ohlc(server, hourly, now=NOW)
    settings = make_settings()
    summary, ohlc = run_ingest(settings, ["coingecko"], since=pd.Timestamp("2023-06-01", tz="UTC"), now=NOW)
    assert summary.ok and ohlc.ok, (summary.error, ohlc.error)
    candles = _stored(settings, "market_coingecko_4h")
    assert len(candles) == 30 * 6  # 30 days of closed 4-hour candles; the forming one was skipped
    assert candles["timestamp"].max() == NOW.floor("4h") - pd.Timedelta(hours=4)  # stamped by open time
    assert (candles["interval"] == "4h").all()
    stored = _stored(settings, "market_chart_coingecko_1d")
    days = pd.date_range("2023-06-01", "2024-03-30", freq="D", tz="UTC")
    assert stored["timestamp"].tolist() == list(days)  # daily midnight points only, hourly ones dropped
    closes = daily.assign(day=pd.to_datetime(daily["t"] + 86_400, unit="s", utc=True)).set_index("day")["close"]
    assert stored.set_index("timestamp")["price"].equals(closes.loc[days].rename("price").rename_axis("timestamp"))
    # A short follow-up span still asks for 91 days (so points stay daily) and keeps only the missing ones.
    later, _ = run_ingest(
        settings, ["coingecko"], since=pd.Timestamp("2023-06-01", tz="UTC"), now=NOW + pd.Timedelta(days=1)
    )
    last = server.hits("/api/v3/coins/bitcoin/market_chart/range")[-1]
    assert int(last.params["to"]) - int(last.params["from"]) >= 91 * 86_400 and later.new == 1


def test_malformed_rows_in_a_good_page_are_quarantined_with_reasons(
    server: FakeServer, make_settings, daily, hourly
) -> None:  # type: ignore[no-untyped-def]
    apis.binance(server, daily, hourly)

    def corrupt(klines: list[list[object]]) -> list[list[object]]:
        klines[3][4] = "NaN"  # close
        klines[5][2], klines[5][3] = "100.0", "200.0"  # high < low
        klines[7][1] = "-5"  # negative open
        return klines

    server.inject(KLINES, Fault.rewrite(corrupt))
    settings = make_settings()
    [summary] = run_ingest(settings, ["binance"], since=pd.Timestamp("2024-01-01", tz="UTC"), now=NOW)
    assert summary.ok and summary.quarantined == 3
    quarantine = storage.read_parquet(storage.join(data_path(settings, QUARANTINE), "market_binance_1d.parquet"))
    reasons = " | ".join(quarantine["reason"])
    assert "close: not a number" in reasons and "high < low" in reasons and "open: must be > 0" in reasons
    stored = _stored(settings, "market_binance_1d")
    assert len(stored) + len(quarantine) == _expected_days(daily, "2024-01-01")  # nothing lost


def test_a_page_of_only_stored_bars_is_nothing_new_not_a_failure(
    server: FakeServer, make_settings, daily, hourly, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A source asked for bars after the newest stored one answers with its latest bars, which are stored already
    (its data lags, its pages overlap backwards): the range ends as "nothing new", and `bitpredict ingest` exits 0."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    lagging = daily[daily["t"] <= pd.Timestamp("2024-03-30", tz="UTC").timestamp()]
    apis.binance(server, lagging, hourly)
    real = server.routes[KLINES]

    def overlapping_backwards(req: Request) -> Response:
        newest_ms = int(lagging["t"].max()) * 1000
        if int(req.params["startTime"]) > newest_ms:  # nothing that new: answer with the last three bars
            params = dict(req.params, startTime=str(newest_ms - 2 * apis.DAY_MS), endTime=str(newest_ms))
            return real(Request(req.method, req.path, params, req.headers, req.at))
        return real(req)

    server.route(KLINES, overlapping_backwards)
    settings = make_settings()
    since = pd.Timestamp("2024-01-01", tz="UTC")
    [first] = run_ingest(settings, ["binance"], since=since, now=pd.Timestamp("2024-03-31T12:00:00Z"))
    assert first.ok and first.new == _expected_days(daily, "2024-01-01")
    before = storage.read_bytes(raw_table_uri(settings, "market_binance_1d"))[0]

    [again] = run_ingest(settings, ["binance"], since=since, now=pd.Timestamp("2024-04-03T12:00:00Z"))
    assert again.ok, again.error
    assert again.new == again.updated == 0 and again.note and again.note.startswith("nothing new")
    assert storage.read_bytes(raw_table_uri(settings, "market_binance_1d"))[0] == before
    assert (
        StateStore(data_path(settings, RAW)).load("market_binance_1d")["gaps"] == []
    )  # the range was closed, not left open

    env = {**os.environ, "BITPREDICT_DATA_DIR": settings.data_dir, "BITPREDICT_BINANCE_URL": server.url}
    command = [str(Path(sys.executable).parent / "bitpredict"), "ingest", "-s", "binance", "--since", "2024-01-01"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing new" in done.stdout and "FAILED" not in done.stdout
