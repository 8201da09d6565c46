"""inference.readiness: the transformer's ready routes follow its predictor (asked over real HTTP), cached briefly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from inference.readiness import PredictorReadiness, Upstream, upstreams_of
from tests.fakes.server import FakeServer, Response


async def _app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    """Stands for KServe's app behind the middleware: always 200."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ready": true}'})


@pytest.fixture
def predictor() -> Iterator[FakeServer]:
    server = FakeServer().start()
    try:
        yield server
    finally:
        server.stop()


def _get(app: PredictorReadiness, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.get(path)

    return asyncio.run(call())


def test_not_ready_while_the_predictor_is_down_then_ready(predictor: FakeServer) -> None:
    host = predictor.url.removeprefix("http://")
    # ttl_s long enough that the four calls below stay within it on a loaded machine (0.3 s flaked at load 8)
    app = PredictorReadiness(_app, [Upstream("bitpredict", host, "v2", "bitpredict")], ttl_s=1.5)
    down = _get(app, "/v2/health/ready")  # nothing answers the model's ready route yet: 404 from the predictor
    assert down.status_code == 503 and "predictor is not ready" in down.json()["error"]
    assert _get(app, "/v2/models/bitpredict/ready").status_code == 503
    assert _get(app, "/v2/health/live").status_code == 200  # liveness never depends on the predictor
    assert _get(app, "/v2/models/other/ready").status_code == 200  # not this transformer's predictor

    predictor.route("/v2/models/bitpredict/ready", lambda _r: Response.json({"name": "bitpredict", "ready": True}))
    assert _get(app, "/v2/health/ready").status_code == 503  # cached for ttl_s
    time.sleep(1.55)
    assert _get(app, "/v2/health/ready").status_code == 200
    calls = len(predictor.hits("/v2/models/bitpredict/ready"))
    for _ in range(5):
        _get(app, "/v2/health/ready")
    assert len(predictor.hits("/v2/models/bitpredict/ready")) == calls  # probes within ttl_s are not forwarded


def test_a_closed_port_is_not_ready() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    for protocol in ("v2", "grpc-v2", "tfserving"):
        app = PredictorReadiness(_app, [Upstream("bitpredict", f"127.0.0.1:{port}", protocol, "bitpredict")])
        reply = _get(app, "/v2/health/ready")
        assert reply.status_code == 503, protocol


def test_only_models_with_a_predictor_are_gated() -> None:
    class Transformer:
        name, predictor_host, protocol, tfserving_model = "bitpredict", "10.0.0.1:9000", "tfserving", "tfs-name"

    class Predictor:
        name = "bitpredict"

    assert upstreams_of([Transformer(), Predictor()]) == [
        Upstream("bitpredict", "10.0.0.1:9000", "tfserving", "tfs-name")
    ]
