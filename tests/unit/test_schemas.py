"""Every schema rejects every kind of bad row with a reason, and never drops a row silently."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bitpredict import storage
from bitpredict.data.schemas import FEATURES, NEWS, RAW_MARKET, TWEETS, SchemaError, validate


def _good_bar(**over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "source": "binance",
        "interval": "1d",
        "timestamp": "2024-03-01T00:00:00Z",
        "open": 100.0,
        "high": 110.0,
        "low": 95.0,
        "close": 105.0,
        "volume": 12.5,
    }
    row.update(over)
    return row


BAD_BARS = [
    ({"open": -1.0}, "open: must be > 0"),
    ({"close": 0.0, "low": 0.0}, "close: must be > 0"),
    ({"high": 90.0}, "high < low"),
    ({"open": 120.0}, "open outside [low, high]"),
    ({"close": 94.0}, "close outside [low, high]"),
    ({"timestamp": "not a date"}, "timestamp: unparseable timestamp"),
    ({"timestamp": None}, "timestamp: missing"),
    ({"close": "abc"}, "close: not a number"),
    ({"close": math.nan}, "close: missing"),
    ({"volume": math.inf}, "volume: not finite"),
    ({"volume": -3.0}, "volume: must be >= 0"),
    ({"interval": "5m"}, "interval: not one of"),
    ({"source": "  "}, "source: missing"),
]


@pytest.mark.parametrize(("change", "reason"), BAD_BARS, ids=[r for _, r in BAD_BARS])
def test_raw_market_rejects_each_bad_row_with_its_reason(change: dict[str, object], reason: str) -> None:
    df = pd.DataFrame([_good_bar(), _good_bar(**{"timestamp": "2024-03-02", **change})])
    result = validate(df, RAW_MARKET)
    assert len(result.valid) == 1 and len(result.quarantine) == 1
    assert reason in result.quarantine["reason"].iloc[0]
    assert len(result.valid) + len(result.quarantine) == len(df)  # nothing lost


def test_raw_market_coerces_types_and_keeps_good_rows() -> None:
    df = pd.DataFrame([_good_bar(timestamp=1709251200, open="100.0"), _good_bar(timestamp="2024-03-02 00:00")])
    result = validate(df, RAW_MARKET)
    assert result.n_rejected == 0
    assert str(result.valid["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert result.valid["timestamp"].iloc[0] == pd.Timestamp("2024-03-01", tz="UTC")
    assert result.valid["open"].dtype == np.float64
    assert "quote_volume" in result.valid.columns  # optional column added as nulls


def test_duplicate_keys_keep_the_last_row_and_quarantine_the_rest() -> None:
    df = pd.DataFrame([_good_bar(close=101.0), _good_bar(close=102.0), _good_bar(close=103.0)])
    result = validate(df, RAW_MARKET)
    assert result.valid["close"].tolist() == [103.0]
    assert result.quarantine["reason"].str.contains("duplicate key").all() and len(result.quarantine) == 2
    assert result.quarantine["close"].tolist() == ["101.0", "102.0"]  # original values kept


def test_a_row_with_several_problems_lists_them_all() -> None:
    result = validate(pd.DataFrame([_good_bar(open=-5.0, timestamp="garbage")]), RAW_MARKET)
    reason = result.quarantine["reason"].iloc[0]
    assert "open: must be > 0" in reason and "timestamp: unparseable" in reason
    assert result.reasons["open: must be > 0"] == 1


def test_missing_required_column_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match=r"raw_market: missing required column\(s\) \['close'\]"):
        validate(pd.DataFrame([_good_bar()]).drop(columns="close"), RAW_MARKET)


def test_quarantine_survives_a_parquet_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    df = pd.DataFrame([_good_bar(close="abc", volume=object()), _good_bar(timestamp="x")])
    result = validate(df, RAW_MARKET)
    storage.write_parquet(result.quarantine, tmp_path / "q.parquet")
    back = storage.read_parquet(tmp_path / "q.parquet")
    assert len(back) == 2 and set(back["table"]) == {"raw_market"}


def _news(**over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "source": "rss",
        "id": "guid-1",
        "published_at": "Tue, 05 Mar 2024 10:00:00 GMT",
        "title": "Bitcoin rallies",
        "summary": None,
        "url": "https://example.test/a",
    }
    row.update(over)
    return row


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"published_at": None}, "published_at: missing"),
        ({"published_at": "yesterday-ish"}, "published_at: unparseable timestamp"),
        ({"title": ""}, "title: missing"),
        ({"id": None}, "id: missing"),
    ],
)
def test_news_rejects_bad_rows(change: dict[str, object], reason: str) -> None:
    result = validate(pd.DataFrame([_news(), _news(**{"id": "guid-2", **change})]), NEWS)
    assert len(result.valid) == 1 and reason in result.quarantine["reason"].iloc[0]


def test_news_parses_rfc822_dates_to_utc() -> None:
    result = validate(pd.DataFrame([_news(published_at="Tue, 05 Mar 2024 12:00:00 +0200")]), NEWS)
    assert result.valid["published_at"].iloc[0] == pd.Timestamp("2024-03-05 10:00", tz="UTC")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"created_at": "??"}, "created_at: unparseable timestamp"),
        ({"text": None}, "text: missing"),
        ({"like_count": -1}, "like_count: must be >= 0"),
        ({"retweet_count": 1.5}, "retweet_count: not an integer"),
        ({"id": "1"}, "duplicate key"),
    ],
)
def test_tweets_reject_bad_rows(change: dict[str, object], reason: str) -> None:
    good = {"id": "1", "created_at": "2024-03-05T10:00:00.000Z", "text": "btc up", "like_count": 3, "retweet_count": 1}
    bad = {**good, "id": "2", **change}
    result = validate(pd.DataFrame([bad, good] if reason == "duplicate key" else [good, bad]), TWEETS)
    assert len(result.valid) == 1 and reason in result.quarantine["reason"].iloc[0]


def test_features_reject_non_finite_extra_columns_and_bad_targets() -> None:
    base = {
        "timestamp": "2024-03-01",
        "open": 1.0,
        "high": 2.0,
        "low": 0.5,
        "close": 1.5,
        "volume": 10.0,
        "target_log_return": 0.01,
        "target_close": 1.6,
        "target_direction": 1,
        "rsi_14": 55.0,
    }
    rows = [
        base,
        {**base, "timestamp": "2024-03-02", "rsi_14": np.inf},
        {**base, "timestamp": "2024-03-03", "target_direction": 2},
        {**base, "timestamp": "2024-03-04", "rsi_14": "n/a"},
        {**base, "timestamp": "2024-03-05", "target_log_return": None, "target_close": None, "target_direction": None},
    ]
    result = validate(pd.DataFrame(rows), FEATURES)
    assert result.valid["timestamp"].dt.day.tolist() == [1, 5]  # the last day has no target yet: valid
    reasons = result.quarantine["reason"].tolist()
    assert "rsi_14: not finite" in reasons[0]
    assert "target_direction: must be 0 or 1" in reasons[1]
    assert "rsi_14: not a number" in reasons[2]
