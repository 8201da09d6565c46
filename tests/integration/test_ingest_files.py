"""The files source imports the real exports of ../shared/data into the raw tables, quarantining bad lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bitpredict import storage
from bitpredict.config import load_settings
from bitpredict.data.ingest import raw_table_uri, run_ingest
from bitpredict.data.sources.files import FileImportError, detect_preset
from bitpredict.pipeline.stage_table import QUARANTINE, data_path


def test_import_the_real_shared_data(shared_data: Path, tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path / "data"))
    files = [str(shared_data / f) for f in ("btc_usd_daily.csv", "btc_usd_hourly.csv", "crypto_news_2021_2022.csv")]
    summaries = {s.table: s for s in run_ingest(settings, ["files"], files=files)}
    assert all(s.ok for s in summaries.values())

    daily = storage.read_parquet(raw_table_uri(settings, "market_yahoo_1d"))
    source = pd.read_csv(shared_data / "btc_usd_daily.csv")
    assert len(daily) == len(source) == 3484 and summaries["market_yahoo_1d"].quarantined == 0
    assert daily["timestamp"].min() == pd.Timestamp("2014-09-17", tz="UTC")
    assert daily["timestamp"].max() == pd.Timestamp("2024-03-31", tz="UTC")
    spot = daily.set_index("timestamp").loc[pd.Timestamp("2021-11-08", tz="UTC"), "close"]
    assert spot == pytest.approx(67566.83, abs=0.01)

    hourly = storage.read_parquet(raw_table_uri(settings, "market_cryptocompare_1h"))
    quarantined = storage.read_parquet(storage.join(data_path(settings, QUARANTINE), "market_cryptocompare_1h.parquet"))
    assert len(hourly) + len(quarantined) == 43_669 and len(quarantined) == 1
    assert quarantined["timestamp"].iloc[0] == "1609736400"  # 2021-01-04 05:00 UTC, the inconsistent bar
    assert "outside [low, high]" in quarantined["reason"].iloc[0] or "high < low" in quarantined["reason"].iloc[0]
    assert hourly["timestamp"].min() == pd.Timestamp("2019-11-20 11:00", tz="UTC")
    assert hourly["timestamp"].max() == pd.Timestamp("2024-11-12 23:00", tz="UTC")
    assert (hourly["interval"] == "1h").all() and (hourly["source"] == "cryptocompare").all()

    news = storage.read_parquet(raw_table_uri(settings, "news_files"))
    news_q = storage.read_parquet(storage.join(data_path(settings, QUARANTINE), "news_files.parquet"))
    assert len(news) + len(news_q) == 7_524  # every data line is either stored or quarantined with a reason
    assert set(news_q["reason"]) == {"title: missing"}
    assert news["published_at"].min() >= pd.Timestamp("2021-10-01", tz="UTC")
    assert news["published_at"].max() < pd.Timestamp("2022-08-01", tz="UTC")
    first = news.loc[news["url"].str.contains("bitcoin-returns-above-usd-20k", na=False)].iloc[0]
    assert first["published_at"] == pd.Timestamp("2022-07-05 04:24", tz="UTC")  # day-first: 5 July, not 7 May

    again = run_ingest(settings, ["files"], files=files)
    assert all(s.new == 0 and s.updated == 0 for s in again)


def test_malformed_lines_go_to_the_quarantine_with_the_raw_text(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_text(
        "date;sentiment;source;subject;text;title;url\n"
        "5-7-2022 04:24;{};CryptoNews;bitcoin;Price up;Title one;https://n.test/1\n"
        "5-7-2022 05:00;{};CryptoNews;bitcoin;stray;separator;here;Title two;https://n.test/2\n"
        '6-7-2022 01:00;{};CoinTelegraph;bitcoin;"A ""quoted""; text";Title three;https://n.test/3\n'
        "31-2-2022 01:00;{};CoinTelegraph;bitcoin;bad date;Title four;https://n.test/4\n"
    )
    settings = load_settings(data_dir=str(tmp_path / "data"))
    [summary] = run_ingest(settings, ["files"], files=[str(path)])
    news = storage.read_parquet(raw_table_uri(settings, "news_files"))
    assert sorted(news["title"]) == ["Title one", "Title three"]
    assert news.loc[news["title"] == "Title three", "summary"].item() == 'A "quoted"; text'
    quarantine = storage.read_parquet(storage.join(data_path(settings, QUARANTINE), "news_files.parquet"))
    reasons = " | ".join(quarantine["reason"])
    assert "malformed CSV line: 9 fields where the header has 7" in reasons
    assert "published_at: unparseable timestamp ('31-2-2022 01:00')" in reasons
    assert quarantine["_raw_line"].str.contains("stray;separator").any()
    assert summary.fetched == 4 and len(news) + len(quarantine) == 4


def test_generic_ohlcv_and_unknown_layouts(tmp_path: Path) -> None:
    path = tmp_path / "mybars.csv"
    path.write_text("timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n2024-01-02,1.5,2,1,1.8,12\n")
    settings = load_settings(data_dir=str(tmp_path / "data"))
    [summary] = run_ingest(settings, ["files"], files=[str(path)])
    assert summary.ok and summary.table == "market_mybars_1d" and summary.new == 2
    with pytest.raises(FileImportError, match="unknown layout"):
        detect_preset(["when", "price"])
    [missing] = run_ingest(settings, ["files"], files=[str(tmp_path / "nope.csv")])
    assert not missing.ok and "file not found" in missing.error


def test_cli_ingest_files_prints_one_line_per_table(shared_data: Path, tmp_path: Path) -> None:
    env = {"BITPREDICT_DATA_DIR": str(tmp_path / "data"), "BITPREDICT_LOG_LEVEL": "WARNING", "PATH": ""}
    cmd = [
        str(Path(sys.executable).parent / "bitpredict"),
        "ingest",
        "--source",
        "files",
        "--path",
        str(shared_data / "btc_usd_daily.csv"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "market_yahoo_1d" in result.stdout and "new=3484" in result.stdout
    bad = subprocess.run([*cmd[:2], "--source", "nasdaq"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "unknown source(s) ['nasdaq']" in bad.stderr
