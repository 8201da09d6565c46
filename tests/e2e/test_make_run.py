"""`make run`'s path end to end: the KFP pipeline through kfp.local on a slice of the real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.run_local import latest_run_dir, main


def _slice(shared_data: Path, target: Path, days: int = 1300) -> Path:
    """The last ``days`` rows of the real daily file and the real news file (the files source's layouts)."""
    target.mkdir()
    lines = (shared_data / "btc_usd_daily.csv").read_text().splitlines()
    (target / "btc_usd_daily.csv").write_text("\n".join([lines[0], *lines[-days:]]) + "\n")
    (target / "crypto_news_2021_2022.csv").write_bytes((shared_data / "crypto_news_2021_2022.csv").read_bytes())
    return target


def test_make_run_goes_from_files_to_a_registered_model(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    data = _slice(shared_data, tmp_path / "exports")
    root = tmp_path / "data"
    extra = {
        "model": {"lstm_units": [8], "dense_units": 4, "validation_days": 60, "refit_every_days": 30},
        "sentiment": {"finbert": "off"},  # no FinBERT weights here (tests never download)
    }
    argv = ["--data", str(data), "--data-root", str(root), "--epochs", "2", "--window", "10", "--test-days", "60"]
    assert main([*argv, "--extra-settings", json.dumps(extra)]) == 0
    printed = capsys.readouterr().out
    assert (
        "BitPredict pipeline finished" in printed and "| persistence |" in printed and "bitpredict-lstm v1" in printed
    )

    run = latest_run_dir(root / "pipeline_root")
    features = json.loads((run / "merge" / "features" / "features.json").read_text())
    assert features["last"].startswith("2024-03-31") and features["rows"] == 1300 - 150
    assert (run / "merge" / "features" / "bitcoin_features.parquet").exists()
    model = run / "train" / "model"
    assert (model / "saved_model" / "saved_model.pb").exists() and (model / "bitpredict_model.json").exists()
    metrics = json.loads((run / "evaluate" / "evaluation" / "metrics.json").read_text())
    assert metrics["days"] == 60 and set(metrics["methods"]) >= {"lstm", "persistence", "arima"}
    executor = json.loads((run / "evaluate" / "executor_output.json").read_text())
    kfp_metrics = executor["artifacts"]["metrics"]["artifacts"][0]["metadata"]  # the KFP Metrics artifact
    assert kfp_metrics["lstm_mae"] == pytest.approx(metrics["methods"]["lstm"]["mae"]) and "arima_skill" in kfp_metrics
    assert executor["parameterValues"]["Output"] is metrics["decision"]["beats_baselines"]

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    version = client.get_model_version("bitpredict-lstm", "1")
    run_id = json.loads((model / "run.json").read_text())["run_id"]
    assert version.run_id == run_id and client.get_run(run_id).data.metrics["lstm_mae"] == pytest.approx(
        metrics["methods"]["lstm"]["mae"]
    )
    assert version.tags["promoted"] in ("true", "false") and version.tags["promotion_reason"]

    # nothing new: every deterministic stage is reused and nothing is registered twice
    assert main([*argv, "--extra-settings", json.dumps(extra)]) == 0
    assert len(client.search_model_versions("name='bitpredict-lstm'")) == 1
