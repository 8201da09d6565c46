"""The embedded sample: its bytes, that it is the published MIT file, and that the pipeline's stages run on it.

These are the facts ``make run`` (no argument) and the default suite rest on, checked on a bare checkout.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from bitpredict import storage
from bitpredict.config import SentimentSettings, load_settings
from bitpredict.data.clean import run_clean
from bitpredict.features.indicators import WARMUP, run_indicators
from bitpredict.features.merge import run_merge
from bitpredict.features.sentiment import run_sentiment
from bitpredict.orchestration.stages import STAGES
from bitpredict.pipeline.stage_table import FEATURES, INTERIM, PROCESSED, data_path
from tests.conftest import REPO_ROOT, SAMPLE_DAYS, SAMPLE_FILE, copy_data_dir

SAMPLE_SHA256 = "fbc718d673c031677e56ae593b9420bd5804dcfdfd8f2e7f858e4bb21e794bec"
UPSTREAM_CSV_SHA256 = "13d00e99e837224ece6573de9e0cf1fde88983e4cda10dfabbc4d5c2ba6f7c49"  # ../shared/data's file


def _as_csv(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue().encode()


def test_the_sample_has_its_recorded_checksum(sample_data: Path) -> None:
    assert hashlib.sha256(SAMPLE_FILE.read_bytes()).hexdigest() == SAMPLE_SHA256
    assert SAMPLE_SHA256 in (sample_data / "README.md").read_text()  # the provenance note names the same bytes


def test_the_sample_is_the_published_file_row_for_row(sample_data: Path) -> None:
    frame = pd.read_parquet(SAMPLE_FILE)
    assert len(frame) == 43_669
    assert all(frame[c].map(type).eq(str).all() for c in frame)  # every value is the CSV's own text
    assert frame["time"].iloc[[0, -1]].tolist() == ["1574247600", "1731452400"]  # 2019-11-20 11:00, 2024-11-12 23:00
    assert hashlib.sha256(_as_csv(frame)).hexdigest() == UPSTREAM_CSV_SHA256


def test_the_sample_equals_the_shared_hourly_file(shared_data: Path) -> None:
    assert _as_csv(pd.read_parquet(SAMPLE_FILE)) == (shared_data / "btc_usd_hourly.csv").read_bytes()


def test_the_sample_ships_with_its_licence_and_git_keeps_it(sample_data: Path) -> None:
    licence = (sample_data / "LICENSE").read_text()
    assert "MIT License" in licence and "Copyright (c) 2025 Mouad Jaouhari" in licence
    assert "mouadja02/bitcoin-technical-indicators-dataset" in licence
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to ask git")
    for name in ("btc_usd_hourly.parquet", "LICENSE", "README.md"):
        ignored = subprocess.run(["git", "check-ignore", "-q", f"data/sample/{name}"], cwd=REPO_ROOT, check=False)
        assert ignored.returncode == 1, f"data/sample/{name} is ignored by git"


def test_the_pipelines_ingest_stage_imports_the_sample_folder(sample_data: Path, tmp_path: Path) -> None:
    """``make run`` hands the folder to the ingest stage, which must find the parquet file in it."""
    settings = load_settings(data_dir=str(tmp_path / "data"), files_dir=str(sample_data), ingest_sources=["files"])
    report = STAGES["ingest"].run(settings)
    assert report["failed"] == [] and report["tables"] == {"market_cryptocompare_1h": 43_668}  # one bar quarantined


def test_clean_turns_the_sample_into_complete_days(sample_raw_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(copy_data_dir(sample_raw_dir, tmp_path / "data")))
    report = run_clean(settings, "1d")
    assert report["rows"] == SAMPLE_DAYS and report["bars_per_source"] == {"cryptocompare": SAMPLE_DAYS}
    assert report["first"].startswith("2019-11-21") and report["last"].startswith("2024-11-12")
    assert report["inputs"]["cryptocompare"]["incomplete_days_skipped"] == 1  # 2019-11-20 starts at 11:00
    bars = storage.read_parquet(storage.join(data_path(settings, INTERIM), "clean_1d.parquet")).set_index("timestamp")
    assert bars.index.to_series().diff().dropna().eq(pd.Timedelta(days=1)).all()
    # the shared README's spot check: the daily close derived from the hourly bars on 2021-11-08
    assert bars.loc[pd.Timestamp("2021-11-08", tz="UTC"), "close"] == pytest.approx(67_549, abs=1)

    hourly = run_clean(settings, "1h")
    assert hourly["bars_imputed"] == 1 and hourly["gaps"][0]["first"].startswith("2021-01-04T05:00")


def test_the_four_feature_stages_on_the_sample_and_the_hand_made_news(sample_raw_dir: Path, tmp_path: Path) -> None:
    data_dir = copy_data_dir(sample_raw_dir, tmp_path / "data")
    settings = load_settings(data_dir=str(data_dir), sentiment=SentimentSettings(finbert="off"))
    run_clean(settings, "1d")
    run_indicators(settings)
    assert run_sentiment(settings)["news"] == 30
    manifest = run_merge(settings)
    features = storage.read_parquet(data_path(settings, FEATURES))
    assert len(features) == SAMPLE_DAYS - WARMUP == manifest["rows"] == 1_669
    assert features["timestamp"].iloc[-1] == pd.Timestamp("2024-11-12", tz="UTC")
    assert not features[manifest["feature_columns"]].isna().any().any()
    news_days = features.loc[features["news_missing"] == 0.0, "timestamp"]
    assert news_days.min() == pd.Timestamp("2024-10-14", tz="UTC") and news_days.max() == pd.Timestamp(
        "2024-11-12", tz="UTC"
    )
    assert len(news_days) == 27  # 30 headlines on 27 distinct days
    assert json.loads(storage.read_text(storage.join(data_path(settings, PROCESSED), "features.json")))["rows"] == 1_669
