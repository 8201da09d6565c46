"""Per-request feature time in-process: a 200-row forecast request → the model's [1, W, F] input (issue 18).

Why: about half the transformer's CPU went into the feature code, pandas overhead on 200-row frames (~5 ms per
request). The target is ≤ 1 ms for the features of a 200-row request. Printed side by side, on the same request:

* before — the DataFrame path the transformer ran until issue 18: the training-table builder (``model_frame``:
  every indicator column as a frame) over the request's window + warm-up rows, then the scaler on the last W rows;
* ``feature_window`` on ``parse_request``'s frame — what a caller that still holds a DataFrame gets now;
* ``parse_bars`` — validating the v2 tensors into NumPy arrays;
* after — ``feature_window`` on ``parse_bars``' arrays: NumPy end to end, only the model's columns for its last
  W rows (the target), and the two together (what the transformer's preprocess does per request).

The request is the last 200 days of the real daily file with ``is_imputed`` and the news sentiment, and the spec
is the network's full input list (every feature, flag and sentiment column) with a scaler fitted on the real
features table. Median and best of ``--repeat`` calls after a warm-up (the median is the figure to quote on a
shared machine).

    .venv/bin/python benchmarks/bench_features.py
    .venv/bin/python benchmarks/bench_features.py --rows 1000 --repeat 5000
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

from bitpredict.config import ModelSettings  # noqa: E402
from bitpredict.features.columns import sentiment_columns  # noqa: E402
from bitpredict.features.indicators import WARMUP, compute_indicators  # noqa: E402
from bitpredict.features.merge import build_features, labelled  # noqa: E402
from bitpredict.forecast.dataset import Scaler, model_input_columns  # noqa: E402
from bitpredict.forecast.serving import ModelSpec, feature_window, parse_bars, parse_request, request_features  # noqa: E402


def shared_dir() -> Path:
    return Path(os.environ.get("BITPREDICT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def daily_bars() -> pd.DataFrame:
    """The real daily file as clean-table rows (timestamp at 00:00 UTC, OHLCV, no filled bars)."""
    path = shared_dir() / "btc_usd_daily.csv"
    if not path.exists():
        sys.exit(f"{path} not found: the benchmark needs the shared daily file (BITPREDICT_SHARED_DATA)")
    raw = pd.read_csv(path)
    raw.columns = [c.strip().lower() for c in raw.columns]
    bars = pd.DataFrame({"timestamp": pd.to_datetime(raw["date"], utc=True)})
    for column in ("open", "high", "low", "close", "volume"):
        bars[column] = pd.to_numeric(raw[column], errors="coerce")
    bars = bars.dropna().sort_values("timestamp").drop_duplicates("timestamp").reset_index(drop=True)
    full = pd.date_range(bars["timestamp"].iloc[0], bars["timestamp"].iloc[-1], freq="D")
    return bars.set_index("timestamp").reindex(full).ffill().rename_axis("timestamp").reset_index()


def network_spec(bars: pd.DataFrame, rows: int) -> ModelSpec:
    features = build_features(compute_indicators(bars), None, WARMUP)
    columns = model_input_columns(features.columns)
    meta = {
        "feature_columns": columns,
        "window": ModelSettings().window,
        "warmup": WARMUP,
        "scaler": Scaler.fit(labelled(features), columns).to_dict(),
        "quantiles": [0.1, 0.5, 0.9],
    }
    return ModelSpec.from_metadata(meta, "1", max_rows=max(rows, 365))


def request(bars: pd.DataFrame, rows: int) -> dict[str, tuple[str, np.ndarray]]:
    """A decoded v2 request as the UI sends it: the last ``rows`` days, is_imputed and the news sentiment."""
    tail = bars.tail(rows).reset_index(drop=True)
    rng = np.random.default_rng(0)
    inputs = {"timestamp": ("INT64", tail["timestamp"].astype("int64").to_numpy() // 10**9)}
    inputs.update({c: ("FP64", tail[c].to_numpy(dtype="float64")) for c in ("open", "high", "low", "close", "volume")})
    inputs["is_imputed"] = ("FP64", np.zeros(rows))
    inputs.update({f"sentiment_{c}": ("FP64", rng.uniform(0, 1, rows)) for c in sentiment_columns("news")})
    return inputs


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, best) seconds of ``repeat`` calls after ``repeat // 10`` warm-up calls."""
    for _ in range(max(1, repeat // 10)):
        fn()
    times = np.empty(repeat)
    for i in range(repeat):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return float(np.median(times)), float(times.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200, help="Rows per request.")
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()

    bars = daily_bars()
    spec = network_spec(bars, args.rows)
    inputs = request(bars, args.rows)
    frame, arrays = parse_request(inputs, spec), parse_bars(inputs, spec)
    np.testing.assert_array_equal(feature_window(frame, spec), feature_window(arrays, spec))

    def before() -> np.ndarray:
        return spec.scaler.transform(request_features(frame, spec.min_rows).iloc[-spec.window :])

    np.testing.assert_allclose(before(), feature_window(arrays, spec)[0], atol=1e-5)
    cases = [
        ("before: model_frame (DataFrame) + scaler", before),
        ("feature_window(parse_request frame)", lambda: feature_window(frame, spec)),
        ("parse_bars (validation, arrays)", lambda: parse_bars(inputs, spec)),
        ("after: feature_window(arrays)", lambda: feature_window(arrays, spec)),
        ("after: parse_bars + feature_window", lambda: feature_window(parse_bars(inputs, spec), spec)),
    ]
    print(
        f"request: {args.rows} rows, window {spec.window}, {len(spec.feature_columns)} model inputs; "
        f"median and best of {args.repeat} calls"
    )
    print(f"{'path':<44}{'median':>10}{'best':>10}")
    results = {}
    for label, fn in cases:
        median, best = timed(fn, args.repeat)
        results[label] = median
        print(f"{label:<44}{median * 1e3:>8.3f}ms{best * 1e3:>8.3f}ms")
    after = results["after: feature_window(arrays)"]
    print(
        f"features: {results['before: model_frame (DataFrame) + scaler'] / after:.1f}x faster than before; "
        f"target ≤ 1 ms (set for 200-row requests), {args.rows} rows: {'met' if after <= 1e-3 else 'MISSED'} "
        f"({after * 1e3:.3f} ms median)"
    )


if __name__ == "__main__":
    main()
