"""The replay end to end on the embedded sample: a short window with a tiny recipe, its clock, its resumption.

One replay of eight days runs once per module (about a minute here: the initial champion, eight days, one rerun);
the tests read what it wrote. The rerun is forced by a drift setting no real model meets (live skill below 1.0
over at least five closed days counts as degradation), so the loop's trigger → rerun → champion path runs on
real data within a short window; the drift decision itself is tested in ``test_drift.py``. A second, shorter
replay with ``retrain_every`` (four days, too few closed forecasts for any drift verdict) runs the scheduled rerun.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bitpredict import storage
from bitpredict.config import Settings, load_settings
from bitpredict.operations.replay import Champion, Runner, build_tables, ingest_visible
from bitpredict.operations.replay_state import Replay, ReplayError, ReplayRecipe
from bitpredict.pipeline.stage_table import FEATURES, INTERIM, data_path

pytestmark = pytest.mark.timeout(1200)  # the module's replay is about a minute alone; on a busy machine far longer

START, END = date(2024, 6, 1), date(2024, 6, 8)
TINY = {"window": 10, "lstm_units": [8], "dense_units": 4, "validation_days": 60}
RECIPE = ReplayRecipe(epochs=1, patience=1, test_days=30, extra=TINY)


FORCED_DRIFT = {"threshold": 0.999, "share_threshold": 0.01}  # any K-S p below 0.999, 1 % of columns: always
NO_DRIFT = {"share_threshold": 1.0, "monitor_size": 1e-9}  # every column, and checks that never reject: never


def _settings(data_dir: Path, drift: dict | None = None) -> Settings:
    return load_settings(
        data_dir=str(data_dir),
        model={**TINY, "epochs": 1},
        sentiment={"finbert": "off"},
        drift={"min_rows": 5, "cooldown_hours": 24, **(drift if drift is not None else FORCED_DRIFT)},
    )


@pytest.fixture(scope="module")
def exports(sample_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("exports")
    shutil.copy(sample_data / "btc_usd_hourly.parquet", folder / "btc_usd_hourly.parquet")
    return folder


@pytest.fixture(scope="module")
def replayed(exports: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    data_dir = tmp_path_factory.mktemp("replay") / "data"
    replay = Replay(exports, START, END, _settings(data_dir), RECIPE)
    lines: list[str] = []
    state = Runner(replay, lines.append).run()
    return {"replay": replay, "state": state, "lines": lines, "data_dir": data_dir}


def test_a_short_window_replays_end_to_end(replayed: dict) -> None:
    replay: Replay = replayed["replay"]
    days = [str(START + timedelta(days=i)) for i in range((END - START).days + 1)]
    forecasts = storage.read_parquet(str(replay.report_dir / "forecasts.parquet"))
    assert forecasts["made_on"].tolist() == days
    assert (pd.to_datetime(forecasts["as_of"]) - pd.to_datetime(forecasts["made_on"])).eq(pd.Timedelta(days=1)).all()
    assert set(forecasts.columns) >= {"made_on", "as_of", "model_version", "predicted_close", "lower", "upper",
                                      "actual_close"}  # fmt: skip
    assert (forecasts["lower"] <= forecasts["predicted_close"]).all()
    assert (forecasts["predicted_close"] <= forecasts["upper"]).all()
    # Each forecast is closed the next day with that day's realised close (the clean table's), the last is open.
    clean = storage.read_parquet(str(Path(data_path(replay.work_settings(), INTERIM)) / "clean_1d.parquet"))
    closes = clean.assign(day=clean["timestamp"].dt.date.astype(str)).set_index("day")["close"]
    closed = forecasts.iloc[:-1]
    assert np.allclose(closed["actual_close"], closed["as_of"].map(closes))
    assert np.isnan(forecasts["actual_close"].iloc[-1])
    assert np.allclose(forecasts["last_close"], forecasts["made_on"].map(closes))

    summary = json.loads((replay.report_dir / "summary.json").read_text())
    for key in ("days", "forecasts", "live_mae", "persistence_mae", "live_skill", "pinball", "coverage",
                "drift_checks", "drift_episodes", "reruns", "champion_changes"):  # fmt: skip
        assert key in summary, key
    assert summary["days"] == summary["forecasts"] == summary["drift_checks"] == len(days)
    live = float(np.mean(np.abs(closed["predicted_close"] - closed["actual_close"])))
    assert summary["live_mae"] == pytest.approx(live)
    # The forced drift: one episode from the first check on, one rerun (the episode's), no more.
    assert summary["drift_episodes"]["count"] == 1 and summary["reruns"]["count"] == 1
    rerun = summary["reruns"]["runs"][0]
    assert rerun["day"] == str(START) and "input drift" in rerun["reasons"][0]
    changes = [c for c in summary["champion_changes"] if not c["initial"]]
    if rerun["promoted"]:  # a new champion serves from the next day on, not before
        assert changes[0]["serves_from"] == str(START + timedelta(days=1))
        by_day = forecasts.set_index("made_on")["model_version"]
        assert by_day[str(START)] != by_day[str(START + timedelta(days=1))]
    else:
        assert not changes and forecasts["model_version"].nunique() == 1
    assert (replay.report_dir / "replay.png").read_bytes()[:4] == b"\x89PNG"
    # Every horizon's forecast is kept by the daily check until its day is ingested, then closed from the table.
    checks = storage.read_parquet(str(replay.report_dir / "drift.parquet"))
    assert {"coverage_80_h7", "closed_h7", "coverage_80_h30", "closed_h30"} <= set(checks.columns)
    book = storage.read_parquet(str(Path(replay.work_settings().path("reports", "drift")) / "ledger_horizons.parquet"))
    assert sorted(book["horizon"].unique()) == [1, 7, 30]
    last_visible = pd.Timestamp(str(END), tz="UTC")
    assert book.loc[book["actual"].notna(), "closes_on"].max() <= last_visible
    assert book.loc[book["closes_on"] > last_visible, "actual"].isna().all()
    assert checks["closed_h7"].iloc[-1] == int(book[book["horizon"] == 7]["actual"].notna().sum())
    # the served 7-day forecast of the first day closes on the last (its day), with that day's close; none other yet
    made = pd.to_datetime(forecasts["made_on"])
    assert (pd.to_datetime(forecasts["as_of_h30"]) - made).eq(pd.Timedelta(days=30)).all()
    week = forecasts.dropna(subset=["actual_close_h7"])
    assert week["made_on"].tolist() == [str(START)] and np.allclose(
        week["actual_close_h7"], week["as_of_h7"].map(closes)
    )
    assert summary["horizon_coverage"]["7"]["closed"] == 1 and summary["horizon_coverage"]["30"]["closed"] == 0
    # Progress: one line per day with the day, the forecasts so far and the reruns so far.
    day_lines = [line for line in replayed["lines"] if line.startswith("replay 20") and "forecasts" in line]
    assert len(day_lines) == len(days) and day_lines[0].startswith(f"replay {START}")
    assert "forecasts 1, reruns 1" in day_lines[0] and "forecasts 8, reruns 1" in day_lines[-1]
    # The schedule is off by default: the one rerun is drift's, nothing was scheduled.
    assert rerun["trigger"] == "drift" and summary["reruns"]["by_trigger"] == {"drift": 1, "schedule": 0}
    assert summary["retrain_every_days"] == 0 and not any("scheduled" in line for line in replayed["lines"])
    # The day-by-day import (each day's new rows) leaves the tables a fresh import cut at the last day gives.
    fresh = Replay(replay.data, START, END, _settings(replayed["data_dir"].parent / "fresh"), RECIPE).work_settings()
    ingest_visible(fresh, replay.data, END)
    build_tables(fresh)
    pd.testing.assert_frame_equal(
        clean, storage.read_parquet(str(Path(data_path(fresh, INTERIM)) / "clean_1d.parquet"))
    )
    # Its own folder: the user's data dir holds no published run, registry or model store of the replay's.
    data_dir: Path = replayed["data_dir"]
    assert not (data_dir / "published.json").exists() and not (data_dir / "models").exists()


def test_the_same_command_continues_and_a_finished_one_gives_the_same_report(replayed: dict) -> None:
    replay: Replay = replayed["replay"]
    before = json.loads((replay.report_dir / "summary.json").read_text())
    forecasts = storage.read_parquet(str(replay.report_dir / "forecasts.parquet"))
    lines: list[str] = []
    Runner(replay, lines.append).run()  # nothing left to do
    assert not lines
    after = json.loads((replay.report_dir / "summary.json").read_text())
    assert after == before
    pd.testing.assert_frame_equal(storage.read_parquet(str(replay.report_dir / "forecasts.parquet")), forecasts)
    longer = Replay(replay.data, START, END + timedelta(days=1), replay.settings, RECIPE)
    Runner(longer, lines.append).run()  # continues from the last finished day: one more day, no new champion run
    assert [line.split(":")[0] for line in lines if "forecasts" in line] == [f"replay {END + timedelta(days=1)}"]
    extended = storage.read_parquet(str(replay.report_dir / "forecasts.parquet"))
    closing = [c for c in forecasts.columns if c.startswith("actual_close_h")]  # longer horizons close later
    pd.testing.assert_frame_equal(
        extended.iloc[: len(forecasts) - 1].drop(columns=closing), forecasts.iloc[:-1].drop(columns=closing)
    )
    # the new day closes the 7-day forecast made a week before it, and only that one
    newly = extended["actual_close_h7"].notna() & forecasts["actual_close_h7"].reindex(extended.index).isna()
    assert extended.loc[newly, "as_of_h7"].tolist() == [str(END + timedelta(days=1))]
    assert not np.isnan(extended["actual_close"].iloc[len(forecasts) - 1])  # yesterday's forecast now closed
    other = Replay(replay.data, START + timedelta(days=1), END, replay.settings, RECIPE)
    with pytest.raises(ReplayError, match="--fresh"):
        Runner(other).run()


def test_the_clock_reads_nothing_after_the_day(replayed: dict, exports: Path, tmp_path: Path) -> None:
    """Later rows changed beyond recognition: the tables and the forecast up to day d do not move."""
    day = START + timedelta(days=3)
    changed = tmp_path / "changed"
    changed.mkdir()
    bars = pd.read_parquet(exports / "btc_usd_hourly.parquet")
    opened = pd.to_datetime(pd.to_numeric(bars["time"]), unit="s", utc=True)
    later = opened >= pd.Timestamp(day + timedelta(days=1), tz="UTC")
    assert later.any()
    for column, factor in (("open", 3.0), ("high", 3.0), ("low", 3.0), ("close", 3.0), ("volumefrom", 10.0)):
        changed_values = pd.to_numeric(bars.loc[later, column]) * factor  # the export keeps numbers as text
        bars.loc[later, column] = changed_values.map(str) if bars[column].dtype == object else changed_values
    bars.to_parquet(changed / "btc_usd_hourly.parquet")

    champion = Champion(replayed["state"].champion_dir)
    results = []
    for name, folder in (("original", exports), ("changed", changed)):
        settings = Replay(folder, START, day, _settings(tmp_path / name), RECIPE).work_settings()
        ingest_visible(settings, folder, day)
        build_tables(settings)
        clean = storage.read_parquet(str(Path(data_path(settings, INTERIM)) / "clean_1d.parquet"))
        features = storage.read_parquet(data_path(settings, FEATURES))
        outcome, served = champion.forecast(champion.request(clean, None), settings)
        results.append((clean, features, outcome, served))
    (clean_a, features_a, outcome_a, served_a), (clean_b, features_b, outcome_b, served_b) = results
    assert clean_a["timestamp"].max().date() == day  # nothing after the day reached a table
    pd.testing.assert_frame_equal(clean_a, clean_b)
    pd.testing.assert_frame_equal(features_a, features_b)
    assert outcome_a.keys() == outcome_b.keys()
    for key, value in outcome_a.items():  # the 1-day figures and every horizon's arrays
        np.testing.assert_array_equal(np.asarray(value), np.asarray(outcome_b[key]), err_msg=key)
    pd.testing.assert_series_equal(served_a, served_b)
    forecasts = storage.read_parquet(str(replayed["replay"].report_dir / "forecasts.parquet"))
    if replayed["state"].champion_changes[-1]["initial"]:  # the replay's own forecast of that day, same champion
        made = forecasts.set_index("made_on").loc[str(day)]
        assert made["predicted_close"] == pytest.approx(outcome_a["predicted_close"])


def test_bad_dates_and_folders_are_clear_errors(tmp_path: Path) -> None:
    from bitpredict.operations.replay import check_data, parse_day

    with pytest.raises(ReplayError, match="--from '2024-13-01'"):
        parse_day("2024-13-01", "--from")
    with pytest.raises(ReplayError, match="not a folder"):
        check_data(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReplayError, match=r"no \.csv or \.parquet"):
        check_data(str(tmp_path / "empty"))
    replay = Replay(tmp_path, START, START - timedelta(days=1), _settings(tmp_path / "data"), RECIPE)
    with pytest.raises(ReplayError, match="before --from"):
        Runner(replay).run()


def test_the_monitoring_page_shows_the_replay(replayed: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BITPREDICT_DATA_DIR", str(replayed["data_dir"]))
    monkeypatch.setenv("BITPREDICT_TRANSFORMER_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("BITPREDICT_PREDICTOR_URL", "http://127.0.0.1:9")
    app = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "ui" / "app.py"), default_timeout=120)
    app.run()
    app.sidebar.radio(key="page").set_value("Monitoring").run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    metrics = {m.label: m.value for m in app.metric}
    summary = json.loads((replayed["replay"].report_dir / "summary.json").read_text())
    assert metrics["Days replayed"] == str(summary["days"])
    assert metrics["Drift episodes / reruns"] == f"{summary['drift_episodes']['count']} / {summary['reruns']['count']}"
    assert len(app.get("image")) == 1  # the replay plot


EVERY = 3  # the initial champion is trained on START − 1, so the calendar reruns on START + 2


@pytest.fixture(scope="module")
def scheduled(exports: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    data_dir = tmp_path_factory.mktemp("scheduled") / "data"
    replay = Replay(
        exports, START, START + timedelta(days=3), _settings(data_dir, NO_DRIFT), RECIPE, retrain_every=EVERY
    )
    lines: list[str] = []
    state = Runner(replay, lines.append).run()
    return {"replay": replay, "state": state, "lines": lines}


def test_the_schedule_reruns_and_a_promoted_model_serves_the_next_day(scheduled: dict) -> None:
    replay: Replay = scheduled["replay"]
    summary = json.loads((replay.report_dir / "summary.json").read_text())
    assert summary["drift_episodes"]["count"] == 0  # checks that cannot fire: the calendar alone reruns
    assert summary["reruns"]["count"] == 1 and summary["reruns"]["by_trigger"] == {"drift": 0, "schedule": 1}
    rerun = summary["reruns"]["runs"][0]
    day = START + timedelta(days=EVERY - 1)  # EVERY days after START − 1, the initial champion's last day
    assert (
        rerun["trigger"] == "schedule"
        and rerun["day"] == str(day)
        and f"--retrain-every {EVERY}" in (rerun["reasons"][0])
    )
    assert summary["retrain_every_days"] == EVERY
    forecasts = storage.read_parquet(str(replay.report_dir / "forecasts.parquet")).set_index("made_on")
    versions = forecasts["model_version"]
    changes = [c for c in summary["champion_changes"] if not c["initial"]]
    if rerun["promoted"]:  # the registry's same-window rule promoted it: it serves from the next day, not before
        assert [(c["serves_from"], c["trigger"], c["version"]) for c in changes] == [
            (str(day + timedelta(days=1)), "schedule", rerun["version"])
        ]
        assert versions[str(day)] == versions[str(START)] != versions[str(day + timedelta(days=1))]
    else:  # not promoted: the initial champion keeps serving
        assert not changes and versions.nunique() == 1
    assert any(line.startswith(f"replay {day}: scheduled rerun") for line in scheduled["lines"])
    day_lines = [line for line in scheduled["lines"] if line.startswith("replay 20") and "forecasts" in line]
    assert "reruns 1 (1 scheduled)" in day_lines[-1]


def test_a_changed_schedule_does_not_continue_the_replay(scheduled: dict) -> None:
    replay: Replay = scheduled["replay"]
    for every in (0, EVERY + 1):
        changed = Replay(replay.data, replay.start, replay.end, replay.settings, RECIPE, retrain_every=every)
        with pytest.raises(ReplayError, match="--fresh"):
            Runner(changed).run()
    lines: list[str] = []
    Runner(replay, lines.append).run()  # the same schedule continues: nothing left to do
    assert not lines
