"""``bitpredict register --rollback`` end to end: a real MLflow server, the model store (a folder, then the GCS
emulator), the published manifest, and the CLI as an operator types it. After it, every reader that chooses what
to serve — the registry alias, ``make serve``'s choice, TF Serving's "highest version folder" — names the
previous version, and the registry says who rolled back what and why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bitpredict import storage
from bitpredict.config import Settings, load_settings
from bitpredict.forecast.artifact import METADATA_FILE, SAVED_MODEL_DIR, SAVED_MODEL_PB, locate
from bitpredict.operations.publish import champion_record, publish, read_manifest
from bitpredict.operations.registry import export_for_serving
from bitpredict.operations.rollback import version_folders
from bitpredict.pipeline.tracking import CHAMPION
from inference.serve_local import choose_model
from tests.published_items import fake_artifacts


def _model_folder(root: Path, version: int) -> Path:
    """What train logs as ``model/``: ``saved_model/`` (graph + variables) and the metadata, tagged by version."""
    folder = root / f"v{version}" / "model"
    (folder / SAVED_MODEL_DIR / "variables").mkdir(parents=True)
    (folder / SAVED_MODEL_DIR / SAVED_MODEL_PB).write_bytes(f"graph v{version}".encode())
    (folder / SAVED_MODEL_DIR / "variables" / "variables.index").write_bytes(b"index")
    meta = {"kind": "ewma", "window": 10, "feature_columns": ["log_return"], "version_tag": version}
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    return folder


def _two_champions(settings: Settings, tmp_path: Path, name: str) -> None:
    """Version 1 was champion, version 2 replaced it (as register leaves them), and a run published v2."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    client.create_registered_model(name)
    experiment = client.create_experiment(f"rollback-{name}")
    for version in (1, 2):
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(_model_folder(tmp_path / "models", version)), "model")
        made = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        if version == 2:
            client.set_model_version_tag(name, made.version, "previous_champion", "1")
        export_for_serving(settings, made.version)
        client.set_registered_model_alias(name, CHAMPION, made.version)
    champion = champion_record(settings, {"champion": 2, "model": name, "version": 2, "kind": "ewma"})
    publish(settings, fake_artifacts(tmp_path / "artifacts", "run-a"), run_id="run-a", champion=champion)


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_rollback_moves_the_store_the_manifest_and_the_alias(
    where: str, tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    from mlflow.tracking import MlflowClient

    root = request.getfixturevalue("gcs_bucket") if where == "gcs" else str(tmp_path)
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "BITPREDICT_DATA_DIR": storage.join(root, "data"),
           "BITPREDICT_MODEL_STORE": storage.join(root, "store"),
           "BITPREDICT_REGISTERED_MODEL_name": f"bitpredict-{where}"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    name = settings.registered_model_name
    assert name == f"bitpredict-{where}"
    _two_champions(settings, tmp_path, name)
    store = storage.join(settings.model_store or "", name)
    assert choose_model(settings, None).version == "2" and version_folders(settings, name) == [1, 2]

    cli = [sys.executable, "-m", "bitpredict.cli", "register", "--rollback"]
    refused = subprocess.run(cli, env={**os.environ}, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--reason" in refused.stderr
    done = subprocess.run([*cli, "--reason", "v2 misses its 80% band", "--by", "alice"], env={**os.environ},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "rolled back v2 → v1 by alice" in done.stdout and "versions [2]" in done.stdout

    client = MlflowClient(mlflow_server, mlflow_server)
    assert client.get_model_version_by_alias(name, CHAMPION).version == "1"
    tags = client.get_model_version(name, "2").tags
    assert tags["rolled_back_by"] == "alice" and tags["rollback_reason"] == "v2 misses its 80% band"
    assert tags["rolled_back_to"] == "1" and tags["rolled_back"] == "true" and tags["rolled_back_at"]
    last = json.loads(client.get_registered_model(name).tags["last_rollback"])
    assert (last["from"], last["to"], last["by"]) == (2, 1, "alice")

    # TF Serving / KServe serve the highest version folder: only v1 is left, complete
    assert version_folders(settings, name) == [1]
    one = storage.join(store, "1")
    assert json.loads(storage.read_text(storage.join(one, METADATA_FILE)))["version_tag"] == 1
    assert storage.read_text(storage.join(one, SAVED_MODEL_PB)) == "graph v1"
    if where == "local":
        assert locate(store).version == "1"
    # `make serve` and the UI follow the manifest: it names v1, and the run's items are untouched
    manifest = read_manifest(settings) or {}
    assert manifest["run_id"] == "run-a" and manifest["champion"]["version"] == 1
    assert manifest["champion"]["exported_to"] == one and "alice" in manifest["champion"]["why"]
    assert choose_model(settings, None).version == "1"
