"""Packaging: the project's packages import from anywhere, so the KFP CLI compiles the pipeline file by path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_the_kfp_cli_compiles_the_pipeline_file(tmp_path: Path) -> None:
    """`kfp dsl compile --py pipelines/bitpredict_pipeline.py`, the command KFP users run, from the repo root
    with nothing on PYTHONPATH: it needs `components` installed as a package, and gives the checked-in YAML."""
    kfp = Path(sys.executable).parent / "kfp"
    output = tmp_path / "pipeline.yaml"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [str(kfp), "dsl", "compile", "--py", "pipelines/bitpredict_pipeline.py", "--output", str(output)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    compiled = list(yaml.safe_load_all(output.read_text()))
    assert compiled == list(yaml.safe_load_all((REPO / "pipelines" / "bitpredict_pipeline.yaml").read_text()))


def test_every_task_of_the_compiled_pipeline_has_a_timeout_and_ingest_mounts_the_keys() -> None:
    """A hung task (a source that never answers) fails its run instead of holding it forever; the keys arrive as
    files, never as environment variables."""
    documents = list(yaml.safe_load_all((REPO / "pipelines" / "bitpredict_pipeline.yaml").read_text()))
    tasks = documents[0]["root"]["dag"]["tasks"]
    platform = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executors = {name: task["componentRef"]["name"].replace("comp-", "exec-") for name, task in tasks.items()}
    for name, executor in executors.items():
        deadline = int(platform[executor]["activeDeadlineSeconds"])
        assert 0 < deadline <= 4 * 3600, name
    from bitpredict.operations.publish import ORPHAN_AFTER_S

    assert int(platform[executors["publish"]]["activeDeadlineSeconds"]) < ORPHAN_AFTER_S  # pruning relies on it
    mounted = platform[executors["ingest"]]["secretAsVolume"][0]
    assert mounted["secretName"] == "bitpredict-api-keys" and mounted["optional"]
    assert "secretAsEnv" not in str(platform)
