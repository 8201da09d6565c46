"""The source registry: one table of names that the settings, the CLI and the ingest engine all follow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from bitpredict.config import DEFAULT_SOURCES, ConfigError, SourceName, load_settings
from bitpredict.data.ingest import run_ingest
from bitpredict.data.sources import KEYLESS_SOURCES, SOURCE_NAMES, SOURCES


def test_the_settings_vocabulary_is_the_registry(tmp_path: Path) -> None:
    """The settings own the names (config imports no source), the registry one row per name: they must agree,
    and the default is exactly the registry's public APIs."""
    assert get_args(SourceName) == SOURCE_NAMES
    assert tuple(name for name, entry in SOURCES.items() if entry.network) == DEFAULT_SOURCES
    settings = load_settings(data_dir=str(tmp_path), ingest_sources=list(SOURCE_NAMES))
    assert tuple(settings.ingest_sources) == SOURCE_NAMES
    assert tuple(load_settings(data_dir=str(tmp_path)).ingest_sources) == DEFAULT_SOURCES
    assert set(KEYLESS_SOURCES) < set(DEFAULT_SOURCES) < set(SOURCE_NAMES)
    assert all(SOURCES[name].network and not SOURCES[name].needs_key for name in KEYLESS_SOURCES)
    with pytest.raises(ConfigError, match="'binance', 'cryptocompare'"):
        load_settings(data_dir=str(tmp_path), ingest_sources=["bloomberg"])


def test_an_unknown_source_fails_before_any_source_runs(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path / "data"))
    with pytest.raises(ValueError, match="unknown source 'bloomberg'; choose from \\['binance'"):
        run_ingest(settings, ["files", "bloomberg"])
    assert not (tmp_path / "data").exists()  # the files source before it did not run


def test_a_source_that_cannot_run_here_says_why_without_failing_the_run(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path / "data"), twitter_bearer_token=None, files_dir=None)
    coingecko, twitter, files = run_ingest(settings, ["coingecko", "twitter", "files"], intervals=["1h"])
    assert coingecko.ok and coingecko.note == "no 1h data here"
    assert twitter.ok and twitter.table == "tweets" and twitter.note.startswith("skipped: no bearer token")
    assert not files.ok and "set files_dir" in (files.error or "")
    [missing] = run_ingest(settings.model_copy(update={"files_dir": str(tmp_path / "nope")}), ["files"])
    assert not missing.ok and "not a folder" in (missing.error or "")


def test_the_source_modules_do_not_import_the_ingest_engine() -> None:
    """No import circle: the sources need only ``bitpredict.data.sources.base``, never ``bitpredict.data.ingest``."""
    names = ("binance", "coingecko", "cryptocompare", "rss", "twitter", "files")
    code = "import sys\n" + "".join(f"import bitpredict.data.sources.{name}\n" for name in names)
    code += "assert 'bitpredict.data.ingest' not in sys.modules, 'a source imports the ingest engine'\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
