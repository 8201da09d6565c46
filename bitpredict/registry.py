"""The register stage: every evaluated model becomes a version in the MLflow registry; the best one is champion.

Policy (``promotion_decision``, pure): a version becomes ``champion`` only when its evaluation says it beats
the baselines (skill over persistence above ``promotion.min_skill_vs_persistence``, Diebold–Mariano p-value
at most ``promotion.max_dm_pvalue``, lower MAE than every other baseline) *and* it beats the current champion:
on MAE when both were evaluated on the same window, on skill (a scale-free ratio) when the windows differ.
A version that is not promoted is tagged with the reason. The champion is exported to the model store in
the layout TF Serving and KServe expect: ``<store>/<model name>/<version>/saved_model.pb`` + ``variables/``,
with ``bitpredict_model.json`` beside them. ``rollback`` moves the alias back to the previous champion.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitpredict import storage, tracking
from bitpredict.config import Settings
from bitpredict.evaluate import MODEL, evaluation_dir
from bitpredict.train import METADATA_FILE, REFERENCE_FILE, SAVED_MODEL_DIR, candidate_dir

log = logging.getLogger(__name__)

CHAMPION = "champion"


class RegistryError(RuntimeError):
    """The registry is not in a state that allows the request (no candidate, no previous champion, …)."""


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def promotion_decision(candidate: dict[str, Any], champion: dict[str, Any] | None) -> Decision:
    """``candidate``/``champion``: {"beats_baselines", "verdict", "mae", "skill", "eval_window"}."""
    if not candidate["beats_baselines"]:
        return Decision(False, f"does not beat the baselines ({candidate['verdict']})")
    if champion is None:
        return Decision(True, "beats the baselines; no champion yet")
    if candidate["eval_window"] == champion["eval_window"]:
        if candidate["mae"] < champion["mae"]:
            return Decision(True, f"MAE {candidate['mae']:.2f} < champion's {champion['mae']:.2f} on the same window")
        return Decision(False, f"MAE {candidate['mae']:.2f} ≥ champion's {champion['mae']:.2f} on the same window")
    if candidate["skill"] > champion["skill"]:
        return Decision(True, f"skill {candidate['skill']:+.4f} > champion's {champion['skill']:+.4f} (windows differ)")
    return Decision(False, f"skill {candidate['skill']:+.4f} ≤ champion's {champion['skill']:+.4f} (windows differ)")


def _summary_tags(evaluation: dict[str, Any]) -> dict[str, str]:
    lstm = evaluation["methods"][MODEL]
    return {
        "beats_baselines": str(evaluation["decision"]["beats_baselines"]).lower(),
        "verdict": evaluation["decision"]["reason"],
        "mae": repr(lstm["mae"]),
        "skill": repr(lstm["skill"]),
        "dm_pvalue": repr(lstm["dm_pvalue"]),
        "directional_accuracy": repr(lstm["directional_accuracy"]),
        "eval_window": f"{evaluation['first_day']}/{evaluation['last_day']}",
    }


def _from_tags(tags: dict[str, str]) -> dict[str, Any]:
    return {
        "beats_baselines": tags.get("beats_baselines") == "true",
        "verdict": tags.get("verdict", ""),
        "mae": float(tags["mae"]),
        "skill": float(tags["skill"]),
        "eval_window": tags.get("eval_window", ""),
    }


def _champion(client: Any, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _read_json(uri: str, hint: str) -> dict[str, Any]:
    try:
        return json.loads(storage.read_text(uri))
    except FileNotFoundError:
        raise RegistryError(f"{uri} not found: {hint}") from None


def register(settings: Settings, allow_promotion: bool = True) -> dict[str, Any]:
    """Register the evaluated candidate as a new version; promote it if the policy says so.

    ``allow_promotion=False`` records the version without ever moving the alias (the pipeline's branch
    for a model that evaluate already rejected).
    """
    from mlflow.exceptions import MlflowException

    run = _read_json(storage.join(candidate_dir(settings), "run.json"), "run `bitpredict train` first")
    evaluation = _read_json(storage.join(evaluation_dir(settings), "metrics.json"), "run `bitpredict evaluate` first")
    if evaluation.get("mlflow_run_id") not in (None, run["run_id"]):
        raise RegistryError(
            f"the evaluation belongs to run {evaluation['mlflow_run_id']}, the candidate is {run['run_id']}: "
            "rerun `bitpredict evaluate`"
        )
    client = tracking.client(settings)
    name = settings.registered_model_name
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="BitPredict next-day BTC log-return LSTM with attention")
    existing = [v for v in client.search_model_versions(f"run_id = '{run['run_id']}'") if v.name == name]
    if existing:  # a rerun with a reused (cached) candidate registers nothing twice
        version = existing[0]
        current = _champion(client, name)
        return {
            "model": name,
            "version": int(version.version),
            "promoted": version.tags.get("promoted") == "true",
            "reason": f"already registered: {version.tags.get('promotion_reason', '')}",
            "champion": int(current.version) if current else None,
            "exported_to": None,
        }
    source = f"{client.get_run(run['run_id']).info.artifact_uri}/model"
    tags = _summary_tags(evaluation)
    version = client.create_model_version(name, source, run_id=run["run_id"], tags=tags)

    current = _champion(client, name)
    decision = promotion_decision(_from_tags(tags), _from_tags(current.tags) if current else None)
    if decision.promote and not allow_promotion:
        decision = Decision(False, f"promotion not allowed in this run (policy said: {decision.reason})")
    client.set_model_version_tag(name, version.version, "promoted", str(decision.promote).lower())
    client.set_model_version_tag(name, version.version, "promotion_reason", decision.reason)
    exported = None
    if decision.promote:
        if current is not None:
            client.set_model_version_tag(name, version.version, "previous_champion", str(current.version))
        client.set_registered_model_alias(name, CHAMPION, version.version)
        exported = export_for_serving(settings, version.version)
    log.info("registered", extra={"model": name, "version": version.version, "promoted": decision.promote})
    return {
        "model": name,
        "version": int(version.version),
        "promoted": decision.promote,
        "reason": decision.reason,
        "champion": int(version.version) if decision.promote else (int(current.version) if current else None),
        "exported_to": exported,
    }


def rollback(settings: Settings) -> dict[str, Any]:
    """Point ``champion`` back at the version it replaced, and export that one for serving."""
    client = tracking.client(settings)
    name = settings.registered_model_name
    current = _champion(client, name)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    previous = current.tags.get("previous_champion")
    if not previous:
        raise RegistryError(f"{name} version {current.version} replaced no earlier champion: nothing to roll back to")
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, current.version, "rolled_back", "true")
    exported = export_for_serving(settings, previous)
    log.info("rolled back", extra={"model": name, "from": current.version, "to": previous})
    return {"model": name, "from": int(current.version), "champion": int(previous), "exported_to": exported}


def export_for_serving(settings: Settings, version: str | int) -> str:
    """Copy a version's SavedModel + metadata to ``<store>/<name>/<version>/`` (local dir or gs://)."""
    from mlflow.artifacts import download_artifacts

    client = tracking.client(settings)
    name = settings.registered_model_name
    source = client.get_model_version(name, str(version)).source
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=settings.tracking_uri))
        if not (local / SAVED_MODEL_DIR / "saved_model.pb").exists() or not (local / METADATA_FILE).exists():
            raise RegistryError(f"{source}: not a BitPredict model (no {SAVED_MODEL_DIR}/ and {METADATA_FILE})")
        layout = Path(tmp) / "layout"
        (local / SAVED_MODEL_DIR).rename(layout)
        (local / METADATA_FILE).rename(layout / METADATA_FILE)
        if (local / REFERENCE_FILE).exists():
            (local / REFERENCE_FILE).rename(layout / REFERENCE_FILE)
        target = storage.join(settings.serving_store, name, str(version))
        storage.copy_tree(layout, target)
    return target


def champion_info(settings: Settings) -> dict[str, Any] | None:
    """The champion's version and tags, or None (for `make serve` and the UI)."""
    client = tracking.client(settings)
    current = _champion(client, settings.registered_model_name)
    if current is None:
        return None
    return {"version": int(current.version), "source": current.source, "tags": dict(current.tags)}
