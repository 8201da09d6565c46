"""The ablation: what each change to the network recipe is worth, measured walk-forward on held-out days.

Each variant is the default recipe with a few settings changed; every one is backtested on the same
blocks as the evaluate stage (refit before each block on all earlier days) and scored on the primary
score against the best probabilistic baseline of the same days, with the HAC Diebold–Mariano test. A
second table does sentiment on/off on the span the news data covers (the default test year has no news),
scored on all days of that span and on the days that had news. ``bitpredict ablation --doc docs/forecasting.md``
writes both tables into the manual's ``ablation`` block: generated, never typed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bitpredict import storage
from bitpredict.config import ModelSettings, Settings
from bitpredict.evaluation import scores
from bitpredict.evaluation.backtest import blocks_of, median_index
from bitpredict.features.columns import FLAG_COLUMNS, TARGET
from bitpredict.features.indicators import HAR_LAGS, MODEL_FEATURES
from bitpredict.features.merge import labelled
from bitpredict.forecast import baselines
from bitpredict.forecast.dataset import model_input_columns
from bitpredict.forecast.train import fit_recipe, load_features
from bitpredict.pipeline.stage_table import REPORTS, data_path

log = logging.getLogger(__name__)

VOLATILITY_INPUTS = ["ewma_vol", *(f"log_gk_var_{n}" for n in HAR_LAGS)]
# The inputs a pure volatility model would use: everything else is left out in one variant.
RETURN_AND_VOLATILITY = {"log_return_1", "log_return_7", "log_return_30", "realized_vol_7", "realized_vol_30",
                         "range_pct", *VOLATILITY_INPUTS}  # fmt: skip

VARIANTS: dict[str, dict[str, Any]] = {
    "before: constant target scale, no volatility inputs": {
        "target_scaling": "constant",
        "exclude_features": VOLATILITY_INPUTS,
    },
    "+ volatility inputs (EWMA vol, Garman–Klass HAR means)": {"target_scaling": "constant"},
    "+ volatility-scaled target (the default recipe)": {},
    "default, returns and volatility inputs only": {
        "use_sentiment": False,
        "exclude_features": [c for c in (*MODEL_FEATURES, *FLAG_COLUMNS) if c not in RETURN_AND_VOLATILITY],
    },
    "default, window 14 days": {"window": 14},
    "default, 3-seed ensemble": {"ensemble": 3},
}
SENTIMENT_VARIANTS: dict[str, dict[str, Any]] = {
    "default (with sentiment)": {},
    "without sentiment inputs": {"use_sentiment": False},
}


def network_quantiles(
    frame: pd.DataFrame, recipe: ModelSettings, progress: Callable[[str], None] | None = None
) -> np.ndarray:
    """Walk-forward quantiles [test_days, Q] of one network recipe (same blocks as ``evaluate``)."""
    columns = model_input_columns(frame.columns, recipe.use_sentiment, recipe.exclude_features)
    parts = []
    for number, (start, end, _) in enumerate(blocks_of(len(frame), recipe), 1):
        if progress:
            progress(f"block {number}: fit on {start} rows")
        quantiles, _ = fit_recipe(frame, columns, recipe, end=start).predict(frame, np.arange(start, end))
        parts.append(quantiles)
    return np.concatenate(parts)


def baseline_quantiles(frame: pd.DataFrame, config: ModelSettings) -> dict[str, np.ndarray]:
    out = {}
    for kind in config.baselines:
        parts = []
        for start, end, _ in blocks_of(len(frame), config):
            fit = baselines.fit_baseline(kind, frame, start, tuple(config.quantiles), config.window)
            parts.append(baselines.predict(fit, frame, np.arange(start, end))[0])
        out[kind] = np.concatenate(parts)
    return out


def score_row(
    actual: np.ndarray, quantiles: np.ndarray, reference: np.ndarray, levels: tuple[float, ...]
) -> dict[str, float]:
    """Primary score, its change vs the reference (best baseline), HAC-DM p, point skill, interval coverage."""
    loss = scores.pinball(actual, quantiles, levels).mean(axis=1)
    base = scores.pinball(actual, reference, levels).mean(axis=1)
    _, p = scores.diebold_mariano(loss, base)
    median = quantiles[:, median_index(levels)]
    return {
        "pinball_mean": float(loss.mean()),
        "vs_best_baseline": float(loss.mean() / base.mean() - 1.0),
        "dm_pvalue": p,
        "point_skill": float(1.0 - np.abs(median - actual).mean() / np.abs(actual).mean()),
        "interval_coverage": float(
            np.mean((actual >= quantiles[:, levels.index(0.1)]) & (actual <= quantiles[:, levels.index(0.9)]))
        ),
    }


def run_variants(
    frame: pd.DataFrame,
    config: ModelSettings,
    variants: dict[str, dict[str, Any]],
    mask: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score every variant (and the best baseline) on the last ``config.test_days`` rows of ``frame``."""
    levels = tuple(config.quantiles)
    actual = frame[TARGET].to_numpy(dtype="float64")[-config.test_days :]
    keep = np.isfinite(actual) & (np.ones(len(actual), bool) if mask is None else mask)
    base = baseline_quantiles(frame, config)
    best = min(base, key=lambda k: scores.pinball(actual[keep], base[k][keep], levels).mean())
    rows = {}
    for name, change in variants.items():
        if progress:
            progress(f"variant: {name}")
        quantiles = network_quantiles(frame, config.model_copy(update=change), progress)
        rows[name] = score_row(actual[keep], quantiles[keep], base[best][keep], levels)
    rows[f"best baseline ({best})"] = score_row(actual[keep], base[best][keep], base[best][keep], levels)
    first = frame["timestamp"].iloc[-config.test_days].date().isoformat()
    return {
        "rows": rows,
        "days": int(keep.sum()),
        "first_day": first,
        "last_day": str(frame["timestamp"].iloc[-1].date()),
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| variant | mean pinball (%) | vs best baseline | HAC-DM p (better) | point skill | 80% coverage |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        is_baseline = name.startswith("best baseline")
        change = "—" if is_baseline else f"{row['vs_best_baseline']:+.2%}"
        p = "—" if is_baseline else f"{row['dm_pvalue']:.3f}"
        lines.append(
            f"| {name} | {row['pinball_mean'] * 100:.4f} | {change} | {p} | {row['point_skill']:+.4f} "
            f"| {row['interval_coverage']:.1%} |"
        )
    return "\n".join(lines) + "\n"


SECTIONS = ("recipe", "year_before", "sentiment")


def run_ablation(
    settings: Settings, progress: Callable[[str], None] | None = None, sections: tuple[str, ...] = SECTIONS
) -> dict[str, Any]:
    """The tables, each a section that can be rerun alone (the others are kept from ``ablation.json``):

    * ``recipe``: every variant on the evaluate stage's test span;
    * ``year_before``: the same variants (but the costly ensemble) on the ``test_days`` before it — a recipe
      that looks better on the reported year should also be better here, or it was picked on its test data;
    * ``sentiment``: sentiment on/off over the span the news covers, all days and the days with news.
    """
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown ablation section(s) {unknown}; choose from {list(SECTIONS)}")
    config = settings.model
    frame = labelled(load_features(settings))
    uri = storage.join(data_path(settings, REPORTS), "evaluation", "ablation.json")
    result: dict[str, Any] = json.loads(storage.read_text(uri)) if storage.exists(uri) else {}
    if "recipe" in sections:
        result["recipe"] = run_variants(frame, config, VARIANTS, progress=progress)
    if "year_before" in sections and len(frame) > 2 * config.test_days:
        earlier = frame.iloc[: len(frame) - config.test_days].reset_index(drop=True)
        cheap = {name: change for name, change in VARIANTS.items() if "ensemble" not in change}
        result["year_before"] = run_variants(earlier, config, cheap, progress=progress)
    news_days = frame.index[frame.get("news_missing", pd.Series(1.0, index=frame.index)) == 0]
    if "sentiment" in sections and len(news_days) >= 60:
        span = frame.iloc[: news_days[-1] + 1].reset_index(drop=True)
        test_days = int(news_days[-1] - news_days[0] + 1)
        news_config = config.model_copy(update={"test_days": test_days})
        had_news = span["news_missing"].to_numpy()[-test_days:] == 0
        result["sentiment_all_days"] = run_variants(span, news_config, SENTIMENT_VARIANTS, progress=progress)
        result["sentiment_news_days"] = run_variants(span, news_config, SENTIMENT_VARIANTS, had_news, progress)
    storage.write_text(uri, json.dumps(result, indent=2))
    return result


def markdown(result: dict[str, Any]) -> str:
    text = ""
    if "recipe" in result:
        recipe = result["recipe"]
        text += (
            f"Walk-forward over {recipe['days']} days ({recipe['first_day']} → {recipe['last_day']}), the evaluate "
            "stage's blocks and refits; losses on the next-day log return.\n\n" + table(recipe)
        )
    if "year_before" in result:
        before = result["year_before"]
        text += (
            f"\nThe same variants on the {before['days']} days before ({before['first_day']} → {before['last_day']}): "
            "a change that helps on the reported year should help here too, or it was chosen on its test data.\n\n"
            + table(before)
        )
    if "sentiment_all_days" in result:
        every, news = result["sentiment_all_days"], result["sentiment_news_days"]
        text += (
            f"\nSentiment on/off over the news span ({every['first_day']} → {every['last_day']}), all "
            f"{every['days']} days:\n\n"
            + table(every)
            + f"\nThe same, only the {news['days']} days with news:\n\n"
            + table(news)
        )
    return text
