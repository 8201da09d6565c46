"""Speed of the indicators stage against TA-Lib (C) called directly: the real daily data and 1M real hourly bars.

Why: TA-Lib is the indicator engine (issue 18); ``bitpredict.features.indicators`` only wraps it (float64 contiguous
inputs, checks) and adds what TA-Lib lacks. The target is at most 1.5× TA-Lib's own time on 1M rows for the
indicators both compute — by construction, since ours *are* TA-Lib's calls. It times ``compute_indicators`` (all
40+ columns, with the input checks and the frame), the TA-Lib-shared subset through our wrappers, and the same
TA-Lib calls made directly. Best of ``--repeat`` runs. Per-request feature times: ``bench_features.py``.

    .venv/bin/python benchmarks/bench_indicators.py
    .venv/bin/python benchmarks/bench_indicators.py --rows 1000000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import talib  # noqa: E402

from bitpredict.features import indicators as ind  # noqa: E402

HOURLY_TIME = "time"  # unix seconds in the CryptoCompare export


def shared_dir() -> Path:
    return Path(os.environ.get("BITPREDICT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def read_bars(name: str, time_column: str) -> pd.DataFrame:
    raw = pd.read_csv(shared_dir() / name)
    raw.columns = [c.strip().lower().replace(" ", "_") for c in raw.columns]
    stamps = raw[time_column]
    when = (
        pd.to_datetime(stamps, unit="s", utc=True)
        if np.issubdtype(stamps.dtype, np.number)
        else pd.to_datetime(stamps, utc=True)
    )
    bars = pd.DataFrame(
        {"timestamp": when, **{c: pd.to_numeric(raw[c], errors="coerce") for c in ("open", "high", "low", "close")}}
    )
    bars["volume"] = pd.to_numeric(raw["volume" if "volume" in raw else "volumefrom"], errors="coerce")
    bars = bars.dropna()
    bars = bars[(bars[["open", "high", "low", "close", "volume"]] > 0).all(axis=1)]
    return bars.sort_values("timestamp").drop_duplicates("timestamp").reset_index(drop=True)


def tiled(bars: pd.DataFrame, rows: int) -> pd.DataFrame:
    """``rows`` real hourly bars: copies of the real series one after another (a price jump at each seam,
    no invented prices), re-stamped hourly so the timestamps keep increasing."""
    reps = -(-rows // len(bars))
    out = {c: np.tile(bars[c].to_numpy(), reps)[:rows] for c in ("open", "high", "low", "close", "volume")}
    return pd.DataFrame({"timestamp": pd.date_range("2000-01-01", periods=rows, freq="h", tz="UTC"), **out})


def shared_subset_ours(bars: pd.DataFrame) -> None:
    close, high, low, volume = (bars[c].to_numpy(dtype="float64") for c in ("close", "high", "low", "volume"))
    for n in ind.SMA_WINDOWS:
        ind.sma(close, n)
    for n in ind.EMA_WINDOWS:
        ind.ema(close, n)
    ind.rsi(close)
    ind.macd(close)
    ind.bbands(close)
    ind.atr(high, low, close)
    ind.natr(high, low, close)
    ind.obv(close, volume)
    for h in ind.RETURN_HORIZONS:
        ind.log_return(close, h)


def shared_subset_talib(bars: pd.DataFrame) -> None:
    close, high, low, volume = (bars[c].to_numpy(dtype="float64") for c in ("close", "high", "low", "volume"))
    for n in ind.SMA_WINDOWS:
        talib.SMA(close, n)
    for n in ind.EMA_WINDOWS:
        talib.EMA(close, n)
    talib.RSI(close, 14)
    talib.MACD(close, 12, 26, 9)
    talib.BBANDS(close, 20, 2, 2)
    talib.ATR(high, low, close, 14)
    talib.NATR(high, low, close, 14)
    talib.OBV(close, volume)
    for h in ind.RETURN_HORIZONS:
        np.log(talib.ROCR(close, h))


def best_of(fn: Callable[[pd.DataFrame], object], bars: pd.DataFrame, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(bars)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    daily = read_bars("btc_usd_daily.csv", "date")
    hourly = read_bars("btc_usd_hourly.csv", HOURLY_TIME)
    print(f"{'data':<22}{'rows':>10}{'ours, all':>12}{'ours, shared':>14}{'TA-Lib':>10}{'ratio':>8}")
    for label, bars in (("real daily", daily), ("real hourly, tiled", tiled(hourly, args.rows))):
        full = best_of(ind.compute_indicators, bars, args.repeat)
        ours = best_of(shared_subset_ours, bars, args.repeat)
        theirs = best_of(shared_subset_talib, bars, args.repeat)
        print(
            f"{label:<22}{len(bars):>10,}{full * 1e3:>10.1f}ms{ours * 1e3:>12.1f}ms{theirs * 1e3:>8.1f}ms"
            f"{ours / theirs:>7.2f}x"
        )
    print("ratio = ours (TA-Lib-shared subset) / TA-Lib; target ≤ 1.5x on the tiled rows")


if __name__ == "__main__":
    main()
