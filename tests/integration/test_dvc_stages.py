"""dvc.yaml is real: `dvc repro` runs its stages through the bitpredict CLI in a scratch project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bitpredict import storage

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_dvc_repro_ingest_from_files(tmp_path: Path, shared_data: Path) -> None:
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = (REPO / "params.yaml").read_text()
    params = params.replace(
        "ingest_sources: [binance, cryptocompare, coingecko, rss, twitter]", "ingest_sources: [files]"
    )
    params = params.replace("files_dir: null", f"files_dir: {shared_data}")
    (tmp_path / "params.yaml").write_text(params)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "BITPREDICT_LOG_LEVEL": "WARNING",
    }
    env.pop("BITPREDICT_DATA_DIR", None)

    def dvc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["dvc", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert dvc("init", "--no-scm").returncode == 0
    first = dvc("repro", "ingest")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "market_yahoo_1d" in first.stdout and "new=3484" in first.stdout
    table = tmp_path / "data" / "raw" / "market_yahoo_1d.parquet"
    assert len(storage.read_parquet(table)) == 3484
    second = dvc("repro", "ingest")  # always_changed + persist: runs again, keeps the tables, adds nothing
    assert second.returncode == 0 and "new=0" in second.stdout
    assert (tmp_path / "dvc.lock").exists()
