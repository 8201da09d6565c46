"""The register stage: the champion of each evaluation becomes a version in the MLflow registry, and may serve.

Every evaluation names the champion after the switching rule (``bitpredict.evaluation.switching``, applied by
``bitpredict.evaluation.backtest.decide``): the incumbent stays — refitted on the new data — unless a challenger
chosen on the selection days beats it on at least a year of later days by a one-sided HAC-DM test; an empty
registry starts from the pre-registered default (the combination). Every kind (network, baseline,
combination) is exported with the same model contract, so whichever it names can be served. That method's
export becomes a new version tagged with its kind, recipe, scores, the test, its p-value and the days it
used; the alias moves to it. An evaluation is attached only to the training run it evaluated, and a
decision made against one champion is not applied when the champion changed since (a racing run).
The champion is exported to the model store
in the layout TF Serving and KServe expect: ``<store>/<model name>/<version>/saved_model.pb`` +
``variables/``, with ``bitpredict_model.json`` beside them. ``rollback`` (``bitpredict.operations.rollback``)
undoes the last promotion everywhere it is served.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitpredict import storage
from bitpredict.config import Settings
from bitpredict.errors import BitPredictError
from bitpredict.evaluation.scores import PRIMARY
from bitpredict.forecast.artifact import METADATA_FILE, REFERENCE_FILE, SAVED_MODEL_DIR, SAVED_MODEL_PB
from bitpredict.forecast.train import BASELINES_DIR, candidate_dir
from bitpredict.forecast.train import MODEL_KIND as MODEL
from bitpredict.pipeline import tracking
from bitpredict.pipeline.stage_table import METRICS, data_path, serving_store
from bitpredict.pipeline.tracking import CHAMPION, champion_version

log = logging.getLogger(__name__)


class RegistryError(BitPredictError, RuntimeError):
    """The registry is not in a state that allows the request (no candidate, no previous champion, …)."""


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def promotion_decision(evaluation: dict[str, Any], current_version: str | None) -> Decision:
    """Apply the evaluation's switching-rule decision, unless the registry's champion is no longer the one it
    was made against (another run promoted in between: rerun evaluate)."""
    decision = evaluation["decision"]
    seen = decision.get("incumbent_version")
    if (str(seen) if seen is not None else None) != current_version:
        return Decision(
            False,
            f"the evaluation decided against champion version {seen}, the champion is now {current_version}: "
            "rerun `bitpredict evaluate`",
        )
    if decision.get("first_champion"):
        return Decision(True, f"first champion: {decision['why']}")
    if decision.get("switched"):
        return Decision(True, f"switch: {decision['why']}")
    return Decision(True, f"refit of the champion's recipe: {decision['why']}")


def _summary_tags(evaluation: dict[str, Any], kind: str) -> dict[str, str]:
    method = evaluation["methods"][kind]
    decision = evaluation["decision"]
    recipe = evaluation["model"]["recipe"] if kind == MODEL else {"kind": kind, "window": evaluation["model"]["window"]}
    test = decision.get("test") or {}
    tags = {
        "kind": kind,
        "recipe": json.dumps(recipe, sort_keys=True),
        "beats_baselines": str(decision["beats_baselines"]).lower(),
        "verdict": decision["reason"],
        "why": decision["why"],
        "eval_window": f"{evaluation['first_day']}/{evaluation['last_day']}",
        "selection_window": decision.get("selection_window", ""),
        "challenger": str(decision.get("challenger")),
        "switched": str(bool(decision.get("switched"))).lower(),
        "switch_test": test.get("name", "none (no change of recipe)"),
        "switch_pvalue": repr(test["p_value"]) if test else "",
        "switch_days": str(test.get("days", "")),
        "primary": PRIMARY,
    }
    for key in (
        PRIMARY,
        "crps",
        "interval_80_coverage",
        "interval_80_kupiec_p",
        "interval_90_coverage",
        "mae",
        "skill",
        "volatility_r2",
        "directional_accuracy",
    ):
        if key in method:
            tags[key] = repr(method[key])
    return tags


def _read_json(uri: str, hint: str) -> dict[str, Any]:
    try:
        return json.loads(storage.read_text(uri))
    except FileNotFoundError:
        raise RegistryError(f"{uri} not found: {hint}") from None


def register(settings: Settings, allow_promotion: bool = True) -> dict[str, Any]:
    """Register the evaluation's best method (network or baseline) as a new version; promote it if it earns it.

    ``allow_promotion=False`` records the version without ever moving the alias.
    """
    from mlflow.exceptions import MlflowException

    run = _read_json(storage.join(candidate_dir(settings), "run.json"), "run `bitpredict train` first")
    evaluation = _read_json(data_path(settings, METRICS), "run `bitpredict evaluate` first")
    if evaluation.get("mlflow_run_id") != run["run_id"]:
        raise RegistryError(
            f"the evaluation belongs to run {evaluation.get('mlflow_run_id') or '<none>'}, the candidate is "
            f"{run['run_id']}: rerun `bitpredict evaluate`"
        )
    kind = evaluation.get("best")
    if isinstance(kind, str) and kind.startswith("champion_v"):
        return _kept_old_recipe(settings, evaluation, kind)
    if kind not in evaluation["methods"] or PRIMARY not in evaluation["methods"][kind]:
        raise RegistryError(f"the evaluation names no scored champion ({kind!r}): rerun `bitpredict evaluate`")
    client = tracking.client(settings)
    name = settings.registered_model_name
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="BitPredict next-day BTC log-return quantiles: the network or a baseline, the best wins"
        )
    current = champion_version(client, name)
    existing = [
        v
        for v in client.search_model_versions(f"run_id = '{run['run_id']}'")
        if v.name == name and v.tags.get("kind", MODEL) == kind
    ]
    decided = [v for v in existing if v.tags.get("promoted") is not None]
    if decided:  # a rerun with a reused (cached) candidate registers nothing twice
        version = decided[0]
        return {
            "model": name,
            "version": int(version.version),
            "kind": kind,
            "promoted": version.tags.get("promoted") == "true",
            "reason": f"already registered: {version.tags.get('promotion_reason', '')}",
            "why": version.tags.get("why", ""),
            "champion": int(current.version) if current else None,
            "exported_to": None,
        }
    if existing:  # created by a run killed before its decision (``promoted`` is written last): decide it now
        version = existing[0]
    else:
        artifact = "model" if kind == MODEL else f"model/{BASELINES_DIR}/{kind}"
        source = f"{client.get_run(run['run_id']).info.artifact_uri}/{artifact}"
        version = client.create_model_version(name, source, run_id=run["run_id"], tags=_summary_tags(evaluation, kind))
    already = current is not None and current.version == version.version  # the killed run had moved the alias
    decision = promotion_decision(evaluation, str(current.version) if current and not already else None)
    if already:
        decision = Decision(True, "champion already: a run stopped after moving the alias; its decision completed")
    elif decision.promote and not allow_promotion:
        decision = Decision(False, f"promotion not allowed in this run (policy said: {decision.reason})")
    exported = None
    if decision.promote:
        if current is not None and not already:
            client.set_model_version_tag(name, version.version, "previous_champion", str(current.version))
        exported = export_for_serving(settings, version.version)  # complete in the store before the alias names it
        client.set_registered_model_alias(name, CHAMPION, version.version)
    # The decision's tags last: a version without ``promoted`` is one whose run died mid-register (see above).
    client.set_model_version_tag(name, version.version, "promotion_reason", decision.reason)
    client.set_model_version_tag(name, version.version, "promoted", str(decision.promote).lower())
    log.info(
        "registered", extra={"model": name, "version": version.version, "kind": kind, "promoted": decision.promote}
    )
    return {
        "model": name,
        "version": int(version.version),
        "kind": kind,
        "promoted": decision.promote,
        "reason": decision.reason,
        "why": evaluation["decision"]["why"],
        "champion": int(version.version) if decision.promote else (int(current.version) if current else None),
        "exported_to": exported,
    }


def _kept_old_recipe(settings: Settings, evaluation: dict[str, Any], method: str) -> dict[str, Any]:
    """The champion is a network whose recipe differs from this run's and no challenger beat it: this run has no
    refit of that recipe to register, so the champion version stays as it is."""
    client = tracking.client(settings)
    current = champion_version(client, settings.registered_model_name)
    return {
        "model": settings.registered_model_name,
        "version": None,
        "kind": MODEL,
        "promoted": False,
        "reason": f"{method} kept ({evaluation['decision']['why']}); this run trained another recipe: nothing new",
        "why": evaluation["decision"]["why"],
        "champion": int(current.version) if current else None,
        "exported_to": None,
    }


def export_for_serving(settings: Settings, version: str | int) -> str:
    """Copy a version's SavedModel + metadata to ``<store>/<name>/<version>/`` (local dir or gs://)."""
    from mlflow.artifacts import download_artifacts

    client = tracking.client(settings)
    name = settings.registered_model_name
    source = client.get_model_version(name, str(version)).source
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=settings.tracking_uri))
        if not (local / SAVED_MODEL_DIR / SAVED_MODEL_PB).exists() or not (local / METADATA_FILE).exists():
            raise RegistryError(f"{source}: not a BitPredict model (no {SAVED_MODEL_DIR}/ and {METADATA_FILE})")
        layout = Path(tmp) / "layout"
        (local / SAVED_MODEL_DIR).rename(layout)
        (local / METADATA_FILE).rename(layout / METADATA_FILE)
        if (local / REFERENCE_FILE).exists():
            (local / REFERENCE_FILE).rename(layout / REFERENCE_FILE)
        target = storage.join(serving_store(settings), name, str(version))
        # The graph and the metadata last: on GCS a reader (TF Serving, ``locate``) sees a version folder as a
        # model only once they are there, so a pod starting mid-export never loads half of ``variables/``.
        storage.copy_tree(layout, target, last=(SAVED_MODEL_PB, METADATA_FILE))
    return target
