"""dvc.yaml is real: `dvc repro` runs its stages through the bitpredict CLI in a scratch project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bitpredict import storage
from tests.conftest import HAND_MADE_NEWS, SAMPLE_FILE

REPO = Path(__file__).resolve().parents[2]


def test_dvc_repro_ingest_from_files(tmp_path: Path, sample_data: Path) -> None:
    """Offline through dvc repro: the files source on the embedded sample's bars and the hand-made news."""
    exports = tmp_path / "exports"
    exports.mkdir()
    for source in (SAMPLE_FILE, HAND_MADE_NEWS):
        (exports / source.name).symlink_to(source)
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "bitpredict").symlink_to(REPO / "bitpredict")  # code deps of the stages
    params = (REPO / "params.yaml").read_text()
    params = params.replace(
        "ingest_sources: [binance, cryptocompare, coingecko, rss, twitter]", "ingest_sources: [files]"
    )
    params = params.replace("files_dir: null", f"files_dir: {exports}")
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
    assert "market_cryptocompare_1h" in first.stdout and "new=43668" in first.stdout  # one bar quarantined
    assert "news_files" in first.stdout and "new=30" in first.stdout
    table = tmp_path / "data" / "raw" / "market_cryptocompare_1h.parquet"
    assert len(storage.read_parquet(table)) == 43668
    second = dvc("repro", "ingest")  # always_changed + persist: runs again, keeps the tables, adds nothing
    assert second.returncode == 0 and "new=0" in second.stdout
    assert (tmp_path / "dvc.lock").exists()

    # the whole DAG: eight stages, then a real run with a small model, metrics and plots
    dag = dvc("dag")
    assert dag.returncode == 0
    for stage in ("ingest", "clean", "indicators", "sentiment", "merge", "train", "evaluate", "register"):
        assert stage in dag.stdout, stage
    small = (tmp_path / "params.yaml").read_text()
    for old, new in (
        ("window: 30", "window: 10"),
        ("epochs: 50", "epochs: 2"),
        ("lstm_units: [64, 32]", "lstm_units: [8]"),
        ("validation_days: 180", "validation_days: 60"),
        ("test_days: 365", "test_days: 60"),
        ("refit_every_days: 92", "refit_every_days: 30"),
        ("finbert: optional", "finbert: 'off'"),
    ):
        assert old in small, old
        small = small.replace(old, new)
    (tmp_path / "params.yaml").write_text(small)
    # (`dvc repro --dry` cannot hash the deps of stages whose inputs do not exist yet: a real run instead)
    full = dvc("repro")
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    assert "register: bitpredict-lstm v1" in full.stdout
    metrics = dvc("metrics", "show", "--json")
    assert metrics.returncode == 0 and "lstm" in metrics.stdout and "mae" in metrics.stdout
    plots = dvc("plots", "show", "-o", str(tmp_path / "plots"))
    assert plots.returncode == 0 and (tmp_path / "plots" / "index.html").exists()
    again = dvc("repro")  # nothing changed: only the always-changed ingest runs, the rest is reused
    assert again.returncode == 0 and "Stage 'train' didn't change, skipping" in again.stdout, again.stdout
