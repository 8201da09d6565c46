"""The UI's data: headlines (the scores table keeps only ids and scores, so the words come from the raw tables), and
the forecast page's horizons, fan and calibration."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from bitpredict import storage
from bitpredict.config import get_settings
from bitpredict.features.sentiment import news_texts
from bitpredict.pipeline.stage_table import RAW, data_path
from ui import data


def test_headlines_carry_the_words_of_their_raw_rows_newest_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BITPREDICT_DATA_DIR", str(tmp_path / "data"))
    settings = get_settings()
    news = pd.DataFrame(
        {
            "source": ["Wire", "Wire", "Desk"],
            "id": ["a", "b", "c"],
            "published_at": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 09:00", "2024-01-03 08:00"], utc=True),
            "title": ["Old news", "Middle news", "Gone later"],
            "summary": ["", "with a summary", ""],
        }
    )
    texts = news_texts(news, "news_rss")
    scores = texts[["table", "kind", "text_id", "timestamp"]].assign(vader_compound=[0.1, 0.2, 0.3])
    # the newest item's raw row is gone (e.g. a raw table rebuilt): it keeps its score, with no words
    storage.write_parquet(news.iloc[:2], storage.join(data_path(settings, RAW), "news_rss.parquet"))

    shown = data.headlines(settings, scores, count=3)

    assert list(shown["vader_compound"]) == [0.3, 0.2, 0.1]
    assert pd.isna(shown.loc[0, "text"])
    assert shown.loc[1, "text"] == "Middle news. with a summary" and shown.loc[1, "source"] == "Wire"
    assert shown.loc[2, "text"] == "Old news"
    assert len(data.headlines(settings, scores, count=2)) == 2


def test_headlines_without_raw_tables_are_the_scores_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BITPREDICT_DATA_DIR", str(tmp_path / "data"))
    scores = pd.DataFrame(
        {"table": ["tweets"], "kind": ["tweets"], "text_id": ["tweets:1"],
         "timestamp": pd.to_datetime(["2024-01-01"], utc=True), "vader_compound": [0.5]}
    )  # fmt: skip
    shown = data.headlines(get_settings(), scores)
    assert list(shown.columns) == list(scores.columns) and shown["vader_compound"].tolist() == [0.5]


# --- the forecast page (issue 31): the v2 response read shape-aware, the fan between served horizons, calibration


def _levels(forecast: dict) -> dict[float, int]:
    return {round(float(level), 4): i for i, level in enumerate(forecast["horizons"]["levels"])}


def test_parse_forecast_reads_every_horizon_by_shape_and_keeps_the_next_day_scalars() -> None:
    from tests.forecast_response import LEVELS, normal_figures, v2_response

    document = v2_response("2024-11-12", 88_000.0, drift=0.0005, volatility=0.03)
    forecast = data.parse_forecast(document)

    # the next day's figures, as the page showed them before horizons
    assert forecast["as_of"] == "2024-11-13" and forecast["direction"] == 1
    assert forecast["model_version"] == "combination-v3"
    assert forecast["predicted_close"] == pytest.approx(88_000 * math.exp(0.0005))
    assert forecast["lower"] < forecast["predicted_close"] < forecast["upper"]
    assert forecast["parameters"] == {"rows": 200, "sentiment": "none"} and forecast["horizons_missing"] is None
    horizons = forecast["horizons"]
    assert horizons["horizons"].tolist() == [1, 7, 30]
    assert horizons["as_of"] == ["2024-11-13", "2024-11-19", "2024-12-12"]
    assert horizons["quantiles"].shape == (3, 7) and horizons["close_quantiles"].shape == (3, 7)
    # row-major: row = horizon, column = level (a transposed read would put the 30-day median at [1, 4])
    assert horizons["quantiles"][2, LEVELS.index(0.5)] == pytest.approx(30 * 0.0005)
    assert horizons["quantiles"][0, 0] == pytest.approx(NormalDist(0.0005, 0.03).inv_cdf(0.05))
    assert np.allclose(horizons["close_quantiles"], 88_000 * np.exp(horizons["quantiles"]))
    risk = horizons["risk"].set_index("horizon")
    thirty = normal_figures(30, 0.0005, 0.03, 88_000.0)
    assert risk.loc[30, "VaR 95 %"] == pytest.approx(thirty["value_at_risk_95"])
    assert risk.loc[30, "VaR 95 %"] < risk.loc[30, "ES 95 %"] < 1  # the mean loss beyond the VaR is larger
    assert risk.loc[1, "VaR 95 %"] < risk.loc[7, "VaR 95 %"] < risk.loc[30, "VaR 95 %"]
    assert risk.loc[30, "P(rise ≥ 5 %)"] > risk.loc[30, "P(rise ≥ 10 %)"] > risk.loc[1, "P(rise ≥ 10 %)"]
    assert risk.loc[7, "range low (68 %)"] < 88_000 < risk.loc[7, "range high (68 %)"]
    assert risk.loc[1, "date"] == "2024-11-13"


def test_a_response_without_horizons_keeps_the_next_day_and_says_why() -> None:
    from tests.forecast_response import v2_response

    forecast = data.parse_forecast(v2_response("2024-11-12", 88_000.0, with_horizons=False))
    assert forecast["horizons"] is None and "horizon_quantiles" in forecast["horizons_missing"]
    assert forecast["as_of"] == "2024-11-13" and forecast["predicted_close"] > 0
    # a malformed [H, Q] is refused the same way, not drawn wrong
    document = v2_response("2024-11-12", 88_000.0)
    quantiles = next(o for o in document["outputs"] if o["name"] == "horizon_quantiles")
    quantiles["data"], quantiles["shape"] = quantiles["data"][:7], [1, 7]
    broken = data.parse_forecast(document)
    assert broken["horizons"] is None and "shape [1, 7], not [3, 7]" in broken["horizons_missing"]


def test_the_fan_is_exact_for_a_random_walk_and_passes_through_every_served_horizon() -> None:
    from bitpredict.forecast import risk
    from tests.forecast_response import LEVELS, normal_figures, v2_response

    walk = data.parse_forecast(v2_response("2024-11-12", 50_000.0, drift=0.0, volatility=0.04))["horizons"]
    band = risk.fan(walk["horizons"], walk["quantiles"])
    exact = np.array([normal_figures(d, 0.0, 0.04, 1.0)["quantiles"] for d in range(1, 31)])
    assert band.shape == (30, len(LEVELS)) and np.allclose(band, exact)  # √h scaling: no error between horizons

    drifting = data.parse_forecast(v2_response("2024-11-12", 50_000.0, drift=0.002, volatility=0.04))["horizons"]
    frame = data.fan_frame(drifting, pd.Timestamp("2024-11-12", tz="UTC"), 50_000.0)
    assert len(frame) == 31 and frame["date"].iloc[0] == pd.Timestamp("2024-11-12")
    assert frame["date"].iloc[-1] == pd.Timestamp("2024-12-12") and frame["served"].sum() == 3
    assert np.allclose(frame.iloc[0][list(LEVELS)].to_numpy(dtype=float), 50_000.0)  # the fan starts at the close
    served = frame[frame["served"]][list(LEVELS)].to_numpy(dtype=float)
    assert np.allclose(served, drifting["close_quantiles"])
    values = frame[list(LEVELS)].to_numpy(dtype=float)
    assert (np.diff(values, axis=1) >= 0).all()  # the bands never cross
    assert (np.diff(values[:, 0]) < 0).all() and (np.diff(values[:, -1]) > 0).all()  # and widen with the days


def test_forecast_calibration_counts_closed_forecasts_per_horizon(tmp_path: Path) -> None:
    book = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"] * 2, utc=True)[:7],
            "horizon": [1, 1, 1, 1, 7, 7, 7],
            "actual": [0.0, 0.05, -0.05, np.nan, 0.01, np.nan, np.nan],
            "q10": [-0.02] * 4 + [-0.06] * 3,
            "q90": [0.02] * 4 + [0.06] * 3,
        }
    )
    uri = str(tmp_path / "ledger_horizons.parquet")
    storage.write_parquet(book, uri)
    table = data.forecast_calibration(uri).set_index("horizon")
    assert table.loc[1, "closed"] == 3 and table.loc[1, "open"] == 1
    assert table.loc[1, "inside 10–90 %"] == pytest.approx(1 / 3) and table.loc[1, "above q90"] == pytest.approx(1 / 3)
    assert table.loc[7, "closed"] == 1 and table.loc[7, "inside 10–90 %"] == 1.0 and table.loc[7, "open"] == 2

    one_day = str(tmp_path / "ledger.parquet")  # the monitor's 1-day ledger has no horizon column: all of it is h=1
    storage.write_parquet(book[book["horizon"] == 1].drop(columns="horizon"), one_day)
    assert data.forecast_calibration(one_day)["horizon"].tolist() == [1]
    assert data.forecast_calibration(str(tmp_path / "absent.parquet")) is None


def test_calibration_falls_back_to_the_next_day_ledger(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BITPREDICT_DATA_DIR", str(tmp_path / "data"))
    settings = get_settings()
    assert data.calibration(settings) == {"table": None, "source": None, "rolling": None}
    days = pd.date_range("2024-01-01", periods=40, tz="UTC")
    book = pd.DataFrame({"timestamp": days, "actual": np.tile([0.0, 0.05], 20), "q10": -0.02, "q90": 0.02})
    storage.write_parquet(book, settings.path("reports", "drift", "ledger.parquet"))
    found = data.calibration(settings)
    assert found["source"] == "next day" and found["table"]["closed"].tolist() == [40]
    assert found["rolling"] is not None and len(found["rolling"]) == 21  # the 1-day rolling chart stays
    storage.write_parquet(book.assign(horizon=7), settings.path("reports", "drift", "ledger_horizons.parquet"))
    assert data.calibration(settings)["source"] == "horizons"
