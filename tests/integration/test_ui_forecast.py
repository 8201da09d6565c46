"""The Forecast page (issue 31) in a real headless Chromium: the fan chart to 30 days with the risk figures, the
champion and why it won, and the calibration so far — against a stub v2 server on 127.0.0.1 that answers to the
multi-horizon contract (numbers from one normal distribution, ``tests/forecast_response.py``), and against one that
answers the next day only (a server or model before horizons), which the page must survive.

The real served stack is tested by ``test_ui.py``; this test pins what the page draws from the contract.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from bitpredict import storage
from bitpredict.config import load_settings
from bitpredict.pipeline.stage_table import CLEAN, data_path
from tests.fakes.server import FakeServer, Request, Response
from tests.forecast_response import LEVELS, v2_response

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "ui" / "app.py")
ARTIFACTS = REPO / "build" / "test-artifacts" / "screenshots"


@contextmanager
def stub_transformer(with_horizons: bool, model_version: str = "combination-v3") -> Iterator[str]:
    """A v2 ``infer`` endpoint on 127.0.0.1 (the tests' ``FakeServer``) answering for the request's last bar (its day
    and close), ready on the health routes the UI asks."""

    def infer(request: Request) -> Response:
        inputs = {i["name"]: i["data"] for i in json.loads(request.body)["inputs"]}
        last_day = str(pd.Timestamp(inputs["timestamp"][-1], unit="s").date())
        close = float(inputs["close"][-1])
        return Response.json(v2_response(last_day, close, with_horizons=with_horizons, model_version=model_version))

    server = FakeServer()
    server.route("/v2/models/bitpredict/infer", infer)
    for path in ("/v2/health/ready", "/v2/models/bitpredict/ready"):
        server.route(path, lambda _request: Response.json({"ready": True}))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _ledgers(closes: pd.Series, days: pd.Series, horizons: tuple[int, ...]) -> pd.DataFrame:
    """A ledger the monitor could have kept: the last 120 origin days, each horizon's N(0, (3 %)²·h) quantiles,
    closed with the realised log return where its day has come."""
    from statistics import NormalDist

    rows = []
    log_close = np.log(closes.to_numpy())
    for i in range(len(closes) - 120, len(closes)):
        for h in horizons:
            spread = NormalDist(0, 0.03 * h**0.5)
            actual = log_close[i + h] - log_close[i] if i + h < len(closes) else np.nan
            row = {"timestamp": days.iloc[i], "horizon": h, "closes_on": days.iloc[i] + pd.Timedelta(days=h),
                   "actual": actual, "model_version": "3"}  # fmt: skip
            row |= {f"q{round(p * 100):02d}": spread.inv_cdf(p) for p in LEVELS}
            rows.append(row)
    return pd.DataFrame(rows)


def _data_dir(root: Path, clean: pd.DataFrame, horizons_ledger: bool) -> Path:
    """The published state the page reads: the clean bars, the manifest's champion, and the monitor's ledgers."""
    settings = load_settings(data_dir=str(root))
    storage.write_parquet(clean, data_path(settings, CLEAN))
    why = "promoted: pinball 0.0121 vs 0.0126 for the champion, DM p = 0.004 on 180 held-out days"
    champion = {"model": "bitpredict-lstm", "version": 3, "kind": "combination", "why": why}
    manifest = {"run_id": "run-31", "published_at": "2024-11-12T23:00:00Z", "champion": champion}
    storage.write_text(settings.path("published.json"), json.dumps(manifest))
    book = _ledgers(clean["close"], clean["timestamp"], (1, 7, 30))
    drift = settings.path("reports", "drift")
    storage.write_parquet(book[book["horizon"] == 1].drop(columns=["horizon", "closes_on"]),
                          storage.join(drift, "ledger.parquet"))  # fmt: skip
    if horizons_ledger:
        storage.write_parquet(book, storage.join(drift, "ledger_horizons.parquet"))
    return root


@pytest.fixture(scope="module")
def data_dirs(clean_daily: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("forecast-page")
    return {
        "horizons": _data_dir(root / "horizons", clean_daily, horizons_ledger=True),
        "next day": _data_dir(root / "next-day", clean_daily, horizons_ledger=False),
    }


def test_the_manifest_and_the_ledger_paths_are_the_ones_the_ui_reads(data_dirs: dict[str, Path]) -> None:
    from bitpredict.operations.publish import read_manifest
    from ui import data

    settings = load_settings(data_dir=str(data_dirs["horizons"]))
    assert read_manifest(settings)["champion"]["version"] == 3
    found = data.calibration(settings)
    assert found["source"] == "horizons" and found["table"]["horizon"].tolist() == [1, 7, 30]
    assert (found["table"]["closed"] == [120 - 1, 120 - 7, 120 - 30]).all()  # a horizon closes h days later


@pytest.mark.parametrize("with_horizons", [True, False], ids=["horizons", "next-day-only"])
def test_the_forecast_page_renders_in_the_app(
    with_horizons: bool, data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with stub_transformer(with_horizons) as url:
        monkeypatch.setenv("BITPREDICT_DATA_DIR", str(data_dirs["horizons" if with_horizons else "next day"]))
        monkeypatch.setenv("BITPREDICT_TRANSFORMER_URL", url)
        app = AppTest.from_file(APP, default_timeout=60)
        app.run()
        app.sidebar.radio(key="page").set_value("Forecast").run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    text = "\n".join(str(x.value) for x in [*app.markdown, *app.caption, *app.info, *app.subheader])
    assert "Forecast for 2024-11-13" in [s.value for s in app.subheader]
    assert [m.label for m in app.metric] == ["Predicted close", "Direction", "Interval (10–90 %)", "Model version"]
    assert "bitpredict-lstm v3** (combination) — promoted: pinball" in text and "To fix it" not in text
    assert "The forecasts are its quantiles" in text  # the service answers with the champion (combination-v3)
    assert len(app.get("plotly_chart")) == 1
    tables = [t.value for t in app.table]
    if with_horizons:
        risk, calibration = tables
        assert list(risk.columns) == ["1 day", "7 days", "30 days"]
        assert {"VaR 95 %", "ES 95 %", "P(fall ≥ 10 %)", "range (68 %)"} <= set(risk.index)
        assert list(calibration.index) == ["1 day", "7 days", "30 days"] and "interpolated" in text
    else:
        (calibration,) = tables
        assert "Horizons beyond the next day are unavailable" in text and "have not closed yet" in text
        assert list(calibration.index) == ["1 day"]


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (make tools installs it)")
@pytest.mark.parametrize("with_horizons", [True, False], ids=["horizons", "next-day-only"])
def test_a_real_browser_sees_the_fan_chart(with_horizons: bool, data_dirs: dict[str, Path]) -> None:
    """Headless Chromium opens the running app; the screenshot goes to build/test-artifacts/screenshots."""
    from tests.browser import Browser
    from tests.integration.test_serving import _port, _stop, _wait_http

    name = "horizons" if with_horizons else "next day"
    with stub_transformer(with_horizons) as url:
        port = _port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "BITPREDICT_DATA_DIR": str(data_dirs[name]),
               "BITPREDICT_TRANSFORMER_URL": url, "BITPREDICT_PREDICTOR_URL": url}  # fmt: skip
        app = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", APP, "--server.address", "127.0.0.1", "--server.port",
             str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        browser = None
        try:
            _wait_http(f"http://127.0.0.1:{port}/_stcore/health", app, timeout=60)
            browser = Browser(1500, 1750)  # tall enough for the whole page (Streamlit scrolls inside its own view)
            wanted = ["Forecast for 2024-11-13", "Calibration so far"]
            wanted += ["Risk by horizon", "VaR 95 %"] if with_horizons else ["Horizons beyond the next day"]
            text = browser.open(f"http://127.0.0.1:{port}/?page=Forecast", wanted)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = browser.screenshot(ARTIFACTS / f"forecast-{name.replace(' ', '-')}.png")
            assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
            assert "Traceback" not in text and "To fix it" not in text
            assert "bitpredict-lstm v3 (combination) — promoted" in text
            assert browser.count(".js-plotly-plot") == 1
            names = "Array.from(document.querySelector('.js-plotly-plot').data, t => t.name || '')"
            traces = browser.call("Runtime.evaluate", expression=names, returnByValue=True)["result"]["value"]
            if with_horizons:
                assert {"close (last 90 days)", "5%–95%", "10%–90%", "25%–75%", "median", "served horizons"} <= set(
                    traces
                ), traces
                assert browser.count(".js-plotly-plot path.js-fill") >= 3  # the three bands are drawn
                assert "30 days" in text and "interpolated" in text
            else:
                assert traces == ["close (last 90 days)", "next day: median, 10–90 %"], traces
                assert "have not closed yet" in text
        finally:
            try:
                if browser is not None:
                    browser.close()
            finally:
                _stop(app)


def test_a_link_to_the_old_next_day_page_opens_the_forecast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BITPREDICT_DATA_DIR", str(tmp_path / "empty"))
    app = AppTest.from_file(APP, default_timeout=60)
    app.query_params["page"] = "Next day"
    app.run()
    assert app.sidebar.radio(key="page").value == "Forecast" and app.header[0].value == "Forecast"


def test_the_page_says_when_the_service_answers_with_another_model_than_the_champion(
    data_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with stub_transformer(True, model_version="lstm-v2") as url:
        monkeypatch.setenv("BITPREDICT_DATA_DIR", str(data_dirs["horizons"]))
        monkeypatch.setenv("BITPREDICT_TRANSFORMER_URL", url)
        app = AppTest.from_file(APP, default_timeout=60)
        app.query_params["page"] = "Forecast"
        app.run()
    assert not app.exception and not app.error
    assert any("still answers with version lstm-v2" in m.value for m in app.markdown), [m.value for m in app.markdown]
