"""stages.run_stage: artifacts in the places the stage expects, clear errors, reuse only when nothing changed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bitpredict import storage
from bitpredict.orchestration.parameters import NAMES, ParameterError, pipeline_settings, typed
from bitpredict.orchestration.stages import run_stage
from tests.conftest import SAMPLE_DAYS


@pytest.fixture
def clean_artifact(clean_daily: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "artifacts" / "clean"
    storage.write_parquet(clean_daily, path)
    return path


def test_a_stage_reads_its_artifacts_and_writes_its_outputs(clean_artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "artifacts" / "indicators"
    report = run_stage("indicators", {"clean": str(clean_artifact)}, {"indicators": str(out)})
    assert report["rows"] == SAMPLE_DAYS and report["cached"] is False
    assert len(storage.read_parquet(out)) == SAMPLE_DAYS


def test_reuse_only_when_inputs_settings_and_code_are_unchanged(clean_artifact: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    out = tmp_path / "out"
    first = run_stage("indicators", {"clean": str(clean_artifact)}, {"indicators": str(out / "a")}, cache_dir=cache)
    again = run_stage("indicators", {"clean": str(clean_artifact)}, {"indicators": str(out / "b")}, cache_dir=cache)
    assert first["cached"] is False and again["cached"] is True
    assert (out / "a").read_bytes() == (out / "b").read_bytes()

    changed_settings = run_stage(
        "indicators", {"clean": str(clean_artifact)}, {"indicators": str(out / "c")}, {"log_level": "DEBUG"}, cache
    )
    assert changed_settings["cached"] is False
    bars = storage.read_parquet(clean_artifact)
    bars.loc[bars.index[-1], "close"] *= 1.01
    storage.write_parquet(bars, clean_artifact)
    changed_input = run_stage(
        "indicators", {"clean": str(clean_artifact)}, {"indicators": str(out / "d")}, cache_dir=cache
    )
    assert changed_input["cached"] is False


def test_wrong_stage_or_artifacts_are_clear_errors(clean_artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        run_stage("predict", {}, {})
    with pytest.raises(ValueError, match="missing \\['indicators'\\]"):
        run_stage("indicators", {"clean": str(clean_artifact)}, {})
    with pytest.raises(FileNotFoundError, match="input artifact 'clean'"):
        run_stage("indicators", {"clean": str(tmp_path / "nope")}, {"indicators": str(tmp_path / "x")})


def test_pipeline_parameters_are_validated_once_with_the_setting_named() -> None:
    good = pipeline_settings(
        {
            **_args(),
            "sources": "binance, rss",
            "mlflow_tracking_uri": "http://127.0.0.1:5000",
            "extra_settings": '{"model": {"dropout": 0.1}}',
        }
    )
    assert good["ingest_sources"] == ["binance", "rss"] and good["model"] == {
        "dropout": 0.1,
        "window": 20,
        "epochs": 5,
        "test_days": 100,
    }
    assert good["promotion"] == {"selection_days": 365, "switch_pvalue": 0.1} and "model_store" not in good
    with pytest.raises(Exception, match="window"):
        pipeline_settings({**_args(), "window": 1})
    with pytest.raises(Exception, match="ingest_sources"):
        pipeline_settings({**_args(), "sources": "bloomberg"})
    with pytest.raises(ParameterError, match="unknown pipeline parameter\\(s\\) \\['selection_day'\\]"):
        pipeline_settings({**_args(), "selection_day": 10})
    with pytest.raises(ParameterError, match="epochs='many' is not a int"):
        pipeline_settings({**_args(), "epochs": "many"})


def test_parameters_arrive_typed_and_only_the_ingest_task_gets_the_exports_folder() -> None:
    """KFP may hand numbers over as text ("3.0"); the files folder is ingest's alone (the others work on artifacts)."""
    values = typed({**_args(), "epochs": "3.0", "switch_pvalue": "0.01", "files_dir": "/exports"})
    assert values["epochs"] == 3 and values["switch_pvalue"] == 0.01 and list(values) == list(NAMES)
    assert "files_dir" not in pipeline_settings(values)
    assert pipeline_settings(values, ingest=True)["files_dir"] == "/exports"
    assert pipeline_settings({**values, "files_dir": ""}, ingest=True)["files_dir"] is None


def _args() -> dict:
    return {
        "sources": "binance",
        "since": "2020-01-01",
        "interval": "1d",
        "window": 20,
        "epochs": 5,
        "test_days": 100,
        "selection_days": 365,
        "switch_pvalue": 0.1,
        "mlflow_tracking_uri": "",
        "model_store": "",
    }


def test_every_stage_reports_its_progress_for_the_run_screen(
    clean_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` draws its lines from these events: start, then end with ran/reused, seconds and the figure."""
    import json

    progress = tmp_path / "progress.jsonl"
    monkeypatch.setenv("BITPREDICT_PROGRESS", str(progress))
    cache = str(tmp_path / "cache")
    for target in ("a", "b"):
        run_stage("indicators", {"clean": str(clean_artifact)}, {"indicators": str(tmp_path / target)}, cache_dir=cache)
    with pytest.raises(FileNotFoundError):
        run_stage("indicators", {"clean": str(tmp_path / "nope")}, {"indicators": str(tmp_path / "c")})
    events = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [(e["stage"], e["event"]) for e in events] == [("indicators", "start"), ("indicators", "end")] * 2 + [
        ("indicators", "start"),
        ("indicators", "failed"),
    ]
    first, second = events[1], events[3]
    assert first["cached"] is False and second["cached"] is True and first["figure"] == f"{SAMPLE_DAYS} rows"
    assert "input artifact 'clean'" in events[5]["error"]


def test_the_checked_in_dvc_yaml_is_generated_from_the_stage_table() -> None:
    from bitpredict.pipeline.stage_table import DVC_YAML, render_dvc_yaml

    assert DVC_YAML.read_text() == render_dvc_yaml(), "dvc.yaml is stale: run `bitpredict stages dvc` and commit it"


def test_the_stage_table_is_consistent_with_itself_and_the_published_layout() -> None:
    """What a stage reads is what an earlier stage writes; every artifact is tracked; publish reads the same paths."""
    from bitpredict.operations.publish import ITEMS
    from bitpredict.pipeline.stage_table import STAGES, code_dependencies

    def covers(outer: str, inner: str) -> bool:
        return inner == outer or inner.startswith(outer + "/")

    written: list[str] = []
    for name, stage in STAGES.items():
        for read in stage.data_deps:
            assert any(covers(w, read) or covers(read, w) for w in written), f"{name} reads {read}: no stage writes it"
            assert any(covers(path, read) for path in stage.inputs.values()), f"{name}: {read} is no input artifact"
        files = [out.path for out in stage.files]
        for output in stage.outputs.values():
            assert any(covers(output, f) or covers(f, output) for f in files), f"{name}: {output} is not tracked"
        assert f"bitpredict/{stage.module.replace('.', '/')}.py" in code_dependencies(stage)
        written += files
    outputs = {path for stage in STAGES.values() for path in stage.outputs.values()}
    assert set(ITEMS.values()) <= outputs


def test_code_dependencies_follow_the_imports() -> None:
    """evaluate imports train (fit_recipe): its DVC stage reruns when train.py changes; plumbing is left out."""
    from bitpredict.pipeline.stage_table import STAGES, code_dependencies

    evaluate = code_dependencies(STAGES["evaluate"])
    assert {
        "bitpredict/evaluation/evaluate.py",
        "bitpredict/forecast/train.py",
        "bitpredict/evaluation/report.py",
    } <= set(evaluate)
    assert "bitpredict/config.py" not in evaluate and "bitpredict/storage.py" not in evaluate
    assert "bitpredict/data/clean.py" in code_dependencies(STAGES["clean"])


def test_code_dependencies_follow_imports_of_imports() -> None:
    """train reaches online (the feature function) only through merge: a change there must rerun train under DVC.
    A subpackage inside a layer is one dependency (its folder); the core and the pipeline plumbing are none."""
    from bitpredict.pipeline.stage_table import STAGES, _package_imports, code_dependencies

    assert "forecast.network" in _package_imports("forecast.train")
    assert "features.online" not in _package_imports("forecast.train")  # only through another module…
    assert "bitpredict/features/online.py" in code_dependencies(STAGES["train"])  # …and still a dependency
    ingest = code_dependencies(STAGES["ingest"])
    assert "bitpredict/data/sources" in ingest and not any(p.startswith("bitpredict/data/sources/") for p in ingest)
    assert not {"bitpredict/pipeline/stage_table.py", "bitpredict/pipeline/tracking.py"} & set(
        code_dependencies(STAGES["train"])
    )
