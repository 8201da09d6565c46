"""A drift-triggered rerun replays the last published run's parameters: locally or through KFP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitpredict.config import load_settings
from bitpredict.operations.drift_check import command_trigger
from bitpredict.operations.publish import publish
from pipelines.rerun import kfp_parameters, rerun
from pipelines.run_local import PARAMETERS, RunError, replay_arguments
from tests.fakes.kfp_api import FakeKfp

REPO = Path(__file__).resolve().parents[2]
RECORDED = {
    "data_root": "gs://bucket/data", "files_dir": "", "sources": "binance,rss", "since": "2020-01-01",
    "interval": "1d", "window": 20, "epochs": 7, "test_days": 90, "selection_days": 200, "switch_pvalue": 0.2,
    "mlflow_tracking_uri": "http://mlflow:5000", "model_store": "gs://bucket/serving",
    "cache_dir": "/tmp/cache", "extra_settings": '{"sentiment": {"finbert": "off"}}',
}  # fmt: skip


@pytest.fixture
def kfp() -> Iterator[FakeKfp]:
    server = FakeKfp().start()
    try:
        yield server
    finally:
        server.stop()


def _published(tmp_path: Path, parameters: dict) -> str:
    """A data dir whose published manifest recorded ``parameters`` and champion v4."""
    settings = load_settings(data_dir=str(tmp_path / "data"))
    report = tmp_path / "report.md"
    report.write_text("# clean")
    champion = {"model": "bitpredict-lstm", "version": 4, "kind": "garch", "exported_to": "/x/4"}
    publish(settings, {"clean_report": str(report)}, run_id="bitpredict-1", parameters=parameters, champion=champion)
    return settings.data_dir


def test_the_replay_uses_exactly_the_recorded_parameters(tmp_path: Path) -> None:
    _published(tmp_path, RECORDED)
    manifest = json.loads((tmp_path / "data" / "published.json").read_text())
    assert replay_arguments(manifest) == RECORDED and set(PARAMETERS) == set(RECORDED)
    assert kfp_parameters(manifest) == {**RECORDED, "cache_dir": ""}  # no local cache on a cluster
    with pytest.raises(RunError, match="make run"):
        replay_arguments(None)
    with pytest.raises(RunError, match="epochs"):
        replay_arguments({"parameters": {k: v for k, v in RECORDED.items() if k != "epochs"}})


def test_a_rerun_on_kfp_submits_the_recorded_parameters(tmp_path: Path, kfp: FakeKfp) -> None:
    data_dir = _published(tmp_path, RECORDED)
    outcome = rerun(load_settings(data_dir=data_dir), host=kfp.url)
    assert outcome["ok"] and outcome["mode"] == "kfp" and outcome["run_id"] == kfp.state.runs[0]["run_id"]
    assert outcome["champion_before"] == 4 and outcome["replayed"] == "bitpredict-1"
    assert kfp.state.runs[0]["runtime_config"]["parameters"] == {**RECORDED, "cache_dir": ""}


def test_the_drift_trigger_runs_the_launcher_and_returns_its_outcome(
    tmp_path: Path, kfp: FakeKfp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller configures the rerun command (`make drift`: `python -m pipelines.rerun`); the drift check runs it
    for this data dir and keeps its outcome — bitpredict itself neither imports nor names the pipeline code."""
    data_dir = _published(tmp_path, RECORDED)
    monkeypatch.chdir(REPO)  # the launcher is found by module name from the checkout, as in the image
    monkeypatch.setenv("KFP_HOST", kfp.url)
    trigger = command_trigger(f"{sys.executable} -m pipelines.rerun", load_settings(data_dir=data_dir))
    outcome = trigger(["90% of columns drifted"])
    assert outcome["ok"] and outcome["run_id"] == kfp.state.runs[0]["run_id"]
    assert kfp.state.runs[0]["runtime_config"]["parameters"]["epochs"] == 7


def test_nothing_published_is_a_failed_outcome_and_a_one_line_error(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path / "empty"))
    outcome = rerun(settings)
    assert not outcome["ok"] and outcome["mode"] == "local" and "make run" in outcome["error"]
    done = subprocess.run([sys.executable, "-m", "pipelines.run_local", "--replay", "--data-root", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stderr.startswith("error: nothing has been published")
    assert "Traceback" not in done.stderr


def test_the_core_never_imports_the_pipeline_code() -> None:
    for path in (REPO / "bitpredict").rglob("*.py"):
        text = path.read_text()
        assert "import pipelines" not in text and "from pipelines" not in text, path
        assert '"pipelines.' not in text and "'pipelines." not in text, f"{path} names a pipeline module to launch"


def test_a_trigger_command_that_fails_or_is_empty_is_an_outcome_or_a_clear_error(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path / "data"))
    failed = command_trigger([sys.executable, "-c", "import sys; sys.exit('no rerun today')"], settings)(["x"])
    assert not failed["ok"] and failed["error"] == "no rerun today"
    silent = command_trigger([sys.executable, "-c", "pass"], settings)(["x"])
    assert silent["ok"] and silent["run_id"] is None
    with pytest.raises(ValueError, match="empty"):
        command_trigger("  ", settings)
