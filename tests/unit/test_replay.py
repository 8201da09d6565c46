"""The replay's pieces that need no model: the files source's clock, the report's figures, the docs block."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bitpredict.config import load_settings
from bitpredict.data.schemas import NEWS, RAW_MARKET
from bitpredict.data.sources.files import import_file, visible_rows
from bitpredict.docs_blocks import markers
from bitpredict.errors import InputError
from bitpredict.operations.replay_report import (
    BLOCK,
    block_text,
    episodes,
    pinball,
    summarise,
    write_block,
    write_report,
)
from bitpredict.operations.replay_state import Replay, ReplayRecipe, ReplayState
from bitpredict.pipeline.stage_table import serving_store


def test_the_cut_keeps_what_was_known_at_the_end_of_the_day() -> None:
    hourly = pd.DataFrame({"timestamp": [1725148800 + 3600 * h for h in (-1, 0, 23, 24, 25)]})  # around 2024-09-01
    kept = visible_rows(hourly, RAW_MARKET, pd.Timestamp("2024-09-01"))
    assert kept["timestamp"].tolist() == [1725148800 - 3600, 1725148800, 1725148800 + 23 * 3600]  # 23:00 closes at 24
    daily = pd.DataFrame({"timestamp": ["2024-08-31", "2024-09-01", "2024-09-02"]})
    assert visible_rows(daily, RAW_MARKET, pd.Timestamp("2024-09-01", tz="UTC"))["timestamp"].tolist() == [
        "2024-08-31",
        "2024-09-01",
    ]
    news = pd.DataFrame({"published_at": [pd.Timestamp("2024-09-01 23:59", tz="UTC"),
                                          pd.Timestamp("2024-09-02 00:00", tz="UTC"), "not a date"]})  # fmt: skip
    kept = visible_rows(news, NEWS, pd.Timestamp("2024-09-01"))
    assert len(kept) == 2 and kept["published_at"].iloc[-1] == "not a date"  # unparsable: left to the quarantine


def test_every_kind_of_moment_is_read_and_nothing_overflows() -> None:
    values = pd.Series([pd.Timestamp("2024-09-02 00:00", tz="UTC"), "1725148800", 1725148800 + 86_400, "2024-08-31",
                        "not a date", None, 1e30])  # fmt: skip
    with np.errstate(all="raise"):  # as after TensorFlow or arch set it: a wrong conversion would raise here
        kept = visible_rows(pd.DataFrame({"timestamp": values}), RAW_MARKET, pd.Timestamp("2024-09-01"))
    assert kept["timestamp"].tolist() == ["1725148800", "2024-08-31", "not a date", None, 1e30]  # not times: kept


def test_a_file_imported_with_a_cut_has_no_later_row(tmp_path: Path) -> None:
    path = tmp_path / "daily.csv"
    path.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        + "".join(f"2024-09-{d:02d},1,2,0.5,1.5,1.5,10\n" for d in range(1, 6))
    )
    (batch,) = list(import_file(str(path), visible_until=pd.Timestamp("2024-09-03")))
    assert batch.rows["timestamp"].tolist() == ["2024-09-01", "2024-09-02", "2024-09-03"]
    (whole,) = list(import_file(str(path)))
    assert len(whole.rows) == 5


def test_pinball_and_episodes() -> None:
    actual = np.array([100.0, 100.0])
    assert pinball(actual, {0.5: np.array([100.0, 100.0])}) == 0.0
    # 0.1-quantile 10 below: loss 0.1 * 10; 0.9-quantile 10 below: 0.9 * 10 → mean over levels and days
    assert pinball(actual, {0.1: actual - 10, 0.9: actual - 10}) == pytest.approx((1.0 + 9.0) / 2)
    drift = pd.DataFrame({"day": ["d1", "d2", "d3", "d4", "d5", "d6"],
                          "drifting": [False, True, True, False, True, False],
                          "triggered": [False, True, False, False, False, False]})  # fmt: skip
    found = episodes(drift)
    assert [(e["start"], e["end"], e["days"], e["triggered"]) for e in found] == [
        ("d2", "d3", 2, True),
        ("d5", "d5", 1, False),
    ]


def _replay(tmp_path: Path) -> Replay:
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "bars.csv").write_text("timestamp,open,high,low,close,volume\n")
    settings = load_settings(data_dir=str(tmp_path / "data"))
    return Replay(tmp_path / "exports", date(2024, 9, 1), date(2024, 9, 3), settings, ReplayRecipe())


def test_the_summary_and_the_docs_block_come_from_the_tables(tmp_path: Path) -> None:
    replay = _replay(tmp_path)
    forecasts = pd.DataFrame({
        "made_on": ["2024-09-01", "2024-09-02", "2024-09-03"], "as_of": ["2024-09-02", "2024-09-03", "2024-09-04"],
        "model_version": ["har-v1"] * 3, "predicted_close": [101.0, 99.0, 100.0], "lower": [95.0, 98.5, 90.0],
        "upper": [105.0, 100.0, 110.0], "last_close": [100.0, 102.0, 98.0], "actual_close": [102.0, 98.0, np.nan],
    })  # fmt: skip
    drift = pd.DataFrame({"day": ["2024-09-01", "2024-09-02", "2024-09-03"], "share": [np.nan, 0.6, 0.1],
                          "drifting": [False, True, False], "triggered": [False, True, False]})  # fmt: skip
    state = ReplayState(key="k", last_day="2024-09-03",
                        reruns=[{"day": "2024-09-02", "reasons": ["x"], "version": 2, "kind": "garch",
                                 "promoted": True, "seconds": 30.0},  # saved before triggers existed: drift's
                                {"day": "2024-09-03", "trigger": "schedule", "reasons": ["y"], "version": 3,
                                 "kind": "har", "promoted": False, "seconds": 20.0}],
                        champion_changes=[{"day": "2024-08-31", "serves_from": "2024-09-01", "version": 1,
                                           "kind": "har", "initial": True},
                                          {"day": "2024-09-02", "serves_from": "2024-09-03", "version": 2,
                                           "kind": "garch", "initial": False, "switched": True,
                                           "reason": "switch: p = 0.01"}],
                        initial={"visible_until": "2024-08-31", "version": 1, "kind": "har"}, seconds=90.0)  # fmt: skip
    summary = summarise(replay, state, forecasts, drift)
    assert summary["days"] == 3 and summary["forecasts"] == 3 and summary["closed_forecasts"] == 2
    assert summary["live_mae"] == pytest.approx((1.0 + 1.0) / 2)
    assert summary["persistence_mae"] == pytest.approx((2.0 + 4.0) / 2)
    assert summary["live_skill"] == pytest.approx(1 - 1.0 / 3.0)
    assert summary["coverage"] == pytest.approx(0.5)  # 102 in [95, 105]; 98 below [98.5, 100]
    assert summary["drift_verdicts"] == 2 and summary["drift_episodes"]["count"] == 1
    assert summary["reruns"]["count"] == 2 and len(summary["champion_changes"]) == 2
    assert summary["reruns"]["by_trigger"] == {"drift": 1, "schedule": 1}
    assert [r["trigger"] for r in summary["reruns"]["runs"]] == ["drift", "schedule"]

    written = write_report(replay, state, forecasts, drift)
    assert json.loads((replay.report_dir / "summary.json").read_text()) == json.loads(json.dumps(written))
    assert (replay.report_dir / "replay.png").read_bytes()[:4] == b"\x89PNG"

    block = block_text(written, "replay.png", "make replay DATA=x FROM=2024-09-01 TO=2024-09-03")
    assert "| live skill vs persistence | +0.6667 |" in block
    assert "| reruns triggered by drift | 1: 2024-09-02 (v2 garch, promoted) |" in block
    assert "| scheduled reruns (off) | 1: 2024-09-03 (v3 har, kept the champion) |" in block
    scheduled = Replay(replay.data, replay.start, replay.end, replay.settings, replay.recipe, retrain_every=30)
    assert "| scheduled reruns (every 30 d) |" in block_text(
        summarise(scheduled, state, forecasts, drift), "replay.png", "make replay"
    )
    assert (
        "| champion changes (a new recipe, by the switching rule) | 1: v2 garch from 2024-09-03 (switch: p = 0.01) |"
        in block
    )
    assert "| refits of the champion's recipe promoted | 0 |" in block
    docs = tmp_path / "docs"
    docs.mkdir()
    page = docs / "monitoring.md"
    start, end = markers(BLOCK)
    page.write_text(f"# x\n\n{start}\nold\n{end}\n\nrest\n")
    image = write_block(page, written, replay.report_dir / "replay.png", "make replay")
    text = page.read_text()
    assert "old" not in text and "rest" in text and "![Replay 2024-09-01" in text
    assert image == docs / "replay.png" and image.exists() and "](replay.png)" in text  # beside the page
    (docs / "bare.md").write_text("# no block\n")
    with pytest.raises(InputError, match="replay:start"):
        write_block(docs / "bare.md", written, replay.report_dir / "replay.png", "make replay")


def test_the_replay_works_in_its_own_folder_and_registry(tmp_path: Path) -> None:
    replay = _replay(tmp_path)
    work = replay.work_settings()
    assert Path(work.data_dir) == (tmp_path / "data" / "replay" / "work").resolve()
    assert work.tracking_uri.startswith("sqlite:///") and str(tmp_path / "data" / "replay") in work.tracking_uri
    assert str(tmp_path / "data" / "replay") in serving_store(work)
    assert work.ingest_sources == ["files"] and work.files_dir == str(tmp_path / "exports")
    assert work.model.epochs == 5 and work.model.test_days == 365  # a lighter network, a full confirmation year
    assert replay.report_dir == tmp_path / "data" / "reports" / "replay"
    other = Replay(replay.data, date(2024, 9, 2), replay.end, replay.settings, replay.recipe)
    longer = Replay(replay.data, replay.start, date(2024, 10, 1), replay.settings, replay.recipe)
    assert replay.key() != other.key() and replay.key() == longer.key()  # extending --to continues the same replay
    # The schedule is part of the identity; off (the default) keeps the key a drift-only replay always had.
    every = [Replay(replay.data, replay.start, replay.end, replay.settings, replay.recipe, n).key() for n in (0, 7, 30)]
    assert every[0] == replay.key() and len(set(every)) == 3
    with pytest.raises(ValueError, match="--retrain-every -1"):
        Replay(replay.data, replay.start, replay.end, replay.settings, replay.recipe, -1)
    stricter = load_settings(data_dir=str(tmp_path / "data"), drift={"share_threshold": 0.3})
    assert Replay(replay.data, replay.start, replay.end, stricter, replay.recipe).key() != replay.key()
