"""Honest readiness: a transformer is ready only while its predictor is.

KServe answers ``/v2/health/ready`` for a transformer from its own state alone (its optional predictor
check knows neither TF Serving's gRPC API nor a cache), so Kubernetes and ``make serve`` would route
requests to a transformer whose every forecast is a 503. ``PredictorReadiness`` is an ASGI middleware in
front of the server-ready and model-ready routes: it asks each model's predictor in the model's own
protocol — v2 REST ``/v2/models/<name>/ready``, v2 gRPC ``ModelReady``, or TF Serving's
``ModelService.GetModelStatus`` — and answers 503 with the reason while the predictor is not ready. The
answer is cached for ``ttl_s`` so probes do not hammer the predictor. Other routes pass through untouched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

READY_PATHS = ("/v2/health/ready",)
TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Upstream:
    """One transformer model's predictor: the name it serves there, where, and how to ask."""

    model: str
    host: str
    protocol: str  # "v2" (REST), "grpc-v2" or "tfserving"
    remote_name: str


async def predictor_ready(upstream: Upstream, timeout_s: float = TIMEOUT_S) -> tuple[bool, str]:
    """(ready, why not) for one predictor, asked in its own protocol."""
    try:
        if upstream.protocol == "v2":
            import httpx

            url = f"http://{upstream.host}/v2/models/{upstream.remote_name}/ready"
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                reply = await client.get(url)
            return reply.status_code == 200, f"{url} answered {reply.status_code}"
        if upstream.protocol == "grpc-v2":
            return await _grpc_v2_ready(upstream, timeout_s)
        if upstream.protocol == "tfserving":
            return await _tfserving_ready(upstream, timeout_s)
        return False, f"unknown predictor protocol {upstream.protocol!r}"
    except Exception as exc:  # refused, timed out, unknown model: all mean "not ready", with the reason
        return False, f"predictor at {upstream.host} unreachable ({type(exc).__name__})"


async def _grpc_v2_ready(upstream: Upstream, timeout_s: float) -> tuple[bool, str]:
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as stubs

    async with grpc.aio.insecure_channel(upstream.host) as channel:
        reply = await stubs.GRPCInferenceServiceStub(channel).ModelReady(
            pb.ModelReadyRequest(name=upstream.remote_name), timeout=timeout_s
        )
    return bool(reply.ready), f"model {upstream.remote_name} at {upstream.host} is not ready"


async def _tfserving_ready(upstream: Upstream, timeout_s: float) -> tuple[bool, str]:
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = upstream.remote_name
    async with grpc.aio.insecure_channel(upstream.host) as channel:
        reply = await model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=timeout_s)
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    ready = any(v.state == available for v in reply.model_version_status)
    return ready, f"TF Serving at {upstream.host} has no AVAILABLE version of {upstream.remote_name}"


class PredictorReadiness:
    """ASGI middleware: 503 on the ready routes while a model's predictor is not ready (cached ``ttl_s``)."""

    def __init__(
        self,
        app: ASGIApp,
        upstreams: list[Upstream],
        ttl_s: float = 2.0,
        check: Callable[[Upstream], Awaitable[tuple[bool, str]]] = predictor_ready,
    ) -> None:
        self.app = app
        self.upstreams = {u.model: u for u in upstreams}
        self.ttl_s = ttl_s
        self.check = check
        self._cache: dict[str, tuple[float, bool, str]] = {}

    async def _ready(self, upstream: Upstream) -> tuple[bool, str]:
        cached = self._cache.get(upstream.model)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1], cached[2]
        ready, why = await self.check(upstream)
        if cached is None or cached[1] != ready:
            log.info("predictor readiness", extra={"model": upstream.model, "ready": ready, "why": why})
        self._cache[upstream.model] = (now, ready, why)
        return ready, why

    def _asked(self, path: str) -> list[Upstream]:
        """The upstreams a ready route depends on: all of them for the server, one for a model."""
        path = path.rstrip("/")
        if path in READY_PATHS:
            return list(self.upstreams.values())
        parts = path.split("/")
        # /v2/models/<name>/ready and /v2/models/<name>/versions/<v>/ready
        if len(parts) >= 5 and parts[1:3] == ["v2", "models"] and parts[-1] == "ready":
            upstream = self.upstreams.get(parts[3])
            return [upstream] if upstream else []
        return []

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        for upstream in self._asked(scope.get("path", "")):
            ready, why = await self._ready(upstream)
            if not ready:
                body = json.dumps({"error": f"not ready: the predictor is not ready ({why})"}).encode()
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 503, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def upstreams_of(models: list[Any]) -> list[Upstream]:
    """The predictors of the models that have one (transformers); a predictor itself has none."""
    found = []
    for model in models:
        host = getattr(model, "predictor_host", None)
        if not host:
            continue
        protocol = getattr(model, "protocol", "v2")
        remote = getattr(model, "tfserving_model", None) if protocol == "tfserving" else model.name
        found.append(Upstream(model.name, host, protocol, remote or model.name))
    return found
