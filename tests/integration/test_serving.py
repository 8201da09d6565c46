"""Serving: the transformer and the predictor as real KServe servers on 127.0.0.1, v2 REST and gRPC."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitpredict.config import ModelSettings
from bitpredict.features.indicators import WARMUP, compute_indicators
from bitpredict.features.merge import build_features, labelled
from bitpredict.forecast.artifact import locate
from bitpredict.forecast.dataset import model_input_columns
from bitpredict.forecast.serving import HORIZON_OUTPUTS, ModelSpec, feature_window, forecast, parse_request
from bitpredict.forecast.train import export, fit_recipe, metadata
from bitpredict.operations.request_log import read_log
from inference.client import predict_grpc, predict_rest, v2_request
from tests.fakes.tfserving import FakeTFServing

REPO = Path(__file__).resolve().parents[2]
TINY = {"window": 10, "lstm_units": [8], "dense_units": 4, "epochs": 1, "validation_days": 60}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    model_dir: Path
    rest: str
    grpc: str
    predictor_rest: str
    predictor_grpc: str
    request_log: Path
    bars: pd.DataFrame
    trained: object


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"server not ready: {log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def model_dir(clean_daily: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A small model trained on the real daily data and exported as the pipeline exports it."""
    frame = labelled(build_features(compute_indicators(clean_daily), None, WARMUP))
    columns = model_input_columns(frame.columns)
    config = ModelSettings(**TINY)
    trained = fit_recipe(frame, columns, config, end=len(frame))
    directory = tmp_path_factory.mktemp("model") / "candidate"
    export(trained, directory, metadata(trained, config))
    return directory, trained


@pytest.fixture(scope="module")
def served(model_dir: tuple[Path, object], clean_daily: pd.DataFrame, tmp_path_factory) -> Iterator[Served]:
    directory, trained = model_dir
    logs = tmp_path_factory.mktemp("logs")
    request_log = logs / "requests"
    extra = ["--request_log", str(request_log), "--request_log_flush_s", "0.5", "--max_rows", "400"]
    with _servers(directory, logs, extra) as (rest, grpc, predictor_rest, predictor_grpc):
        bars = clean_daily.tail(200).reset_index(drop=True)
        yield Served(directory, rest, grpc, predictor_rest, predictor_grpc, request_log, bars, trained)


@contextlib.contextmanager
def _servers(model: Path, logs: Path, transformer_args: list[str] = ()) -> Iterator[tuple[str, str, str, str]]:
    """The real predictor and transformer on 127.0.0.1 for ``model`` (transformer → predictor over v2 REST):
    (transformer REST, transformer gRPC, predictor REST, predictor gRPC)."""
    p_http, p_grpc, t_http, t_grpc = _port(), _port(), _port(), _port()
    predictor = _start(
        ["-m", "inference.predictor", "--model_dir", str(model), "--host", "127.0.0.1",
         "--http_port", str(p_http), "--grpc_port", str(p_grpc)],
        logs / "predictor.log",
    )  # fmt: skip
    transformer = _start(
        ["-m", "inference.transformer", "--model_uri", str(model), "--predictor_host", f"127.0.0.1:{p_http}",
         "--host", "127.0.0.1", "--http_port", str(t_http), "--grpc_port", str(t_grpc), *transformer_args],
        logs / "transformer.log",
    )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{p_http}", predictor, logs / "predictor.log")
        _wait_ready(f"http://127.0.0.1:{t_http}", transformer, logs / "transformer.log")
        yield f"http://127.0.0.1:{t_http}", f"127.0.0.1:{t_grpc}", f"http://127.0.0.1:{p_http}", f"127.0.0.1:{p_grpc}"
    finally:
        _stop(transformer)
        _stop(predictor)


def _in_process(served: Served, bars: pd.DataFrame) -> dict:
    located = locate(str(served.model_dir))
    spec = ModelSpec.from_metadata(located.metadata, located.version)
    window = feature_window(parse_request(_typed(v2_request(bars)), spec), spec)
    quantiles = served.trained.model.predict(window, verbose=0)["quantiles"]
    return forecast(quantiles[0], bars, spec)


def _typed(body: dict) -> dict:
    return {t["name"]: (t["datatype"], np.asarray(t["data"])) for t in body["inputs"]}


def test_rest_and_grpc_give_the_in_process_forecast(served: Served) -> None:
    rest = predict_rest(served.rest, served.bars)
    expected = _in_process(served, served.bars)
    assert rest["predicted_log_return"] == pytest.approx(expected["predicted_log_return"], abs=1e-6)
    assert rest["predicted_close"] == pytest.approx(expected["predicted_close"], rel=1e-6)
    assert rest["lower"] <= rest["predicted_close"] <= rest["upper"]
    assert rest["as_of"] == "2024-11-13" and rest["direction"] == int(np.sign(rest["predicted_log_return"]))
    assert rest["parameters"]["sentiment"].startswith("neutral default")
    raw = httpx.post(f"{served.rest}/v2/models/bitpredict/infer", json=v2_request(served.bars), timeout=10).json()
    assert raw["model_version"] == rest["model_version"] == expected["model_version"]  # e.g. "lstm-<run id>"
    assert raw["model_version"].startswith("lstm-") and raw["parameters"]["model_kind"] == "lstm"
    grpc_result = predict_grpc(served.grpc, served.bars)
    for key in ("predicted_log_return", "predicted_close", "lower", "upper", "direction", "as_of", "model_version"):
        assert (
            grpc_result[key] == pytest.approx(rest[key])
            if isinstance(rest[key], float)
            else grpc_result[key] == rest[key]
        )
    # ISO-8601 timestamps work as well as unix seconds
    body = v2_request(served.bars)
    body["inputs"][0] = {"name": "timestamp", "shape": [200], "datatype": "BYTES",
                         "data": [d.date().isoformat() for d in served.bars["timestamp"]]}  # fmt: skip
    iso = httpx.post(f"{served.rest}/v2/models/bitpredict/infer", json=body, timeout=10)
    assert iso.status_code == 200 and iso.json()["outputs"][0]["data"][0] == pytest.approx(rest["predicted_log_return"])


def _mutate(body: dict, name: str, edit) -> dict:
    for tensor in body["inputs"]:
        if tensor["name"] == name:
            edit(tensor)
    return body


CASES = {
    "missing input": (lambda b: {"inputs": [t for t in b["inputs"] if t["name"] != "volume"]}, "volume"),
    "extra input": (lambda b: {"inputs": [*b["inputs"], {**b["inputs"][1], "name": "foo"}]}, "foo"),
    "unequal lengths": (lambda b: _mutate(b, "open", lambda t: t.update(data=t["data"][:-1], shape=[199])), "length"),
    "wrong datatype": (lambda b: _mutate(b, "close", lambda t: t.update(datatype="INT64", data=[1] * 200)), "close"),
    "nan": (lambda b: _mutate(b, "high", lambda t: t["data"].__setitem__(3, "NaN")), "high"),
    "non-positive price": (lambda b: _mutate(b, "low", lambda t: t["data"].__setitem__(7, 0.0)), "low"),
    "high below low": (lambda b: _mutate(b, "high", lambda t: t["data"].__setitem__(9, 1.0)), "high"),
    "not increasing": (lambda b: _mutate(b, "timestamp", lambda t: t["data"].reverse()), "timestamp"),
    "gap": (
        lambda b: _mutate(b, "timestamp", lambda t: t["data"].__setitem__(150, t["data"][150] + 3600)),
        "timestamp",
    ),
    "too few rows": (
        lambda b: {"inputs": [{**t, "data": t["data"][-50:], "shape": [50]} for t in b["inputs"]]},
        "at least 160",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_requests_are_400_with_a_message_naming_the_input(served: Served, case: str) -> None:
    edit, needle = CASES[case]
    response = httpx.post(f"{served.rest}/v2/models/bitpredict/infer", json=edit(v2_request(served.bars)), timeout=10)
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]


def test_too_many_rows_unknown_model_and_metadata(served: Served, clean_daily: pd.DataFrame) -> None:
    big = v2_request(clean_daily.tail(401))
    response = httpx.post(f"{served.rest}/v2/models/bitpredict/infer", json=big, timeout=10)
    assert response.status_code == 400 and "at most 400" in response.json()["error"]
    year = predict_rest(served.rest, clean_daily.tail(365))  # a year of history is always accepted
    assert year["as_of"] == "2024-11-13"
    missing = httpx.post(f"{served.rest}/v2/models/nope/infer", json=v2_request(served.bars), timeout=10)
    assert missing.status_code == 404
    meta = httpx.get(f"{served.rest}/v2/models/bitpredict", timeout=5).json()
    assert {i["name"] for i in meta["inputs"]} >= {"timestamp", "open", "high", "low", "close", "volume"}
    assert {o["name"] for o in meta["outputs"]} == {
        "predicted_log_return", "predicted_close", "direction", "lower", "upper", "as_of", "model_version",
        "predicted_volatility", "lower_90", "upper_90",  # optional: only models with the levels 0.05 … 0.95 give them
        *(name for name, _, _ in HORIZON_OUTPUTS),  # the horizon axis (issue 31): every model since it
    }  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda v: __import__("json").dumps({"inputs": v}).encode()),
        st.builds(
            lambda name, dtype, shape, data: (
                __import__("json")
                .dumps({"inputs": [{"name": name, "datatype": dtype, "shape": shape, "data": data}]})
                .encode()
            ),
            st.sampled_from(["timestamp", "close", "features", ""]),
            st.sampled_from(["FP64", "INT64", "BYTES", "FP32", "BOOL", "XX"]),
            st.lists(st.integers(min_value=-2, max_value=5), max_size=3),
            st.lists(st.one_of(st.floats(), st.integers(), st.text(max_size=3)), max_size=6),
        ),
    )
)
def test_fuzzed_requests_never_give_a_5xx(served: Served, body: bytes) -> None:
    response = httpx.post(
        f"{served.rest}/v2/models/bitpredict/infer",
        content=body,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text, body[:200])


def _tensor(data: object, name: str = "close", datatype: str = "FP64", shape: list | None = None) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape or [1], "data": data}


PATHOLOGICAL = {
    "array nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "object nested 5,000 deep": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "inputs nested 3,000 deep": b'{"inputs":' + b"[" * 3_000 + b"]" * 3_000 + b"}",
    "data nested 2,000 deep": json.dumps({"inputs": [_tensor(0)]}).replace("0", "[" * 2_000 + "0" + "]" * 2_000),
    "number beyond the float range": json.dumps({"inputs": [_tensor([1.0])]}).replace("1.0", "1e400"),
    "duplicate keys": b'{"inputs": [], "inputs": [{"name": "close"}]}',
    "invalid UTF-8": b'{"inputs": [{"name": "\xff\xfe"}]}',
    "a 1 MB string in a BYTES input": json.dumps({"inputs": [_tensor(["x" * 1_000_000], "timestamp", "BYTES")]}),
    "5,000 inputs": json.dumps({"inputs": [_tensor([1.0], f"in{i}") for i in range(5_000)]}),
    "shape that disagrees with data": json.dumps({"inputs": [_tensor([1.0, 2.0], shape=[7, 3])]}),
}


@pytest.mark.parametrize("body", list(PATHOLOGICAL.values()), ids=list(PATHOLOGICAL))
def test_pathological_bodies_get_a_4xx_never_a_5xx(served: Served, body: bytes | str) -> None:
    response = httpx.post(
        f"{served.rest}/v2/models/bitpredict/infer",
        content=body.encode() if isinstance(body, str) else body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert httpx.get(f"{served.rest}/v2/health/live", timeout=5).status_code == 200  # and the server lives on


def test_metrics_and_the_request_log(served: Served) -> None:
    predict_rest(served.rest, served.bars)
    httpx.post(f"{served.rest}/v2/models/bitpredict/infer", json={"inputs": []}, timeout=10)
    text = httpx.get(f"{served.rest}/metrics", timeout=5).text
    assert 'bitpredict_predictions_total{direction="' in text
    assert "bitpredict_rejected_requests_total{reason=" in text
    assert "bitpredict_model_info{" in text and "request_predict_seconds" in text
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and read_log(str(served.request_log)).empty:
        time.sleep(0.3)
    logged = read_log(str(served.request_log))
    assert not logged.empty and {"request_id", "predicted_close", "bars", "model_version"} <= set(logged.columns)
    assert (logged["rows"] >= 160).all()


def test_the_tfserving_grpc_path_gives_the_same_forecast(served: Served, tmp_path: Path) -> None:
    located = locate(str(served.model_dir))
    tfserving = FakeTFServing("bitpredict", located.saved_model_dir).start()
    http, grpc_port = _port(), _port()
    log = tmp_path / "transformer-tfserving.log"
    transformer = _start(
        ["-m", "inference.transformer", "--model_uri", str(served.model_dir), "--predictor_host", tfserving.target,
         "--predictor_runtime", "tfserving", "--host", "127.0.0.1", "--http_port", str(http),
         "--grpc_port", str(grpc_port)],
        log,
    )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{http}", transformer, log)
        via_tfserving = predict_rest(f"http://127.0.0.1:{http}", served.bars)
        assert tfserving.service.requests == 1
        direct = predict_rest(served.rest, served.bars)
        assert via_tfserving["predicted_log_return"] == pytest.approx(direct["predicted_log_return"], abs=1e-7)
    finally:
        _stop(transformer)
        tfserving.stop()


def _wait_live(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"server not live: {log.read_text()[-3000:]}")


def _late_predictor(model_dir: Path, http_port: int, log: Path, tries: int = 3) -> subprocess.Popen:
    """The predictor on ``http_port`` (the port the transformer was told), with any free gRPC port — started again
    on another one when something took the port between ``_port()`` and the bind (seen once in CI: the OS hands
    the same ephemeral range to outgoing connections)."""
    for _ in range(tries):
        process = _start(["-m", "inference.predictor", "--model_dir", str(model_dir), "--host", "127.0.0.1",
                          "--http_port", str(http_port), "--grpc_port", str(_port())], log)  # fmt: skip
        deadline = time.monotonic() + 90
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/v2/health/live", timeout=1).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        if process.poll() is None or "Failed to bind" not in log.read_text():
            return process  # alive but slow, or failed for another reason: the readiness wait reports it
    pytest.fail(f"the predictor could not bind a port in {tries} tries: {log.read_text()[-2000:]}")


def test_the_transformer_is_not_ready_while_its_predictor_is_down(served: Served, tmp_path: Path) -> None:
    """Readiness follows the predictor: down → 503 on the ready routes and on requests; up → ready."""
    http, grpc_port, predictor_port = _port(), _port(), _port()
    log = tmp_path / "transformer-orphan.log"
    transformer = _start(
        ["-m", "inference.transformer", "--model_uri", str(served.model_dir), "--predictor_host",
         f"127.0.0.1:{predictor_port}", "--host", "127.0.0.1", "--http_port", str(http), "--grpc_port", str(grpc_port)],
        log,
    )  # fmt: skip
    predictor = None
    url = f"http://127.0.0.1:{http}"
    try:
        _wait_live(url, transformer, log)
        for route in ("/v2/health/ready", "/v2/models/bitpredict/ready"):
            reply = httpx.get(url + route, timeout=5)
            assert reply.status_code == 503 and "predictor" in reply.json()["error"], route
        response = httpx.post(f"{url}/v2/models/bitpredict/infer", json=v2_request(served.bars), timeout=10)
        body = response.json()  # generic to the client (issue 29): no predictor host, no gRPC detail, a request id
        assert response.status_code == 503 and body["error"] == "the model is not available right now; retry later"
        assert body["request_id"] == response.headers["x-request-id"] and response.headers["retry-after"]
        assert str(predictor_port) not in response.text and "127.0.0.1" not in response.text
        predictor = _late_predictor(served.model_dir, predictor_port, tmp_path / "late-predictor.log")
        _wait_ready(url, transformer, log)  # ready only once the predictor is
        assert httpx.get(f"http://127.0.0.1:{predictor_port}/v2/health/ready", timeout=5).status_code == 200
        assert predict_rest(url, served.bars)["as_of"] == "2024-11-13"
    finally:
        _stop(transformer)
        if predictor is not None:
            _stop(predictor)


def test_the_predictor_metadata_names_the_model_tensors(served: Served) -> None:
    meta = httpx.get(f"{served.predictor_rest}/v2/models/bitpredict", timeout=5).json()
    window, features = TINY["window"], len(locate(str(served.model_dir)).metadata["feature_columns"])
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, window, features]}]
    levels = len(locate(str(served.model_dir)).metadata["quantiles"])  # 7 since the champion-on-evidence change
    assert levels == 7
    horizons = len(locate(str(served.model_dir)).metadata["horizons"])  # 1, 7, 30 days since issue 31
    assert meta["outputs"] == [
        {"name": "quantiles", "datatype": "FP32", "shape": [-1, levels]},
        {"name": "horizon_quantiles", "datatype": "FP32", "shape": [-1, horizons, levels]},
        {"name": "attention", "datatype": "FP32", "shape": [-1, window]},
    ]


@pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("prometheus-pushgateway")),
    reason="Debian's prometheus and prometheus-pushgateway are not installed (.ci/run installs them)",
)
def test_a_real_prometheus_scrapes_the_transformer_and_the_drift_gauges(served: Served, tmp_path: Path) -> None:
    """Prometheus on 127.0.0.1 scrapes the running transformer and a Pushgateway the drift job pushed to."""
    from bitpredict.config import load_settings
    from bitpredict.operations.monitor import Decision, DriftResult, DriftState
    from bitpredict.operations.monitor_report import export_metrics

    gateway_port, prom_port = _port(), _port()
    gateway = _start_binary(
        ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{gateway_port}"], tmp_path / "gw.log"
    )
    transformer_target = served.rest.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: bitpredict-transformer\n    static_configs: [{{targets: ['{transformer_target}']}}]\n"
        f"  - job_name: pushgateway\n    honor_labels: true\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{gateway_port}']}}]\n"
    )
    prometheus = _start_binary(
        ["prometheus", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{prom_port}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}"],
        tmp_path / "prometheus.log",
    )  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{gateway_port}/-/ready", gateway)
        settings = load_settings(
            data_dir=str(tmp_path / "data"), drift={"pushgateway_url": f"127.0.0.1:{gateway_port}"}
        )
        result = DriftResult(0.75, ["log_return_1"], {"log_return_1": {"score": 0.001, "method": "ks"}}, 100, 60)
        state = DriftState(last_check_at="2026-01-01T00:00:00+00:00")
        export_metrics(result, Decision(True, True, ["x"]), state, settings, {"calibration_broken": True})
        predict_rest(served.rest, served.bars)
        _wait_http(f"http://127.0.0.1:{prom_port}/-/ready", prometheus)
        wanted = {
            'up{job="bitpredict-transformer"}': 1.0,
            "bitpredict_drift_share": 0.75,
            "bitpredict_monitor_calibration_broken": 1.0,
            "sum(bitpredict_predictions_total)": None,
        }
        found: dict[str, float] = {}
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and len(found) < len(wanted):
            for query in wanted:
                reply = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": query}, timeout=5)
                data = reply.json()["data"]["result"]
                if data:
                    found[query] = float(data[0]["value"][1])
            time.sleep(1)
        assert set(found) == set(wanted), found
        for query, value in wanted.items():
            assert value is None or found[query] == pytest.approx(value), query
        assert found["sum(bitpredict_predictions_total)"] >= 1
    finally:
        _stop(prometheus)
        _stop(gateway)


def _start_binary(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_http(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args[0]} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} not ready")


def test_a_baseline_export_is_served_by_the_real_servers_as_evaluated(
    clean_daily: pd.DataFrame, tmp_path: Path
) -> None:
    """The HAR baseline, exported in the model store's layout (``<name>/<version>/saved_model.pb``), behind the
    real predictor and transformer: each day's served quantiles are the ones the walk-forward scored."""
    import json
    import shutil

    from bitpredict.features.columns import TARGET
    from bitpredict.forecast import baselines
    from bitpredict.forecast.artifact import METADATA_FILE, SAVED_MODEL_DIR
    from bitpredict.forecast.train import baseline_metadata

    frame = build_features(compute_indicators(clean_daily), None, WARMUP)
    frame = frame[frame[TARGET].notna()].reset_index(drop=True)
    fit = baselines.fit_baseline("har", frame, len(frame) - 40, (0.1, 0.5, 0.9), 30)
    exported = baselines.export(fit, tmp_path / "export")
    version = tmp_path / "store" / "bitpredict-lstm" / "3"
    shutil.copytree(exported / SAVED_MODEL_DIR, version)
    (version / METADATA_FILE).write_text(json.dumps(baseline_metadata(fit, ModelSettings(window=30))))

    with _servers(version.parent, tmp_path) as (rest, _, predictor_rest, _):
        metadata = httpx.get(f"{predictor_rest}/v2/models/bitpredict", timeout=5).json()
        assert metadata["inputs"][0]["shape"] == [-1, 30, 3]  # the HAR export reads three columns
        for t in (len(frame) - 40, len(frame) - 13, len(frame) - 1):
            day = frame["timestamp"].iloc[t]
            bars = clean_daily[clean_daily["timestamp"] <= day].tail(200).reset_index(drop=True)
            served = predict_rest(rest, bars)
            quantiles, _ = baselines.predict(fit, frame, np.array([t]))
            close = float(bars["close"].iloc[-1])
            assert served["model_version"] == "har-v3" and served["direction"] == 0
            assert served["predicted_close"] == pytest.approx(close, rel=1e-9)  # the median is persistence
            assert served["lower"] == pytest.approx(close * np.exp(quantiles[0, 0]), rel=1e-5)
            assert served["upper"] == pytest.approx(close * np.exp(quantiles[0, -1]), rel=1e-5)


def test_the_combination_is_served_as_evaluated_with_volatility_and_live_calibration(
    clean_daily: pd.DataFrame, tmp_path: Path
) -> None:
    """The combination (one SavedModel calling its four members) behind the real servers: the served quantiles
    are the walk-forward's, with ``predicted_volatility`` and the 90 % interval; given the monitor's ACI state
    for this version, the transformer serves the quantiles at the live levels and says which."""
    import json
    import shutil

    from bitpredict.evaluation.calibration import AciState, apply_levels
    from bitpredict.features.columns import TARGET
    from bitpredict.forecast import baselines, combination
    from bitpredict.forecast.artifact import METADATA_FILE, SAVED_MODEL_DIR
    from bitpredict.forecast.train import baseline_metadata

    config = ModelSettings(window=30)
    levels = tuple(config.quantiles)
    frame = build_features(compute_indicators(clean_daily), None, WARMUP)
    frame = frame[frame[TARGET].notna()].reset_index(drop=True)
    fit = combination.combine(config.combination, frame, len(frame) - 40, levels, 30)
    exported = baselines.export(fit, tmp_path / "export")
    version = tmp_path / "store" / "bitpredict-lstm" / "4"
    shutil.copytree(exported / SAVED_MODEL_DIR, version)
    (version / METADATA_FILE).write_text(json.dumps(baseline_metadata(fit, config)))
    t = len(frame) - 13
    day = frame["timestamp"].iloc[t]
    bars = clean_daily[clean_daily["timestamp"] <= day].tail(200).reset_index(drop=True)
    quantiles, _ = baselines.predict(fit, frame, np.array([t]))
    close = float(bars["close"].iloc[-1])
    members = np.mean([np.sort(baselines.predict(m, frame, np.array([t]))[0], axis=1) for m in fit.members], axis=0)
    np.testing.assert_allclose(quantiles, members, rtol=1e-5)  # the graph is the members' average

    (tmp_path / "nominal").mkdir()
    (tmp_path / "aci").mkdir()
    with _servers(version.parent, tmp_path / "nominal") as (rest, _, _, _):
        served = predict_rest(rest, bars)
    assert served["model_version"] == "combo-v4"
    assert served["lower"] == pytest.approx(close * np.exp(quantiles[0, levels.index(0.1)]), rel=1e-5)
    assert served["upper_90"] == pytest.approx(close * np.exp(quantiles[0, levels.index(0.95)]), rel=1e-5)
    sigma = (quantiles[0, levels.index(0.9)] - quantiles[0, levels.index(0.1)]) / 2.5631031310892007
    assert served["predicted_volatility"] == pytest.approx(sigma, rel=1e-5)

    state = AciState.start(levels, 0.01)
    state = AciState(
        state.targets, tuple(t * 0.6 if t < 0.5 else 1 - (1 - t) * 0.6 for t in state.targets), state.gamma, 40
    )  # fmt: skip  (a monitor that saw too many misses: wider bands)
    calibration = tmp_path / "aci.json"
    calibration.write_text(json.dumps({"model_version": "4", "aci": json.loads(state.to_json())}))
    with _servers(version.parent, tmp_path / "aci", ["--calibration", str(calibration)]) as (rest, _, _, _):
        adjusted = predict_rest(rest, bars)
    expected = apply_levels(quantiles, levels, state)
    assert adjusted["lower"] == pytest.approx(close * np.exp(expected[0, levels.index(0.1)]), rel=1e-5)
    assert adjusted["lower"] < served["lower"] and adjusted["upper"] > served["upper"]
    assert adjusted["predicted_close"] == pytest.approx(served["predicted_close"])  # the median stays


def _children(process: subprocess.Popen) -> list[int]:
    import psutil

    return [child.pid for child in psutil.Process(process.pid).children()]


def test_grpc_to_the_predictor_with_two_workers_gives_the_rest_forecast(served: Served, tmp_path: Path) -> None:
    """``--predictor_protocol grpc-v2`` (one kept-alive channel per worker) and ``--workers 2``: two server
    processes share the ports, both answer, and a SIGTERM stops them all."""
    http, grpc_port = _port(), _port()
    log = tmp_path / "transformer-grpc.log"
    transformer = _start(
        ["-m", "inference.transformer", "--model_uri", str(served.model_dir), "--predictor_host", served.predictor_grpc,
         "--predictor_protocol", "grpc-v2", "--workers", "2", "--host", "127.0.0.1", "--http_port", str(http),
         "--grpc_port", str(grpc_port)],
        log,
    )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{http}", transformer, log)
        workers = _children(transformer)
        assert len(workers) == 2
        expected = predict_rest(served.rest, served.bars)
        for _ in range(6):  # new connections: the kernel spreads them over both workers
            via_grpc = predict_rest(f"http://127.0.0.1:{http}", served.bars)
            assert via_grpc["predicted_log_return"] == pytest.approx(expected["predicted_log_return"], abs=1e-7)
        assert predict_grpc(f"127.0.0.1:{grpc_port}", served.bars)["as_of"] == expected["as_of"]
    finally:
        _stop(transformer)
    import psutil

    assert not [pid for pid in workers if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]


def test_an_overloaded_transformer_sheds_at_once_and_accepted_requests_stay_bounded(
    served: Served, tmp_path: Path
) -> None:
    """``--max_in_flight 1``: 16 clients at once; past the bound a request is answered 503 + Retry-After at once
    (REST) or UNAVAILABLE + retry-after (gRPC); an accepted one waits for no other, and nothing crashes."""
    import threading

    import grpc

    http, grpc_port = _port(), _port()
    log = tmp_path / "transformer-shed.log"
    transformer = _start(
        ["-m", "inference.transformer", "--model_uri", str(served.model_dir), "--predictor_host",
         served.predictor_rest.removeprefix("http://"), "--max_in_flight", "1", "--retry_after_s", "2",
         "--host", "127.0.0.1", "--http_port", str(http), "--grpc_port", str(grpc_port)],
        log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{http}"
    body = v2_request(served.bars)
    results: list[tuple[int, float, str | None]] = []
    grpc_codes: list[str] = []
    try:
        _wait_ready(url, transformer, log)
        alone = []
        with httpx.Client(timeout=30) as client:
            for _ in range(6):
                started = time.perf_counter()
                assert client.post(f"{url}/v2/models/bitpredict/infer", json=body).status_code == 200
                alone.append(time.perf_counter() - started)
        bound = 4 * max(alone) + 0.25  # one request served alone, with room for the loop to refuse the others

        def rest_client() -> None:
            with httpx.Client(timeout=30) as client:
                for _ in range(6):
                    started = time.perf_counter()
                    reply = client.post(f"{url}/v2/models/bitpredict/infer", json=body)
                    results.append((reply.status_code, time.perf_counter() - started, reply.headers.get("retry-after")))

        def grpc_client() -> None:
            for _ in range(3):
                try:
                    predict_grpc(f"127.0.0.1:{grpc_port}", served.bars, timeout=30)
                    grpc_codes.append("OK")
                except grpc.RpcError as exc:
                    grpc_codes.append(exc.code().name)

        threads = [threading.Thread(target=rest_client) for _ in range(16)]
        threads += [threading.Thread(target=grpc_client) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        accepted = [latency for status, latency, _ in results if status == 200]
        shed = [(latency, retry) for status, latency, retry in results if status == 503]
        assert {status for status, _, _ in results} <= {200, 503} and len(results) == 96
        assert accepted and shed, results
        assert max(accepted) <= bound, (max(accepted), bound, alone)
        assert all(retry == "2" for _, retry in shed)
        assert np.median([latency for latency, _ in shed]) <= max(alone) + 0.25  # refused at once, not queued
        assert set(grpc_codes) <= {"OK", "UNAVAILABLE"} and "UNAVAILABLE" in grpc_codes, grpc_codes
        assert transformer.poll() is None
        assert predict_rest(url, served.bars)["as_of"] == "2024-11-13"  # still serving after the burst
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert 'bitpredict_rejected_requests_total{reason="overloaded"}' in metrics
    finally:
        _stop(transformer)
