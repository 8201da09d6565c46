"""The serving tests' models with and without the horizon axis (issue 31), and the benchmark's.

``export_version`` writes the real EWMA baseline (RiskMetrics: ``σ·√h·z`` for each horizon) exactly as the pipeline
exports it — ``serving_default`` with ``quantiles`` [B, Q], ``attention`` [B, W], ``horizon_quantiles`` [B, H, Q] and
the metadata's ``horizons`` — or, with ``old=True``, the same forecast as a model exported *before* the horizon axis:
a SavedModel with ``quantiles`` and ``attention`` only and metadata without ``horizons``. The current export code
cannot write the latter any more, and the transformer must still serve the models already in registries.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

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


def ewma_fit(daily: pd.DataFrame, horizons: tuple[int, ...] = (1, 7, 30)) -> Any:
    """The EWMA baseline fitted on every labelled row of these clean daily bars (its input: ``ewma_vol``)."""
    frame = build_features(compute_indicators(daily), None, WARMUP)
    frame = frame[frame[TARGET].notna()].reset_index(drop=True)
    return baselines.fit_baseline("ewma", frame, len(frame), LEVELS, WINDOW, horizons)


def _old_module(fit: Any) -> Any:
    """The fit's graph behind the contract of before the horizon axis: next-day quantiles and attention only."""
    import tensorflow as tf

    class OldModule(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, fit.window, len(fit.columns)], tf.float32, INPUT_NAME)])
        def serve(self, features: Any) -> dict[str, Any]:
            quantiles, attention = fit.forecast_graph(tf.cast(features, tf.float64))
            return {
                QUANTILES_OUTPUT: tf.cast(tf.sort(quantiles[:, 0, :], axis=-1), tf.float32),
                ATTENTION_OUTPUT: tf.cast(attention, tf.float32),
            }

    return OldModule(name="bitpredict_ewma_before_horizons")


def export_version(fit: Any, version_dir: Path, old: bool = False) -> Path:
    """``<store>/<name>/<version>/`` in the model store's layout: the real export, or (``old``) the same forecast as
    a model from before the horizon axis. Returns the store folder (``version_dir.parent``)."""
    import tensorflow as tf

    work = version_dir.parent / f".export-{version_dir.name}"
    if old:
        instance = _old_module(fit)
        tf.saved_model.save(instance, str(work / SAVED_MODEL_DIR), signatures={SIGNATURE: instance.serve})
    else:
        baselines.export(fit, work)
    shutil.copytree(work / SAVED_MODEL_DIR, version_dir)
    shutil.rmtree(work)
    meta = baseline_metadata(fit, ModelSettings(window=WINDOW, horizons=list(fit.horizons)))
    if old:
        meta.pop("horizons")
        meta["outputs"].pop(HORIZON_QUANTILES_OUTPUT)
        meta["hyperparameters"].pop("horizons", None)
    (version_dir / METADATA_FILE).write_text(json.dumps(meta))
    return version_dir.parent
