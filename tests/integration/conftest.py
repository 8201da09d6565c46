"""Fixtures for the ingest tests: fake APIs on 127.0.0.1 serving the real shared data, fast retry settings."""

from __future__ import annotations

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
