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
    compiled = yaml.safe_load(output.read_text())
    assert compiled == yaml.safe_load((REPO / "pipelines" / "bitpredict_pipeline.yaml").read_text())
