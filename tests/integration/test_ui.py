"""The Streamlit UI: every page renders with real data and running services, and with nothing at all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")
PAGES = ("Market", "Forecast", "Model", "Sentiment", "Monitoring")


def _run(page: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    app.sidebar.radio(key="page").set_value(page).run()
    return app


def _text(app: AppTest) -> str:
    parts = [m.value for m in app.markdown] + [i.value for i in app.info] + [e.value for e in app.error]
    parts += [str(m.label) + str(m.value) for m in app.metric] + [c.value for c in app.caption]
    parts += [h.value for h in app.header] + [h.value for h in app.subheader]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_explains_what_is_missing_without_services_or_data(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITPREDICT_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("BITPREDICT_TRANSFORMER_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("BITPREDICT_PREDICTOR_URL", "http://127.0.0.1:9")
    app = _run(page)
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    text = _text(app)
    assert "To fix it, run" in text or page == "Monitoring", text
    if page == "Monitoring":
        table = app.dataframe[0].value
        services = table.set_index("service")
        assert (services.loc[["transformer", "predictor"], "fix"] == "make serve").all()
        assert services.loc["transformer", "state"].startswith("down")


@pytest.fixture(scope="module")
def live(sample_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A data dir after a (short) real pipeline run, a drift check, and the model served on 127.0.0.1."""
    from bitpredict.config import load_settings
    from bitpredict.data.clean import run_clean
    from bitpredict.evaluation.evaluate import run_evaluate
    from bitpredict.features.indicators import run_indicators
    from bitpredict.features.merge import run_merge
    from bitpredict.features.sentiment import run_sentiment
    from bitpredict.forecast.train import candidate_dir, run_train
    from bitpredict.operations.drift_check import run_drift
    from bitpredict.operations.registry import register
    from tests.conftest import copy_data_dir
    from tests.integration.test_serving import _port, _start, _stop, _wait_ready

    root = tmp_path_factory.mktemp("ui")
    data_dir = copy_data_dir(sample_raw_dir, root / "data")
    model = {"window": 10, "lstm_units": [8], "dense_units": 4, "epochs": 1, "validation_days": 60,
             "test_days": 60, "refit_every_days": 30}  # fmt: skip
    settings = load_settings(data_dir=str(data_dir), model=model, sentiment={"finbert": "off"})
    run_clean(settings, "1d")
    run_indicators(settings)
    run_sentiment(settings)
    run_merge(settings)
    run_train(settings)
    run_evaluate(settings)
    register(settings)
    candidate = candidate_dir(settings)
    run_drift(settings, candidate, None)
    p_http, t_http = _port(), _port()
    predictor = _start(["-m", "inference.predictor", "--model_dir", candidate, "--host", "127.0.0.1",
                        "--http_port", str(p_http), "--grpc_port", str(_port())], root / "predictor.log")  # fmt: skip
    transformer = _start(["-m", "inference.transformer", "--model_uri", candidate, "--host", "127.0.0.1",
                          "--predictor_host", f"127.0.0.1:{p_http}", "--http_port", str(t_http),
                          "--grpc_port", str(_port())], root / "transformer.log")  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{p_http}", predictor, root / "predictor.log")
        _wait_ready(f"http://127.0.0.1:{t_http}", transformer, root / "transformer.log")
        yield {
            "BITPREDICT_DATA_DIR": str(data_dir),
            "BITPREDICT_TRANSFORMER_URL": f"http://127.0.0.1:{t_http}",
            "BITPREDICT_PREDICTOR_URL": f"http://127.0.0.1:{p_http}",
        }
    finally:
        _stop(transformer)
        _stop(predictor)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_real_data_and_running_services(
    page: str, live: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in live.items():
        monkeypatch.setenv(name, value)
    app = _run(page)
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    text = _text(app)
    if page != "Monitoring":
        assert "To fix it" not in text, text
    charts = app.get("plotly_chart")
    if page == "Market":
        assert len(charts) == 1 and "Last bar 2024-11-12" in text
    if page == "Forecast":  # the fan chart and the risk figures against the contract: test_ui_forecast.py
        assert "Predicted close" in text and "Forecast for 2024-11-13" in text and len(charts) == 1
    if page == "Model":
        assert "| persistence |" in text and app.dataframe[0].value["version"].tolist() == [1]
    if page == "Sentiment":
        assert len(charts) == 1 and len(app.dataframe[0].value) == 20
    if page == "Monitoring":
        states = app.dataframe[0].value.set_index("service")["state"]
        assert states["transformer"] == "ready" and states["predictor"] == "ready"
        assert "Columns drifted" in text


ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "screenshots"
WAIT_FOR = {
    "Market": ["Last bar 2024-11-12"],
    "Forecast": ["Predicted close", "Forecast for 2024-11-13", "Calibration so far"],
    "Model": ["Walk-forward evaluation", "persistence"],
    "Sentiment": ["Latest headlines"],
    "Monitoring": ["Columns drifted", "Services"],  # the services table is drawn on a canvas, not as text
}


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (make tools installs it)")
def test_a_real_browser_sees_the_chart_and_the_forecast(live: dict[str, str]) -> None:
    """Headless Chromium opens the running app on 127.0.0.1; screenshots of every page go to build/test-artifacts."""
    from tests.browser import Browser
    from tests.integration.test_serving import _port, _stop, _wait_http

    port = _port()
    env = {**os.environ, **live, "PYTHONPATH": str(Path(APP).parents[1])}
    app = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", APP, "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    browser = None
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", app, timeout=60)
        browser = Browser()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for page, wanted in WAIT_FOR.items():
            text = browser.open(f"http://127.0.0.1:{port}/?page={page.replace(' ', '%20')}", wanted)
            shot = browser.screenshot(ARTIFACTS / f"{page.lower().replace(' ', '-')}.png")
            assert shot.stat().st_size > 20_000, page  # a rendered page, not a blank one
            assert "Traceback" not in text and "To fix it" not in text, page
            if page in ("Market", "Forecast", "Sentiment"):
                assert browser.count(".js-plotly-plot") == 1, page
        assert len(list(ARTIFACTS.glob("*.png"))) >= 5
    finally:
        try:
            if browser is not None:
                browser.close()
        finally:
            _stop(app)  # even when the browser fails to close: a test stops what it started
