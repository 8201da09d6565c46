"""The user's path, end to end: exactly the README's commands on a fresh copy of the repo, with short settings.

``make run`` (twice: the second time nothing changed) on the embedded sample — nothing beside the checkout, no
network — then ``make serve``, one v2 request, ``make drift``, then every UI page — with Streamlit's AppTest always,
and in a real headless Chromium when one is installed. Each must show real content from the one published state;
no page may say "To fix it".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMALL = {
    "model": {"lstm_units": [8], "dense_units": 4, "validation_days": 60, "refit_every_days": 30},
    "sentiment": {"finbert": "off"},  # no FinBERT weights here (tests never download)
}
RUN_ARGS = f"--epochs 2 --window 10 --test-days 60 --extra-settings '{json.dumps(SMALL)}'"
PAGES = ("Market", "Forecast", "Model", "Sentiment", "Monitoring")
SAMPLE_DAYS, WARMUP = 1819, 150  # the embedded sample's complete days; the indicators' warm-up


def _fresh_copy(target: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) in a new folder: no data/, no caches."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Checkout:
    """A fresh copy where ``make <target>`` runs as a user would, on the shared venv (never reinstalled)."""

    def __init__(self, root: Path, stamp: Path) -> None:
        self.root = root
        self.make_vars = [f"VENV={REPO / '.venv'}", f"STAMP={stamp}"]
        self.env = {**os.environ, "PYTHONPATH": str(root)}  # the copy's code, also for the console script
        for name in [n for n in self.env if n.startswith("BITPREDICT_") or n in ("MLFLOW_TRACKING_URI", "VERBOSE")]:
            del self.env[name]
        self.env["BITPREDICT_SHARED_DATA"] = str(root / "no-shared-data")  # a stranger's clone has no ../shared

    def make(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", "--no-print-directory", *args, *self.make_vars], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def start(self, *args: str, log: Path) -> subprocess.Popen:
        return subprocess.Popen(["make", "--no-print-directory", *args, *self.make_vars], cwd=self.root,
                                env=self.env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The README's commands, in order, on a fresh copy; yields what each printed, with `make serve` running."""
    base = tmp_path_factory.mktemp("e2e")
    root = _fresh_copy(base / "bitpredict")
    stamp = base / "setup-stamp"
    stamp.touch()  # newer than the copied pyproject and lock: `make` does not reinstall the shared venv
    checkout = Checkout(root, stamp)
    found: dict = {"root": root}
    found["run"] = checkout.make("run", f"RUN_ARGS={RUN_ARGS}")
    assert found["run"].returncode == 0, found["run"].stdout[-3000:] + found["run"].stderr[-3000:]
    found["rerun"] = checkout.make("run", f"RUN_ARGS={RUN_ARGS}")
    assert found["rerun"].returncode == 0, found["rerun"].stdout[-3000:] + found["rerun"].stderr[-3000:]

    port, predictor_port = _port(), _port()
    serve_log = base / "make-serve.log"
    serving = checkout.start("serve", f"PORT={port}", f"PREDICTOR_PORT={predictor_port}", log=serve_log)
    try:
        deadline = time.monotonic() + 240
        while "serving " not in serve_log.read_text():
            assert serving.poll() is None and time.monotonic() < deadline, serve_log.read_text()[-3000:]
            time.sleep(1)
        found["serve"] = serve_log.read_text()
        found["transformer"] = f"http://127.0.0.1:{port}"
        found["predictor"] = f"http://127.0.0.1:{predictor_port}"
        # the documented request (docs/serving.md): the client builds it from the published clean bars, then one POST
        request = subprocess.run([sys.executable, "-m", "inference.client", "data/interim/clean_1d.parquet"],
                                 cwd=root, env=checkout.env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert request.returncode == 0, request.stderr
        found["forecast"] = httpx.post(f"{found['transformer']}/v2/models/bitpredict/infer",
                                       content=request.stdout, headers={"content-type": "application/json"},
                                       timeout=30)  # fmt: skip
        found["drift"] = checkout.make("drift")
        yield found
    finally:
        if serving.poll() is None:
            os.killpg(serving.pid, signal.SIGINT)  # Ctrl-C, as a user stops it
            try:
                serving.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(serving.pid, signal.SIGKILL)
                serving.wait()


def test_make_run_prints_a_line_per_stage_and_publishes_one_state(walked: dict) -> None:
    printed = walked["run"].stdout
    for stage in ("ingest", "clean", "indicators", "sentiment", "merge", "train", "evaluate", "register", "publish"):
        assert f"\n  {stage} " in "\n" + printed, stage
    assert "BitPredict pipeline finished" in printed and "| persistence |" in printed
    assert "data: the embedded sample (data/sample" in printed and "2024-11-12; 0 news, 0 tweets" in printed
    assert "champion: bitpredict-lstm v1 (" in printed
    noise = ("cuInit", "oneDNN", "KFP Executor", "Executing task", "Traceback", "WARNING")
    assert not [n for n in noise if n in printed], printed
    log = Path(printed.split("log: ")[-1].strip())
    assert log.exists() and "Executing task" in log.read_text()  # the full logs are in the file it names

    data = walked["root"] / "data"
    manifest = json.loads((data / "published.json").read_text())
    assert manifest["champion"]["version"] == 1 and manifest["parameters"]["sources"] == "files"
    assert manifest["parameters"]["files_dir"] == str(walked["root"] / "data" / "sample")
    serving = Path(manifest["champion"]["exported_to"])
    assert serving == data / "models" / "serving" / "bitpredict-lstm" / "1" and (serving / "saved_model.pb").exists()
    for published in ("interim/clean_1d.parquet", "interim/sentiment_scores.parquet", "processed/features.json",
                      "reports/evaluation/metrics.json", "models/candidate/bitpredict_model.json"):  # fmt: skip
        assert (data / published).exists(), published
    features = json.loads((data / "processed" / "features.json").read_text())
    assert features["last"].startswith("2024-11-12") and features["rows"] == SAMPLE_DAYS - WARMUP
    metrics = json.loads((data / "reports" / "evaluation" / "metrics.json").read_text())
    assert metrics["days"] == 60 and metrics["best"] in metrics["methods"] and metrics["primary"] == "pinball_mean"


def test_a_rerun_with_nothing_changed_is_a_short_screen(walked: dict) -> None:
    printed = walked["rerun"].stdout
    lines = printed.strip().splitlines()
    assert len(lines) <= 20, printed
    assert sum(" reused " in line for line in lines) >= 6 and "| method |" not in printed
    assert "evaluation unchanged" in printed and "champion: bitpredict-lstm v1 (" in printed


def test_make_serve_says_one_line_after_a_real_request_and_answers(walked: dict) -> None:
    said = [line for line in walked["serve"].splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("serving bitpredict-lstm v1 (")
    assert f"at {walked['transformer']}/v2/models/bitpredict/infer" in said[0]
    assert walked["forecast"].status_code == 200, walked["forecast"].text
    outputs = {o["name"]: o["data"][0] for o in walked["forecast"].json()["outputs"]}
    assert outputs["as_of"] == "2024-11-13" and outputs["lower"] <= outputs["predicted_close"] <= outputs["upper"]


def test_make_drift_checks_the_published_champion(walked: dict) -> None:
    done = walked["drift"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "drift: model v1" in done.stdout and "Traceback" not in done.stderr
    latest = json.loads((walked["root"] / "data" / "reports" / "drift" / "latest.json").read_text())
    assert latest["model_version"] == "1"
    if latest["triggered"]:  # a replay of the last run through the same runner: recorded with its outcome
        assert latest["rerun"]["ok"] and latest["rerun"]["mode"] == "local", latest["rerun"]


def _app_text(app) -> str:  # type: ignore[no-untyped-def]
    parts = [m.value for m in app.markdown] + [i.value for i in app.info] + [e.value for e in app.error]
    parts += [str(m.label) + str(m.value) for m in app.metric] + [c.value for c in app.caption]
    parts += [h.value for h in app.header] + [h.value for h in app.subheader] + [s.value for s in app.success]
    return "\n".join(str(p) for p in parts)


WANTED = {
    "Market": "Last bar 2024-11-12",
    "Forecast": "Forecast for 2024-11-13",
    "Model": "bitpredict-lstm v1",
    "Sentiment": "This data has no news or tweets",  # the embedded sample has prices only: the page says so
    "Monitoring": "Columns drifted",
}


@pytest.mark.parametrize("page", PAGES)
def test_every_ui_page_shows_the_published_state(walked: dict, page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BITPREDICT_DATA_DIR", str(walked["root"] / "data"))
    monkeypatch.setenv("BITPREDICT_TRANSFORMER_URL", walked["transformer"])
    monkeypatch.setenv("BITPREDICT_PREDICTOR_URL", walked["predictor"])
    app = AppTest.from_file(str(walked["root"] / "ui" / "app.py"), default_timeout=120)
    app.run()
    app.sidebar.radio(key="page").set_value(page).run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    text = _app_text(app)
    assert "To fix it" not in text and WANTED[page] in text, text


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (make tools installs it)")
def test_a_real_browser_finds_content_on_every_page(walked: dict, tmp_path: Path) -> None:
    from tests.browser import Browser

    port = _port()
    env = {
        **os.environ,
        "PYTHONPATH": str(walked["root"]),
        "BITPREDICT_DATA_DIR": str(walked["root"] / "data"),
        "BITPREDICT_TRANSFORMER_URL": walked["transformer"],
        "BITPREDICT_PREDICTOR_URL": walked["predictor"],
    }
    app = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(walked["root"] / "ui" / "app.py"), "--server.address",
         "127.0.0.1", "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    browser = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and app.poll() is None
            time.sleep(0.5)
        browser = Browser()
        for page, wanted in WANTED.items():
            text = browser.open(f"http://127.0.0.1:{port}/?page={page.replace(' ', '%20')}", [wanted])
            assert "To fix it" not in text and "Traceback" not in text, page
            browser.screenshot(tmp_path / f"{page.lower().replace(' ', '-')}.png")
    finally:
        try:
            if browser is not None:
                browser.close()
        finally:
            os.killpg(app.pid, signal.SIGTERM)  # even when the browser fails to close
            app.wait(timeout=30)
