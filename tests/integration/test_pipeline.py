"""The Kubeflow pipeline: compiled YAML in sync and complete; submit against a KFP API server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipelines.bitpredict_pipeline import COMPILED, compile_pipeline
from pipelines.submit import parse_params, submit
from tests.fakes.kfp_api import FakeKfp

STAGES = ("ingest", "clean", "indicators", "sentiment", "merge", "train", "evaluate", "register", "publish")


def test_the_checked_in_pipeline_yaml_is_up_to_date(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "pipeline.yaml")
    assert list(yaml.safe_load_all(fresh.read_text())) == list(yaml.safe_load_all(COMPILED.read_text())), (
        "pipelines/bitpredict_pipeline.yaml is stale: run `make compile` and commit it"
    )


def test_the_compiled_pipeline_has_the_stages_parameters_and_resources_and_publishes_last() -> None:
    from bitpredict.config import load_settings

    spec = next(yaml.safe_load_all(COMPILED.read_text()))
    components = spec["components"]
    assert {f"comp-{s}" for s in STAGES} <= set(components)
    executors = spec["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values()}
    assert images == {load_settings().components_image}
    for executor in executors.values():
        resources = executor["container"]["resources"]
        assert resources["cpuLimit"] > 0 and resources["memoryLimit"] > 0 and resources["resourceCpuRequest"]
        assert "pip install" not in " ".join(executor["container"]["command"])  # the image has everything

    parameters = spec["root"]["inputDefinitions"]["parameters"]
    for name in ("sources", "since", "interval", "window", "epochs", "selection_days", "switch_pvalue", "data_root"):
        assert name in parameters, name
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["ingest"]["cachingOptions"] == {}  # caching off for ingest
    assert tasks["train"]["cachingOptions"] == {"enableCache": True}

    assert not [name for name in components if name.startswith("comp-condition")]  # the policy lives in register
    assert tasks["register"]["inputs"]["parameters"]["allow_promotion"]["runtimeValue"]["constant"] is True
    assert tasks["register"]["cachingOptions"] == {} and tasks["publish"]["cachingOptions"] == {}
    publish = tasks["publish"]
    assert "register" in publish["dependentTasks"]  # a run that fails before register publishes nothing
    artifacts = publish["inputs"]["artifacts"]
    assert {a["taskOutputArtifact"]["producerTask"] for a in artifacts.values()} == {
        "clean", "indicators", "sentiment", "merge", "train", "evaluate"
    }  # fmt: skip
    assert publish["inputs"]["parameters"]["parameters"]["taskOutputParameter"]["producerTask"] == "ingest"
    downstream = {d for t in tasks.values() for d in t.get("dependentTasks", [])}
    assert "publish" not in downstream  # the last task


def test_the_pipeline_and_its_ingest_task_take_the_parameters_of_the_one_table() -> None:
    """Names, types and defaults come from bitpredict.orchestration.parameters; KFP reads ingest's from its source."""
    import inspect

    from bitpredict.orchestration.parameters import PARAMETERS
    from components.ingest import ingest

    kfp_types = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE"}
    declared = next(yaml.safe_load_all(COMPILED.read_text()))["root"]["inputDefinitions"]["parameters"]
    assert {name: (d["parameterType"], d["defaultValue"]) for name, d in declared.items()} == {
        p.name: (kfp_types[p.type], p.default) for p in PARAMETERS
    }
    component = inspect.signature(ingest.python_func).parameters
    assert [(name, arg.annotation) for name, arg in component.items() if name != "raw"] == [
        (p.name, p.type) for p in PARAMETERS
    ]


@pytest.fixture
def kfp_server() -> Iterator[FakeKfp]:
    server = FakeKfp().start()
    try:
        yield server
    finally:
        server.stop()


def test_submit_uploads_then_adds_versions_and_starts_runs(kfp_server: FakeKfp) -> None:
    params = parse_params(["epochs=30", "selection_days=200", "sources=binance"], COMPILED)
    assert params == {"epochs": 30, "selection_days": 200, "sources": "binance"}
    first = submit(kfp_server.url, COMPILED, params)
    state = kfp_server.state
    assert len(state.pipelines) == 1 and len(state.versions) == 2  # the upload's default version + ours
    run = state.runs[0]
    assert run["run_id"] == first["run_id"]
    assert run["runtime_config"]["parameters"] == {"epochs": 30, "selection_days": 200, "sources": "binance"}
    assert run["pipeline_version_reference"]["pipeline_version_id"] == first["version_id"]
    uploaded = state.versions[first["version_id"]]["spec"]
    assert uploaded == next(yaml.safe_load_all(COMPILED.read_text()))

    second = submit(kfp_server.url, COMPILED, {}, recurring="0 6 * * *")
    assert second["pipeline_id"] == first["pipeline_id"] and len(state.pipelines) == 1  # a version, not a copy
    assert len(state.experiments) == 1  # found by name the second time
    job = state.recurring_runs[0]
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 6 * * *" and int(job["max_concurrency"]) == 1
    assert ("POST", "/apis/v2beta1/pipelines/upload_version") in state.calls


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="known parameters"):
        parse_params(["epoch=3"], COMPILED)


def test_the_drift_component_compiles_with_an_html_report(tmp_path: Path) -> None:
    from kfp import compiler

    from components.drift import drift

    path = tmp_path / "drift.yaml"
    compiler.Compiler().compile(drift, str(path))
    spec = yaml.safe_load(path.read_text())
    outputs = spec["root"]["outputDefinitions"]["artifacts"]
    assert outputs["report"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
