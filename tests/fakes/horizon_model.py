"""A small honest model with the horizon axis (issue 31), for the serving tests and the benchmark until the real
exports carry it: RiskMetrics (the fitted EWMA baseline) with a random-walk horizon, ``σ·√h·z`` for each horizon.

It implements the artifact contract exactly — ``serving_default``: ``features`` FP32 [B, W, F] → ``quantiles``
[B, Q], ``attention`` [B, W], ``horizon_quantiles`` [B, H, Q] (row 1 equals ``quantiles``), and the metadata's
``horizons`` with ``outputs["horizon_quantiles"] = [None, H, Q]`` — so the real predictor and transformer serve it
as they will serve the real models. ``export_version(..., horizons=None)`` writes the same model without the axis
(a model exported before it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bitpredict.config import ModelSettings
from bitpredict.features.columns import TARGET
from bitpredict.features.indicators import WARMUP, compute_indicators
from bitpredict.features.merge import build_features
from bitpredict.forecast import baselines
from bitpredict.forecast.artifact import (
    ATTENTION_OUTPUT,
    HORIZON_QUANTILES_OUTPUT,
    INPUT_NAME,
    METADATA_FILE,
    QUANTILES_OUTPUT,
    SAVED_MODEL_DIR,
    SIGNATURE,
)
from bitpredict.forecast.quantiles import LEVELS
from bitpredict.forecast.train import baseline_metadata

WINDOW = 30


def ewma_fit(daily: pd.DataFrame) -> Any:
    """The EWMA baseline fitted on every labelled row of these clean daily bars (its input: the ``ewma_vol`` column)."""
    frame = build_features(compute_indicators(daily), None, WARMUP)
    frame = frame[frame[TARGET].notna()].reset_index(drop=True)
    return baselines.fit_baseline("ewma", frame, len(frame), LEVELS, WINDOW)


def _module(fit: Any, horizons: tuple[int, ...]) -> Any:
    import tensorflow as tf

    scale = tf.constant(np.sqrt(np.asarray(horizons, dtype="float64"))[None, :, None], tf.float64)

    class HorizonModule(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, fit.window, len(fit.columns)], tf.float32, INPUT_NAME)])
        def serve(self, features: Any) -> dict[str, Any]:
            quantiles, attention = fit.forecast_graph(tf.cast(features, tf.float64))
            quantiles = tf.sort(quantiles, axis=-1)
            return {
                QUANTILES_OUTPUT: tf.cast(quantiles, tf.float32),
                ATTENTION_OUTPUT: tf.cast(attention, tf.float32),
                HORIZON_QUANTILES_OUTPUT: tf.cast(quantiles[:, None, :] * scale, tf.float32),
            }

    return HorizonModule(name="bitpredict_ewma_horizons")


def export_version(fit: Any, version_dir: Path, horizons: tuple[int, ...] | None = (1, 7, 30)) -> Path:
    """``<store>/<name>/<version>/`` in the model store's layout: the horizon model, or (``horizons=None``) the plain
    EWMA export without the axis. Returns the store folder (``version_dir.parent``)."""
    import tensorflow as tf

    work = version_dir.parent / f".export-{version_dir.name}"
    if horizons is None:
        baselines.export(fit, work)
    else:
        instance = _module(fit, horizons)
        tf.saved_model.save(instance, str(work / SAVED_MODEL_DIR), signatures={SIGNATURE: instance.serve})
    shutil.copytree(work / SAVED_MODEL_DIR, version_dir)
    shutil.rmtree(work)
    meta = baseline_metadata(fit, ModelSettings(window=WINDOW))
    if horizons is not None:
        meta["horizons"] = list(horizons)
        meta["outputs"][HORIZON_QUANTILES_OUTPUT] = [None, len(horizons), len(fit.levels)]
    (version_dir / METADATA_FILE).write_text(json.dumps(meta))
    return version_dir.parent
