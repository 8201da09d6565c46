"""The merge stage: indicators + daily sentiment + targets → the features table (``stage_table.FEATURES``).

Alignment (the no-look-ahead contract): the row of day *t* holds the bar of day *t* (which closes at the
end of day *t*, UTC), indicators computed from bars up to *t*, and the sentiment of texts published
during day *t*. The targets are the only columns that look ahead, by design: the log return from the
close of *t* to the close of *t+1*, that close, and its direction. The last row has no target yet.

Missing sentiment days get the neutral values and ``<prefix>_missing = 1`` (``bitpredict.features.columns``,
the rule the serving transformer applies too).
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bitpredict import __version__, storage
from bitpredict.config import Settings
from bitpredict.data import schemas
from bitpredict.data.schemas import FEATURE_TARGETS, validate
from bitpredict.errors import InputError
from bitpredict.features.columns import TARGET
from bitpredict.pipeline.stage_table import (
    FEATURES,
    FEATURES_CSV,
    FEATURES_META,
    INDICATORS,
    SENTIMENT_DAILY,
    data_path,
)

log = logging.getLogger(__name__)

DROPPED_COLUMNS = ("source",)  # text provenance of each bar: in the cleaning report, not a model input


def add_targets(frame: pd.DataFrame) -> pd.DataFrame:
    """Next-day targets; the only columns that use day t+1, and only as labels.

    A target that spans a filled bar (day *t* or *t+1* imputed) is left empty: a filled bar copies the previous
    close, so it would say "no move" on the day before a gap and credit the gap's whole move to its last filled
    day. Such rows are neither training labels nor evaluation actuals (``labelled``).
    """
    out = frame.copy()
    next_close = out["close"].shift(-1)
    if "is_imputed" in out.columns:
        imputed = out["is_imputed"].astype("float64").to_numpy() > 0
        spans_fill = imputed | np.append(imputed[1:], False)
        next_close = next_close.mask(spans_fill)
    out[TARGET] = np.log(next_close / out["close"])
    out["target_close"] = next_close
    out["target_direction"] = (out["target_log_return"] > 0).astype("Int64").where(next_close.notna())
    return out


def build_features(
    indicators: pd.DataFrame,
    sentiment_daily: pd.DataFrame | None,
    warmup: int,
    outlier_threshold: float | None = None,
) -> pd.DataFrame:
    """The pure merge: the model inputs of every day (``bitpredict.features.online.model_frame``, the function the
    serving transformer calls too), targets, then the warm-up rows dropped; flags are 0/1 floats.

    ``indicators``: the indicators stage's table (the clean bars with their indicators); the features are
    rebuilt from its bars so that a row here is exactly what a forecast request ending that day gets.
    """
    from bitpredict.features.online import DEFAULT_OUTLIER_THRESHOLD, model_frame

    bars = indicators.drop(columns=[c for c in DROPPED_COLUMNS if c in indicators.columns])
    threshold = DEFAULT_OUTLIER_THRESHOLD if outlier_threshold is None else outlier_threshold
    frame = model_frame(bars, sentiment_daily, threshold)
    frame = add_targets(frame)  # before dropping the warm-up: targets need no history
    frame = frame.iloc[warmup:].reset_index(drop=True)
    targets = list(FEATURE_TARGETS)
    return frame[[c for c in frame.columns if c not in targets] + targets]


def code_version() -> str:
    """Package version plus the git commit when run from a checkout (provenance for the manifest)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
            check=True,
        ).stdout.strip()
        return f"{__version__}+g{sha}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def labelled(features: pd.DataFrame) -> pd.DataFrame:
    """The rows up to the last one whose next-day target is known (all but the last row, normally).

    A target left empty inside the table (``bitpredict.features.merge.add_targets``: it would span a filled bar) stays
    empty here: the row is still a day of history for the windows after it, but never a label or an actual —
    training picks its window ends with ``label_rows`` and evaluation drops unlabelled days from its scores, so
    a filled gap costs the days it touches, not the history before it.
    """
    known = features[TARGET].notna().to_numpy()
    if not known.any():
        return features.iloc[:0].reset_index(drop=True)
    return features.iloc[: int(np.flatnonzero(known)[-1]) + 1].reset_index(drop=True)


def manifest(features: pd.DataFrame, warmup: int, extra: dict[str, Any]) -> dict[str, Any]:
    labelled_rows = labelled(features)
    return {
        "columns": list(features.columns),
        "dtypes": {c: str(t) for c, t in features.dtypes.items()},
        "feature_columns": [c for c in features.columns if c != "timestamp" and c not in FEATURE_TARGETS],
        "target_columns": list(FEATURE_TARGETS),
        "warmup_rows": warmup,
        "rows": len(features),
        "labelled_rows": len(labelled_rows),
        "first": features["timestamp"].iloc[0].isoformat(),
        "last": features["timestamp"].iloc[-1].isoformat(),
        "code_version": code_version(),
        **extra,
    }


def run_merge(settings: Settings) -> dict[str, Any]:
    """Read indicators and sentiment, write the features table (parquet + csv) and its manifest (``features.json``)."""
    from bitpredict.features.indicators import WARMUP

    indicators_uri = data_path(settings, INDICATORS)
    try:
        indicators = storage.read_parquet(indicators_uri)
    except FileNotFoundError:
        raise FileNotFoundError(f"{indicators_uri} not found: run `bitpredict indicators` first") from None
    sentiment_uri = data_path(settings, SENTIMENT_DAILY)
    sentiment = storage.read_parquet(sentiment_uri) if storage.exists(sentiment_uri) else None
    if sentiment is None:
        log.warning("no daily sentiment: every day gets the neutral default", extra={"path": sentiment_uri})

    features = build_features(indicators, sentiment, WARMUP, settings.clean.outlier_mad_threshold)
    result = validate(features, schemas.FEATURES)
    if result.n_rejected:
        raise InputError(f"{result.n_rejected} feature rows break the features contract: {result.reasons}")
    features = result.valid
    storage.write_parquet(features, data_path(settings, FEATURES))
    storage.write_bytes(data_path(settings, FEATURES_CSV), features.to_csv(index=False).encode())
    meta = manifest(features, WARMUP, {"sentiment": "joined" if sentiment is not None else "none: neutral default"})
    storage.write_text(data_path(settings, FEATURES_META), json.dumps(meta, indent=2))
    log.info("features written", extra={"rows": meta["rows"], "first": meta["first"], "last": meta["last"]})
    return meta
