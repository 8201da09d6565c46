"""train → evaluate → register on the real daily data, tracked by a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitpredict import storage
from bitpredict.clean import run_clean
from bitpredict.config import SentimentSettings, load_settings
from bitpredict.evaluate import evaluation_dir, run_evaluate
from bitpredict.indicators import run_indicators
from bitpredict.merge import run_merge
from bitpredict.registry import CHAMPION, RegistryError, register, rollback
from bitpredict.sentiment import run_sentiment
from bitpredict.train import METADATA_FILE, run_train
from tests.conftest import copy_data_dir

SHORT_MODEL = {
    "window": 10,
    "lstm_units": [8],
    "dense_units": 4,
    "epochs": 2,
    "validation_days": 60,
    "test_days": 60,
    "refit_every_days": 30,
}
PERMISSIVE = {"min_skill_vs_persistence": -1e9, "max_dm_pvalue": 1.0, "require_best_baseline": False}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking + registry server (sqlite backend, local artifact store) on 127.0.0.1."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = (root / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_the_registry_ends_in_the_state_the_policy_says(
    shared_raw_dir: Path, tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    data_dir = copy_data_dir(shared_raw_dir, tmp_path / "data")
    base = {"data_dir": str(data_dir), "model": SHORT_MODEL, "model_store": str(tmp_path / "store")}
    settings = load_settings(**base, sentiment=SentimentSettings(finbert="off"))
    run_clean(settings, "1d")
    run_indicators(settings)
    run_sentiment(settings)
    run_merge(settings)

    trained = run_train(settings)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    run = client.get_run(trained["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["window"] == "10"
    assert run.data.tags["data_end"] == "2024-11-11" and "code_version" in run.data.tags
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == trained["epochs_run"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/saved_model", f"model/{METADATA_FILE}"} <= artifacts

    evaluation = run_evaluate(settings)
    assert evaluation["days"] == 60 and len(evaluation["blocks"]) == 2
    assert evaluation["blocks"][0]["train_rows"] + 60 == trained["rows"]
    for name in ("metrics.json", "evaluation.md", "actual_vs_predicted.png", "error_over_time.png", "attention.png"):
        assert storage.exists(storage.join(evaluation_dir(settings), name)), name
    assert client.get_run(trained["run_id"]).data.metrics["lstm_mae"] == pytest.approx(
        evaluation["methods"]["lstm"]["mae"]
    )

    # 1. the real evaluation, the default policy: registered whatever the verdict; champion only if earned
    first = register(settings)
    assert first["version"] == 1
    expected = evaluation["decision"]["beats_baselines"]
    assert first["promoted"] is expected
    version = client.get_model_version("bitpredict-lstm", "1")
    assert version.tags["promoted"] == str(expected).lower() and version.tags["promotion_reason"] == first["reason"]
    if not expected:
        assert "does not beat the baselines" in first["reason"]
        with pytest.raises(RegistryError, match="no champion"):
            rollback(settings)

    again = register(settings)  # the same candidate twice: no second version
    assert again["version"] == 1 and again["reason"].startswith("already registered")
    assert len(client.search_model_versions("name = 'bitpredict-lstm'")) == 1

    # 2. a new candidate under a permissive policy passes the gate
    permissive = load_settings(**base, promotion=PERMISSIVE)
    run_train(permissive)
    run_evaluate(permissive)
    second = register(permissive)
    metrics = json.loads(storage.read_text(storage.join(evaluation_dir(settings), "metrics.json")))
    assert second["version"] == 2
    assert second["promoted"] is (
        not expected or metrics["methods"]["lstm"]["mae"] < evaluation["methods"]["lstm"]["mae"]
    )
    champion = client.get_model_version_by_alias("bitpredict-lstm", CHAMPION)

    # 3. a candidate that evaluated better on the same window replaces the champion…
    run_train(permissive)
    run_evaluate(permissive)
    metrics = json.loads(storage.read_text(storage.join(evaluation_dir(settings), "metrics.json")))
    metrics["methods"]["lstm"]["mae"] = float(champion.tags["mae"]) - 1.0
    storage.write_text(storage.join(evaluation_dir(settings), "metrics.json"), json.dumps(metrics))
    third = register(permissive)
    assert third["promoted"] and third["version"] == 3 and "same window" in third["reason"]
    assert client.get_model_version_by_alias("bitpredict-lstm", CHAMPION).version == "3"
    exported = Path(third["exported_to"])
    assert exported == tmp_path / "store" / "bitpredict-lstm" / "3"
    assert (exported / "saved_model.pb").exists() and (exported / "variables").is_dir()
    assert json.loads((exported / METADATA_FILE).read_text())["window"] == 10

    # 4. … and one command puts the previous champion back
    back = rollback(permissive)
    assert back == {
        "model": "bitpredict-lstm",
        "from": 3,
        "champion": int(champion.version),
        "exported_to": back["exported_to"],
    }
    assert client.get_model_version_by_alias("bitpredict-lstm", CHAMPION).version == champion.version
    assert (Path(back["exported_to"]) / "saved_model.pb").exists()
