"""clean: one series from several sources, every rule counted, no look-ahead in the flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bitpredict import storage
from bitpredict.config import CleanSettings, load_settings
from bitpredict.data.clean import aggregate_to_daily, clean_bars, flag_outliers, run_clean
from bitpredict.errors import InputError
from bitpredict.pipeline.stage_table import INTERIM, data_path
from tests.conftest import copy_data_dir


def _bars(days: pd.DatetimeIndex, close: np.ndarray | float = 100.0, volume: float = 10.0) -> pd.DataFrame:
    close = np.broadcast_to(np.asarray(close, dtype=float), (len(days),)).copy()
    return pd.DataFrame(
        {"timestamp": days, "open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": volume}
    )


DAYS = pd.date_range("2024-01-01", periods=40, freq="D", tz="UTC")


def test_priority_fill_and_consistency_rules() -> None:
    primary = _bars(DAYS).drop(index=[10, 11])  # two days missing in the primary source
    primary.loc[5, "high"] = 50.0  # high below open/close: rejected, the backup fills the day
    primary.loc[6, "volume"] = 0.0  # zero volume: rejected
    primary = pd.concat([primary, primary.loc[[20]].assign(close=100.5)])  # duplicate day: the last wins
    backup = _bars(DAYS, close=101.0).assign(volume=np.nan, quote_volume=1010.0)  # USD volume only
    result = clean_bars({"yahoo": primary, "cryptocompare": backup}, "1d", CleanSettings())
    bars = result.bars.set_index("timestamp")
    assert len(bars) == 40 and not bars["is_imputed"].any()
    assert (bars.loc[DAYS[[5, 6, 10, 11]], "source"] == "cryptocompare").all()
    assert bars.loc[DAYS[10], "volume"] == pytest.approx(1010.0 / 101.0)  # derived from the quote volume
    assert bars.loc[DAYS[20], "close"] == 100.5
    rules = result.report["rules"]
    assert rules["rejected_ohlc_inconsistent"] == 1 and rules["rejected_non_positive_volume"] == 1
    assert rules["duplicate_timestamps"] == 1 and rules["volume_derived_from_quote"] == 40
    assert result.report["bars_per_source"] == {"cryptocompare": 4, "yahoo": 36}
    [overlap] = result.report["source_disagreement"]
    assert overlap["overlap_bars"] == 36 and overlap["close_rel_diff_median"] == pytest.approx(0.01, rel=0.01)


def test_short_gaps_are_filled_and_flagged_long_gaps_restart_the_series() -> None:
    bars = _bars(DAYS, close=np.linspace(100, 140, 40)).drop(index=[5, 6, 20, 21, 22, 23, 24])
    result = clean_bars({"yahoo": bars}, "1d", CleanSettings(max_fill_gap=3))
    out = result.bars
    assert out["timestamp"].iloc[0] == DAYS[25]  # restarted after the 5-day gap
    assert result.report["bars_dropped_before_long_gap"] == 18 and not out["is_imputed"].any()
    short = clean_bars({"yahoo": bars.iloc[:15]}, "1d", CleanSettings(max_fill_gap=3)).bars.set_index("timestamp")
    filled = short.loc[DAYS[[5, 6]]]
    assert filled["is_imputed"].all() and (filled["source"] == "imputed").all()
    assert (filled["close"] == short.loc[DAYS[4], "close"]).all() and (filled["open"] == filled["close"]).all()


def test_outliers_are_flagged_by_a_trailing_rule_and_optionally_dropped() -> None:
    rng = np.random.default_rng(3)
    days = pd.date_range("2023-01-01", periods=200, freq="D", tz="UTC")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
    close[150] *= 3.0  # a bad tick
    bars = _bars(days, close=close)
    kept = clean_bars({"yahoo": bars}, "1d", CleanSettings(outlier_mad_threshold=10))
    flagged = kept.bars.loc[kept.bars["is_outlier"], "timestamp"]
    assert days[150] in set(flagged) and len(kept.bars) == 200
    dropped = clean_bars({"yahoo": bars}, "1d", CleanSettings(outlier_mad_threshold=10, drop_outliers=True)).bars
    row = dropped.set_index("timestamp").loc[days[150]]
    assert row["is_imputed"] and row["is_outlier"] and row["close"] == pytest.approx(close[149])


@pytest.mark.parametrize("cut", [60, 120, 199])
def test_outlier_flags_do_not_look_ahead(cut: int) -> None:
    rng = np.random.default_rng(cut)
    close = pd.Series(100 * np.exp(np.cumsum(rng.standard_t(3, 300) * 0.02)))
    full = flag_outliers(close, 5.0)
    future_changed = close.copy()
    future_changed.iloc[cut + 1 :] *= rng.uniform(0.2, 5.0, len(close) - cut - 1)
    assert full.iloc[: cut + 1].equals(flag_outliers(close.iloc[: cut + 1], 5.0))
    assert full.iloc[: cut + 1].equals(flag_outliers(future_changed, 5.0).iloc[: cut + 1])


def test_hourly_to_daily_needs_most_of_the_day() -> None:
    hours = pd.date_range("2024-01-01 05:00", "2024-01-03 23:00", freq="h", tz="UTC")
    hourly = _bars(hours, close=np.arange(len(hours)) + 100.0).assign(quote_volume=1.0)
    daily, incomplete = aggregate_to_daily(hourly, 3600)
    assert incomplete == 1  # 2024-01-01 has only 19 hours
    first = daily.iloc[0]
    assert first["timestamp"] == pd.Timestamp("2024-01-02", tz="UTC")
    assert first["open"] == 119.0 and first["close"] == 142.0 and first["volume"] == 240.0


def test_a_day_counts_only_when_it_has_ended_with_its_last_hour() -> None:
    """At 21:30 UTC the stored hours run to 20:00: today is not a bar. A day without hours 20-23 (20 of 24 hours,
    enough by count) is not a bar either: its close would be the 19:00 one."""
    hours = pd.date_range("2024-01-01 00:00", "2024-01-03 20:00", freq="h", tz="UTC")
    hourly = _bars(hours, close=np.arange(len(hours)) + 100.0).assign(quote_volume=1.0)
    hourly = hourly[~((hourly["timestamp"] >= "2024-01-02 20:00") & (hourly["timestamp"] < "2024-01-03"))]
    daily, incomplete = aggregate_to_daily(hourly, 3600)
    assert daily["timestamp"].tolist() == [pd.Timestamp("2024-01-01", tz="UTC")] and incomplete == 2
    assert daily["close"].iloc[0] == 123.0  # the close of 23:00, the day's last hour
    four_hourly = _bars(pd.date_range("2024-01-01", "2024-01-02 16:00", freq="4h", tz="UTC"), close=100.0)
    assert aggregate_to_daily(four_hourly.assign(quote_volume=1.0), 14_400)[0]["timestamp"].tolist() == [
        pd.Timestamp("2024-01-01", tz="UTC")
    ]


def test_clean_the_real_shared_data(shared_raw_dir: Path, tmp_path: Path) -> None:
    data_dir = copy_data_dir(shared_raw_dir, tmp_path / "data")
    settings = load_settings(data_dir=str(data_dir))
    report = run_clean(settings, "1d")
    bars = storage.read_parquet(storage.join(data_path(settings, INTERIM), "clean_1d.parquet"))
    assert report["first"].startswith("2014-09-17") and report["last"].startswith("2024-11-12")
    assert len(bars) == (pd.Timestamp("2024-11-12") - pd.Timestamp("2014-09-17")).days + 1 == 3710
    assert report["bars_per_source"] == {"cryptocompare": 226, "yahoo": 3484}
    assert bars["timestamp"].diff().dropna().eq(pd.Timedelta(days=1)).all() and not bars["is_imputed"].any()
    assert bars.set_index("timestamp").loc[pd.Timestamp("2020-03-12", tz="UTC"), "close"] == pytest.approx(
        4970.79, abs=0.01
    )
    [overlap] = report["source_disagreement"]
    assert overlap["sources"] == ["yahoo", "cryptocompare"] and overlap["close_rel_diff_median"] < 0.005
    written = json.loads(storage.read_text(storage.join(data_path(settings, INTERIM), "clean_1d_report.json")))
    assert written["rows"] == 3710
    markdown = storage.read_text(storage.join(data_path(settings, INTERIM), "clean_1d_report.md"))
    assert "yahoo vs cryptocompare" in markdown and "| yahoo | 3484 |" in markdown

    hourly = run_clean(settings, "1h")
    assert hourly["bars_imputed"] == 1 and hourly["gaps"][0]["first"].startswith("2021-01-04T05:00")


def test_the_splice_of_the_shared_files_keeps_one_volume_scale(shared_raw_dir: Path, tmp_path: Path) -> None:
    """Yahoo (all exchanges) ends 2024-03-31, CryptoCompare's hourly bars continue: the later source's volume is
    rescaled where they meet, so the series has no volume cliff, and the report states the splice."""
    from bitpredict.features.indicators import compute_indicators

    settings = load_settings(data_dir=str(copy_data_dir(shared_raw_dir, tmp_path / "data")))
    report = run_clean(settings, "1d")
    splice_day = pd.Timestamp("2024-04-01", tz="UTC")
    [splice] = report["splices"]
    assert splice["at"] == splice_day.isoformat() and (splice["from"], splice["to"]) == ("yahoo", "cryptocompare")
    [note] = report["volume_reconciliation"]
    assert note["scaled_to"] == "yahoo" and note["factor"] == splice["volume_factor"] > 1
    assert note["overlap_bars"] == report["source_disagreement"][0]["overlap_bars"]
    markdown = storage.read_text(storage.join(data_path(settings, INTERIM), "clean_1d_report.md"))
    assert "## Splices" in markdown and "| 2024-04-01 | yahoo → cryptocompare |" in markdown

    bars = storage.read_parquet(storage.join(data_path(settings, INTERIM), "clean_1d.parquet")).set_index("timestamp")
    log_volume = np.log(bars["volume"])
    month = pd.Timedelta(days=30)
    before = log_volume[splice_day - month : splice_day - pd.Timedelta(days=1)].median()
    after = log_volume[splice_day : splice_day + month].median()
    assert abs(after - before) < np.log(2)  # one market, one scale: no factor-of-ten step at the seam
    z = compute_indicators(bars.reset_index()).set_index("timestamp")["volume_zscore_30"]
    assert z[splice_day : splice_day + pd.Timedelta(days=6)].abs().max() < 3


def test_no_raw_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run `bitpredict ingest` first"):  # the user's data: one line in the CLI
        run_clean(load_settings(data_dir=str(tmp_path)), "1d")
