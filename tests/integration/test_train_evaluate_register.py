"""train → evaluate → register on the real daily data, tracked by a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitpredict import storage
from bitpredict.config import SentimentSettings, load_settings
from bitpredict.data.clean import run_clean
from bitpredict.evaluation.evaluate import evaluation_dir, run_evaluate
from bitpredict.features.indicators import run_indicators
from bitpredict.features.merge import run_merge
from bitpredict.features.sentiment import run_sentiment
from bitpredict.forecast.artifact import METADATA_FILE
from bitpredict.forecast.train import run_train
from bitpredict.operations.registry import RegistryError, register
from bitpredict.operations.rollback import rollback
from bitpredict.pipeline.tracking import CHAMPION
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
# test-sized switching rule: choose on 60 days, confirm on the next 60 (the product's default is a year each)
SHORT_PROMOTION = {"selection_days": 60, "min_confirmation_days": 60}


def test_the_registry_ends_in_the_state_the_policy_says(
    sample_raw_dir: Path, tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    data_dir = copy_data_dir(sample_raw_dir, tmp_path / "data")
    base = {"data_dir": str(data_dir), "model": SHORT_MODEL, "model_store": str(tmp_path / "store")}
    settings = load_settings(**base, promotion=SHORT_PROMOTION, sentiment=SentimentSettings(finbert="off"))
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
    assert {"model/saved_model", f"model/{METADATA_FILE}", "model/baselines"} <= artifacts
    assert trained["baselines"] == ["ewma", "empirical", "garch", "har", "combo"]

    evaluation = run_evaluate(settings)
    assert evaluation["days"] == 60 and len(evaluation["blocks"]) == 4  # 2 selection + 2 confirmation blocks
    assert evaluation["blocks"][2]["train_rows"] + 60 == trained["rows"]
    assert [b["period"] for b in evaluation["blocks"]] == ["selection", "selection", "test", "test"]
    assert evaluation["mlflow_run_id"] == trained["run_id"]
    decision = evaluation["decision"]
    assert decision["first_champion"] and decision["challenger"] in evaluation["methods"]
    # an empty registry starts from the pre-registered default unless a challenger is confirmed against it
    if decision["switched"]:
        assert decision["test"]["p_value"] < 0.05 and evaluation["best"] == decision["challenger"]
    else:
        assert evaluation["best"] == "combo"
    assert all(0 <= b["garch"]["alpha"] <= 1 for b in evaluation["blocks"])  # reported per refit
    for name in ("metrics.json", "evaluation.md", "actual_vs_predicted.png", "reliability.png", "attention.png"):
        assert storage.exists(storage.join(evaluation_dir(settings), name)), name
    logged = client.get_run(trained["run_id"]).data.metrics
    assert logged["lstm_mae"] == pytest.approx(evaluation["methods"]["lstm"]["mae"])
    assert logged["har_pinball_mean"] == pytest.approx(evaluation["methods"]["har"]["pinball_mean"])

    # 1. the first evaluation always gives a champion: the default, or a challenger confirmed against it
    first = register(settings)
    assert first["version"] == 1 and first["promoted"] and first["kind"] == evaluation["best"]
    assert first["reason"].startswith("first champion")
    version = client.get_model_version("bitpredict-lstm", "1")
    assert version.tags["kind"] == first["kind"] and version.tags["promotion_reason"] == first["reason"]
    assert version.tags["challenger"] == decision["challenger"] and "switch_test" in version.tags
    exported = Path(first["exported_to"])
    assert exported == tmp_path / "store" / "bitpredict-lstm" / "1"
    assert (exported / "saved_model.pb").exists() and (exported / "variables").is_dir()
    meta = json.loads((exported / METADATA_FILE).read_text())
    assert meta["kind"] == first["kind"] and meta["window"] == 10
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(settings, reason="test")

    again = register(settings)  # the same candidate twice: no second version
    assert again["version"] == 1 and again["reason"].startswith("already registered")
    assert len(client.search_model_versions("name = 'bitpredict-lstm'")) == 1

    # 2. a new candidate on the same data: the champion is refitted unless a challenger is confirmed against it
    run_train(settings)
    second_eval = run_evaluate(settings)
    assert second_eval["decision"]["incumbent"] == first["kind"] and not second_eval["decision"]["first_champion"]
    second = register(settings)
    assert second["version"] == 2 and second["promoted"] and second["kind"] == second_eval["best"]
    if second_eval["decision"]["switched"]:
        assert second["reason"].startswith("switch") and second_eval["decision"]["test"]["p_value"] < 0.05
    else:
        assert second["reason"].startswith("refit") and second["kind"] == first["kind"]
    tags = client.get_model_version("bitpredict-lstm", "2").tags
    assert tags["switched"] == str(second_eval["decision"]["switched"]).lower()

    # 3. a decision made against another champion (a run promoted in between) is registered but does not serve
    run_train(settings)
    run_evaluate(settings)
    metrics_uri = storage.join(evaluation_dir(settings), "metrics.json")
    metrics = json.loads(storage.read_text(metrics_uri))
    champion = client.get_model_version_by_alias("bitpredict-lstm", CHAMPION)
    metrics["decision"]["incumbent_version"] = "1"
    storage.write_text(metrics_uri, json.dumps(metrics))
    third = register(settings)
    assert not third["promoted"] and "rerun `bitpredict evaluate`" in third["reason"]
    assert client.get_model_version_by_alias("bitpredict-lstm", CHAMPION).version == champion.version

    # 4. an evaluation that names no training run is never attached to a candidate
    metrics.pop("mlflow_run_id")
    storage.write_text(metrics_uri, json.dumps(metrics))
    with pytest.raises(RegistryError, match="rerun `bitpredict evaluate`"):
        register(settings)

    # 5. one command puts the previous champion back
    if second["promoted"]:
        back = rollback(settings, reason="test")
        assert back["from"] == 2 and back["champion"] == 1
        assert client.get_model_version_by_alias("bitpredict-lstm", CHAMPION).version == "1"
        assert (Path(back["exported_to"]) / "saved_model.pb").exists()
