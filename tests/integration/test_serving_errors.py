"""Issue 29, errors: the real transformer in front of a predictor that refuses, breaks or vanishes — the client gets
the status that says whose fault it was and a generic message with a request id, never the predictor's address."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from benchmarks.chaos.fuzz import _start, base_document, baseline_model, free_port, sample_bars, stop, wait_ready

ANSWERS = {
    "refuses": (400, b'{"error": "input features: shape [1, 2], expected [B, 30, 9]"}'),
    "not json": (200, b"<html>surprise</html>"),
    "no quantiles": (
        200,
        b'{"model_name": "bitpredict", "outputs": [{"name": "attention", "shape": [1], "data": [1]}]}',
    ),
    "wrong shape": (200, b'{"outputs": [{"name": "quantiles", "shape": [7, 7], "datatype": "FP32", "data": [1]}]}'),
    "fails": (500, b'{"error": "secret internals at 10.1.2.3"}'),
    # issue 31: a horizon_quantiles that does not fit the quantiles beside it, or not the model's horizons (the HAR
    # model here has none: H = 1)
    "horizons misshapen": (
        200,
        b'{"outputs": [{"name": "quantiles", "shape": [1, 3], "datatype": "FP32", "data": [-0.02, 0, 0.02]},'
        b' {"name": "horizon_quantiles", "shape": [1, 2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
    ),
    "horizons not the model's": (
        200,
        b'{"outputs": [{"name": "quantiles", "shape": [1, 3], "datatype": "FP32", "data": [-0.02, 0, 0.02]},'
        b' {"name": "horizon_quantiles", "shape": [1, 2, 3], "datatype": "FP32", "data": [-0.02, 0, 0.02, -1, 0, 1]}]}',
    ),
    "horizons not finite": (
        200,
        b'{"outputs": [{"name": "quantiles", "shape": [1, 3], "datatype": "FP32", "data": [-0.02, 0, 0.02]},'
        b' {"name": "horizon_quantiles", "shape": [1, 1, 3], "datatype": "FP32", "data": [-0.02, 0, "x"]}]}',
    ),
    "one day with horizons": (
        200,
        b'{"outputs": [{"name": "quantiles", "shape": [1, 3], "datatype": "FP32", "data": [-0.02, 0, 0.02]},'
        b' {"name": "horizon_quantiles", "shape": [1, 1, 3], "datatype": "FP32", "data": [-0.02, 0, 0.02]}]}',
    ),
}


class _Predictor(BaseHTTPRequestHandler):
    mode = "refuses"

    def do_GET(self) -> None:  # readiness: always ready
        self._send(200, b'{"ready": true}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self._send(*ANSWERS[type(self).mode])

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def transformer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    work = tmp_path_factory.mktemp("errors")
    daily = sample_bars(work)
    model = baseline_model(work, daily)
    fake = ThreadingHTTPServer(("127.0.0.1", 0), _Predictor)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    port, log = free_port(), work / "transformer.log"
    process = _start(["-m", "inference.transformer", "--model_uri", str(model), "--host", "127.0.0.1",
                      "--predictor_host", f"127.0.0.1:{fake.server_address[1]}", "--predictor_protocol", "v2",
                      "--http_port", str(port), "--grpc_port", str(free_port())], log)  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, log)
        yield f"http://127.0.0.1:{port}", base_document(daily)
    finally:
        stop(process)
        fake.shutdown()


@pytest.mark.parametrize(
    ("mode", "status"),
    [("refuses", 400), ("not json", 502), ("no quantiles", 502), ("wrong shape", 502), ("fails", 503),
     ("horizons misshapen", 502), ("horizons not the model's", 502), ("horizons not finite", 502)],
)  # fmt: skip
def test_predictor_failures_map_to_the_right_status_with_a_generic_message(
    transformer: tuple[str, dict], mode: str, status: int
) -> None:
    url, document = transformer
    _Predictor.mode = mode
    reply = httpx.post(f"{url}/v2/models/bitpredict/infer", json=document, timeout=30)
    assert reply.status_code == status, reply.text  # before: a predictor 400 was a 503, a bad reply a 500
    body = reply.json()
    assert body["request_id"] and reply.headers["x-request-id"] == body["request_id"]
    text = json.dumps(body)
    assert "127.0.0.1" not in text and "secret" not in text and "shape [1, 2]" not in text and "gRPC" not in text


def test_a_well_formed_horizon_reply_is_served(transformer: tuple[str, dict]) -> None:
    """The control of the horizon cases above: the same reply with a [1, 1, 3] horizon_quantiles is a forecast."""
    url, document = transformer
    _Predictor.mode = "one day with horizons"
    reply = httpx.post(f"{url}/v2/models/bitpredict/infer", json=document, timeout=30)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["horizons"]["data"] == [1] and outputs["horizon_quantiles"]["shape"] == [1, 3]


def test_a_malformed_body_is_400_with_a_request_id(transformer: tuple[str, dict]) -> None:
    url, _ = transformer
    reply = httpx.post(f"{url}/v2/models/bitpredict/infer", content=b'{"inputs": [1e999]}', timeout=30)
    assert reply.status_code == 400 and reply.json()["request_id"], reply.text


def test_the_binary_extension_header_no_longer_skips_the_checks(transformer: tuple[str, dict]) -> None:
    url, _ = transformer
    headers = {"inference-header-content-length": "5", "content-type": "application/json"}
    reply = httpx.post(f"{url}/v2/models/bitpredict/infer", content=b"[[[[[" + b"\xff" * 100, headers=headers)
    assert reply.status_code == 415, reply.text
