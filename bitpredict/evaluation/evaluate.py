"""The evaluate stage: backtest the candidate and every baseline, report it, and log it to the candidate's run.

It sits above its measurement (``bitpredict.evaluation.backtest``) and its report
(``bitpredict.evaluation.report``): both are imported here and neither imports this module. Output:
``data/reports/evaluation/`` (metrics.json, evaluation.md, plots, predictions) and the candidate's MLflow run.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bitpredict import storage
from bitpredict.config import ModelSettings, Settings
from bitpredict.evaluation.backtest import MODEL, compute_metrics, decide, incumbent_method, walk_forward
from bitpredict.evaluation.report import flat_metrics, markdown_table, plot_reports
from bitpredict.features.merge import labelled
from bitpredict.forecast.dataset import model_input_columns
from bitpredict.forecast.train import candidate_dir, load_features
from bitpredict.pipeline import tracking
from bitpredict.pipeline.stage_table import EVALUATION, EVALUATION_REPORT, METRICS, PREDICTIONS, data_path

log = logging.getLogger(__name__)


def evaluation_dir(settings: Settings) -> str:
    return data_path(settings, EVALUATION)


def candidate_run_id(settings: Settings) -> str:
    """The training run this evaluation is for: an evaluation is attached to the candidate it evaluated only."""
    run_file = storage.join(candidate_dir(settings), "run.json")
    try:
        return str(json.loads(storage.read_text(run_file))["run_id"])
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_file} not found: run `bitpredict train` first") from None


def current_champion(settings: Settings) -> dict[str, Any] | None:
    """The registry's champion (version, kind, tags) or None for an empty or unreachable registry."""
    from bitpredict.pipeline.tracking import champion_info

    try:
        champion = champion_info(settings)
    except Exception as exc:  # no registry reachable: nothing to compare with
        log.warning("champion not read", extra={"error": repr(exc)})
        return None
    if champion is None:
        return None
    return {"version": champion["version"], "kind": champion["tags"].get("kind", MODEL), "tags": champion["tags"]}


def champion_recipe(settings: Settings, champion: dict[str, Any] | None) -> dict[str, ModelSettings]:
    """The current champion's network recipe, when it differs from this run's: scored on the same window.

    Baseline and combination champions need nothing extra (every baseline recipe is scored anyway); a network
    champion trained with other hyperparameters is re-run block by block so the challenger never meets a
    score from another window.
    """
    if champion is None or champion["kind"] != MODEL:
        return {}
    recipe = json.loads(champion["tags"].get("recipe", "{}") or "{}")
    current = settings.model.model_dump(mode="json")
    if not recipe or recipe == current:
        return {}
    return {f"champion_v{champion['version']}": ModelSettings(**{**current, **recipe})}


def run_evaluate(settings: Settings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Backtest, write ``data/reports/evaluation/`` (metrics.json, evaluation.md, plots, predictions)
    and log them to the candidate's MLflow run."""
    config = settings.model
    run_id = candidate_run_id(settings)
    frame = labelled(load_features(settings))
    columns = model_input_columns(frame.columns, config.use_sentiment, config.exclude_features)
    champion = current_champion(settings)
    backtest = walk_forward(
        frame, columns, config, progress, champion_recipe(settings, champion), settings.promotion.selection_days
    )
    metrics = compute_metrics(backtest)
    decision = decide(backtest, metrics, incumbent_method(champion, backtest), settings.promotion)
    decision["incumbent_version"] = str(champion["version"]) if champion else None
    result = {
        **metrics,
        "decision": decision,
        "best": decision["best"],
        "blocks": backtest.blocks,
        "model": {"window": config.window, "recipe": config.model_dump(mode="json")},
        "mlflow_run_id": run_id,
    }
    table = markdown_table(metrics, decision)

    out = evaluation_dir(settings)
    storage.write_text(data_path(settings, METRICS), json.dumps(finite(result), indent=2, allow_nan=False))
    storage.write_text(data_path(settings, EVALUATION_REPORT), "# Evaluation\n\n" + table)
    storage.write_parquet(backtest.predictions, data_path(settings, PREDICTIONS))
    with tempfile.TemporaryDirectory() as tmp:
        plots = plot_reports(backtest, metrics, decision, Path(tmp))
        for plot in plots:
            storage.write_bytes(storage.join(out, plot.name), plot.read_bytes())
        client = tracking.client(settings)
        for name, value in flat_metrics(result).items():
            client.log_metric(run_id, name, value)
        client.set_tag(run_id, "eval_window", f"{metrics['first_day']}/{metrics['last_day']}")
        client.set_tag(run_id, "eval_verdict", decision["reason"])
        client.set_tag(run_id, "eval_best", decision["best"])
        for plot in plots:
            client.log_artifact(run_id, str(plot), "plots")
        report = Path(tmp) / Path(EVALUATION_REPORT).name
        report.write_text(table)
        client.log_artifact(run_id, str(report), "evaluation")
    log.info("evaluated", extra={"verdict": decision["reason"], "best": decision["best"]})
    return result


def finite(value: Any) -> Any:
    """The result with NaN/inf as null: metrics.json stays standard JSON (DVC, KFP, any client can read it)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
