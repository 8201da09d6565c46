"""Which data ``make run`` uses: the sample by default, live or a folder by choice, never a silent fallback."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bitpredict.config import load_settings
from pipelines.data_choice import LIVE_SOURCES, SAMPLE_DIR, DataChoiceError, choose, describe
from pipelines.run_local import RunError, data_line, main, pipeline_arguments

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def _args(**given: object) -> argparse.Namespace:
    defaults = {"data": None, "sources": None, "window": None, "epochs": None, "test_days": None,
                "no_cache": False, "extra_settings": "{}"}  # fmt: skip
    return argparse.Namespace(**{**defaults, **given})


def test_no_choice_is_the_embedded_sample() -> None:
    chosen = choose(None, None)
    assert (chosen.files_dir, chosen.sources) == (str(SAMPLE_DIR), "files")
    assert choose(None, "sample") == chosen and (SAMPLE_DIR / "btc_usd_hourly.parquet").is_file()
    assert chosen.label.startswith("the embedded sample (data/sample")


def test_live_and_a_folder_are_one_setting_away(tmp_path: Path) -> None:
    live = choose(None, "live")
    assert (live.files_dir, live.sources) == ("", LIVE_SOURCES) and live.label.startswith("the live APIs (binance,")
    folder = choose(str(tmp_path), None)
    assert (folder.files_dir, folder.sources) == (str(tmp_path.resolve()), "files")
    assert folder.label == f"the exports in {tmp_path.resolve()}"


@pytest.mark.parametrize(
    ("data", "sources", "message"),
    [("/nonexistent/exports", None, "is not a folder"), (".", "live", "not both"), (None, "yahoo", "not one of")],
)
def test_a_choice_that_cannot_work_says_what_to_do(data: str | None, sources: str | None, message: str) -> None:
    with pytest.raises(DataChoiceError, match=message):
        choose(data, sources)


def test_the_run_parameters_default_to_the_sample(tmp_path: Path) -> None:
    parameters = pipeline_arguments(_args(), load_settings(data_dir=str(tmp_path / "data")))
    assert parameters["files_dir"] == str(SAMPLE_DIR) and parameters["sources"] == "files"
    assert parameters["data_root"] == str((tmp_path / "data").resolve())


def test_the_run_parameters_come_from_the_settings_and_the_command_line(tmp_path: Path) -> None:
    """Every pipeline parameter is given; the model store is the settings' serving store, not a rebuilt path."""
    from bitpredict.orchestration.parameters import NAMES

    settings = load_settings(data_dir=str(tmp_path / "data"), model_store=str(tmp_path / "store"),
                             model={"window": 12}, promotion={"selection_days": 200})  # fmt: skip
    parameters = pipeline_arguments(_args(epochs=3, no_cache=True), settings)
    assert list(parameters) == list(NAMES)
    assert parameters["model_store"] == str(tmp_path / "store") and parameters["cache_dir"] == ""
    assert (parameters["window"], parameters["epochs"], parameters["selection_days"]) == (12, 3, 200)
    default = pipeline_arguments(_args(), load_settings(data_dir=str(tmp_path / "data")))
    assert default["model_store"] == str((tmp_path / "data").resolve() / "models" / "serving")


def test_live_with_no_network_fails_instead_of_falling_back(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path / "data"), binance_url=UNREACHABLE, coingecko_url=UNREACHABLE,
                             cryptocompare_url=UNREACHABLE)  # fmt: skip
    with pytest.raises(RunError, match="SOURCES=live, but no live market source is reachable"):
        pipeline_arguments(_args(sources="live"), settings)


def test_the_command_line_refuses_live_offline_and_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("BINANCE_URL", "COINGECKO_URL", "CRYPTOCOMPARE_URL"):
        monkeypatch.setenv(f"BITPREDICT_{name}", UNREACHABLE)
    assert main(["--sources", "live", "--data-root", str(tmp_path / "data")]) == 2
    said = capsys.readouterr().err
    assert said.startswith("error: SOURCES=live") and "`make run` (the embedded sample)" in said
    assert not (tmp_path / "data" / "published.json").exists() and not (tmp_path / "data" / "logs").exists()
    assert main(["--data", str(tmp_path), "--sources", "live"]) == 2
    assert "not both" in capsys.readouterr().err


def test_the_summary_names_the_data_a_run_used(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path / "data"))
    assert describe("", "binance,rss") == "the live APIs (binance, rss)"
    sample = {"files_dir": str(SAMPLE_DIR), "sources": "files"}
    assert data_line(settings, sample) == f"data: {choose(None, None).label}"  # nothing published yet
    (tmp_path / "data" / "processed").mkdir(parents=True)
    (tmp_path / "data" / "interim").mkdir()
    features = {"rows": 1669, "first": "2020-04-19T00:00:00+00:00", "last": "2024-11-12T00:00:00+00:00"}
    (tmp_path / "data" / "processed" / "features.json").write_text(json.dumps(features))
    (tmp_path / "data" / "interim" / "sentiment_meta.json").write_text(json.dumps({"news": 0, "tweets": 0}))
    assert data_line(settings, sample) == (
        "data: the embedded sample (data/sample: CryptoCompare hourly BTC/USD 2019-11 → 2024-11, MIT)"
        " → 1,669 days, 2020-04-19 → 2024-11-12; 0 news, 0 tweets"
    )
