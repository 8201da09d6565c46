"""Fixtures for the integration tests: fake APIs on 127.0.0.1 serving the real shared data, fast retry settings,
and a real MLflow server (the register and rollback tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bitpredict.config import HttpSettings, Settings, load_settings
from tests.fakes import apis
from tests.fakes.server import FakeServer

FAST_HTTP = {
    "timeout_s": 0.5,
    "max_retries": 8,
    "backoff_base_s": 0.01,
    "backoff_max_s": 2.0,
    "rate_limit_per_s": {s: 1000.0 for s in ("binance", "cryptocompare", "coingecko", "rss", "twitter")},
}


@pytest.fixture(scope="session")
def daily(shared_data: Path) -> pd.DataFrame:
    return apis.load_daily(shared_data)


@pytest.fixture(scope="session")
def hourly(shared_data: Path) -> pd.DataFrame:
    return apis.load_hourly(shared_data)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def make_settings(tmp_path: Path, server: FakeServer):  # type: ignore[no-untyped-def]
    def build(**overrides: Any) -> Settings:
        http = {**FAST_HTTP, **overrides.pop("http", {})}
        values: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"),
            "binance_url": server.url,
            "cryptocompare_url": server.url,
            "coingecko_url": server.url + "/api/v3",
            "twitter_url": server.url,
            "http": HttpSettings(**http),
        }
        values.update(overrides)
        return load_settings(**values)

    return build


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking + registry server (sqlite backend, local artifact store) on 127.0.0.1."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = (root / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
