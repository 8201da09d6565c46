"""Structured logging: one parseable line per event, fields from ``extra``."""

from __future__ import annotations

import json
import logging

import pytest

from bitpredict.log import configure_logging


@pytest.fixture(autouse=True)
def _restore_root_logger():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_key_value_lines_quote_values_with_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "kv")
    logging.getLogger("bitpredict.test").info("upsert done", extra={"path": "data/raw/x y.parquet", "new": 3})
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "level=INFO" in line and "logger=bitpredict.test" in line
    assert 'msg="upsert done"' in line and 'path="data/raw/x y.parquet"' in line and "new=3" in line


def test_json_lines_parse(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG", "json")
    logging.getLogger("bitpredict.test").debug("fetched", extra={"rows": 5, "source": "binance"})
    event = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert event["msg"] == "fetched" and event["rows"] == 5 and event["level"] == "DEBUG"


def test_level_filters_and_configure_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING")
    configure_logging("WARNING")
    assert sum(h.get_name() == "bitpredict" for h in logging.getLogger().handlers) == 1
    logging.getLogger("bitpredict.test").info("hidden")
    assert "hidden" not in capsys.readouterr().err
