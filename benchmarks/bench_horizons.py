"""Does serving three horizons cost more than half again one? In-process time of a forecast request (issue 31).

For each kind in ``--kinds`` (the real exports: ``bitpredict.forecast.baselines`` and the combination ``combo``, the
default champion), fitted on the embedded
sample's clean daily bars twice — ``model.horizons`` = [1] and [1, 7, 30] — the transformer's work without HTTP is
timed per request from the same 200-bar v2 request:

* **today**: the 1-horizon model, features (``parse_bars`` + ``feature_window``) + SavedModel + ``forecast`` (the
  1-day outputs, what the transformer computed before issue 31);
* **1 horizon, new code**: the same plus ``horizon_forecast`` (per-horizon outputs and risk figures, H = 1);
* **3 horizons**: the [1, 7, 30] model, features + SavedModel + ``forecast`` + ``horizon_forecast`` (H = 3).

Prints the medians and the ratio 3 horizons ÷ today (target ≤ 1.5), and beside it features + the SavedModel call
alone, 1 → 3 horizons (the issue's wording: "features and the model for three horizons"). Figures only; nothing is
asserted.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_horizons.py [--kinds ewma,har,garch] [--requests 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from bitpredict.runtime import quiet_tensorflow  # noqa: E402


def _clean_daily(workdir: Path):  # type: ignore[no-untyped-def]
    from benchmarks.chaos.fuzz import sample_bars

    return sample_bars(workdir)


def _served(kind: str, frame, horizons: tuple[int, ...], workdir: Path):  # type: ignore[no-untyped-def]
    """(ModelSpec, signature) of ``kind`` fitted for ``horizons`` and loaded back from its SavedModel export."""
    import tensorflow as tf

    from bitpredict.config import ModelSettings
    from bitpredict.forecast import baselines, combination
    from bitpredict.forecast.artifact import SAVED_MODEL_DIR, SIGNATURE
    from bitpredict.forecast.quantiles import LEVELS
    from bitpredict.forecast.serving import ModelSpec
    from bitpredict.forecast.train import baseline_metadata

    if kind == combination.KIND:  # the default champion: every baseline, averaged horizon by horizon
        members = ModelSettings().combination
        fit = combination.combine(members, frame, len(frame), LEVELS, 30, None, horizons)
    else:
        fit = baselines.fit_baseline(kind, frame, len(frame), LEVELS, 30, horizons)
    folder = workdir / f"{kind}-{len(horizons)}"
    baselines.export(fit, folder)
    meta = baseline_metadata(fit, ModelSettings(window=30, horizons=list(horizons)))
    loaded = tf.saved_model.load(str(folder / SAVED_MODEL_DIR))
    return ModelSpec.from_metadata(meta, "1"), loaded.signatures[SIGNATURE], loaded


def _time(spec, signature, inputs: dict, n: int, horizons: bool, post: bool = True) -> list[float]:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    from bitpredict.forecast.artifact import HORIZON_QUANTILES_OUTPUT, INPUT_NAME, QUANTILES_OUTPUT
    from bitpredict.forecast.serving import feature_window, forecast, horizon_forecast, parse_bars

    def once() -> None:
        bars = parse_bars(inputs, spec)
        out = signature(**{INPUT_NAME: tf.constant(feature_window(bars, spec).astype("float32"))})
        quantiles = out[QUANTILES_OUTPUT].numpy().astype("float64")
        if not post:  # features and the model alone (the issue's own wording of the target)
            if horizons:
                out[HORIZON_QUANTILES_OUTPUT].numpy()
            return
        forecast(quantiles[0], bars, spec)
        if horizons:
            rows = out[HORIZON_QUANTILES_OUTPUT].numpy().astype("float64")[0]
            rows[0] = quantiles[0]
            horizon_forecast(rows, bars, spec)

    for _ in range(20):
        once()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        once()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default="combo,ewma,har,garch", help="kinds (baselines, combo), comma-separated")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per path (after 20 warm-up)")
    args = parser.parse_args()
    quiet_tensorflow()
    from bitpredict.features.columns import TARGET
    from bitpredict.features.indicators import WARMUP, compute_indicators
    from bitpredict.features.merge import build_features
    from inference.client import v2_request

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        daily = _clean_daily(workdir)
        frame = build_features(compute_indicators(daily), None, WARMUP)
        frame = frame[frame[TARGET].notna()].reset_index(drop=True)
        body = v2_request(daily.tail(200).reset_index(drop=True))
        inputs = {t["name"]: (t["datatype"], np.asarray(t["data"])) for t in body["inputs"]}
        print("| model | today (1 horizon) p50 | 1 horizon, new code p50 | 3 horizons p50 | 3 horizons ÷ today "
              "| features + model only: 1 → 3 horizons |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for kind in args.kinds.split(","):
            one_spec, one_sig, _keep1 = _served(kind, frame, (1,), workdir)
            three_spec, three_sig, _keep3 = _served(kind, frame, (1, 7, 30), workdir)
            today = np.median(_time(one_spec, one_sig, inputs, args.requests, horizons=False)) * 1000
            one = np.median(_time(one_spec, one_sig, inputs, args.requests, horizons=True)) * 1000
            three = np.median(_time(three_spec, three_sig, inputs, args.requests, horizons=True)) * 1000
            bare_one = np.median(_time(one_spec, one_sig, inputs, args.requests, horizons=False, post=False)) * 1000
            bare_three = (
                np.median(_time(three_spec, three_sig, inputs, args.requests, horizons=True, post=False)) * 1000
            )
            mark = "✓" if three / today <= 1.5 else "✗"
            print(f"| {kind} | {today:.2f} ms | {one:.2f} ms | {three:.2f} ms | {three / today:.2f}× {mark} "
                  f"| {bare_one:.2f} → {bare_three:.2f} ms ({bare_three / bare_one:.2f}×) |")  # fmt: skip


if __name__ == "__main__":
    main()
