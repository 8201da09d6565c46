"""Run kserve Models in a KServe ``ModelServer`` bound to a chosen host.

KServe 0.21 always binds REST to 0.0.0.0 and gRPC to [::] (no flag). In a pod that is right; on a laptop
and in tests the servers must listen on 127.0.0.1 only. ``bind_to`` swaps in a REST server whose uvicorn
config uses the host, and makes the gRPC server's listen address use it too; everything else (routes,
data plane, metrics, health) is KServe's own — except readiness: a transformer is ready only while its
predictor is (``gate_readiness``).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from kserve import Model, ModelServer
from kserve.predictor_config import PredictorConfig

DEFAULT_HOST = "0.0.0.0"


def bind_to(host: str) -> None:
    """Make the next ModelServer listen on ``host`` (REST and gRPC)."""
    if host == DEFAULT_HOST:
        return
    import kserve.model_server as model_server
    from kserve.protocol.grpc import server as grpc_server
    from kserve.protocol.rest import server as rest_server

    base_rest = rest_server.RESTServer

    class HostRESTServer(base_rest):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.config.host = host
            self._server = rest_server._RefreshingServer(self.config)

    model_server.RESTServer = HostRESTServer
    real_server = grpc_server.aio.server

    def server(*args: Any, **kwargs: Any) -> Any:
        created = real_server(*args, **kwargs)
        add_port = created.add_insecure_port
        created.add_insecure_port = lambda address: add_port(address.replace("[::]", host))
        return created

    grpc_server.aio = types.SimpleNamespace(server=server)


def guard_requests(on_reject: Callable[[str], None] | None = None) -> None:
    """Put ``V2RequestGuard`` in front of KServe's app (before it starts serving)."""
    from kserve.model_server import app

    from inference.guard import V2RequestGuard

    app.add_middleware(V2RequestGuard, on_reject=on_reject)


def gate_readiness(models: list[Model], ttl_s: float = 2.0) -> None:
    """Make the ready routes answer 503 while a transformer's predictor is not ready (``inference.readiness``)."""
    from kserve.model_server import app

    from inference.readiness import PredictorReadiness, upstreams_of

    upstreams = upstreams_of(models)
    if upstreams:
        app.add_middleware(PredictorReadiness, upstreams=upstreams, ttl_s=ttl_s)


def serve(
    models: list[Model],
    *,
    http_port: int,
    grpc_port: int,
    host: str = DEFAULT_HOST,
    predictor_config: PredictorConfig | None = None,
    on_reject: Callable[[str], None] | None = None,
) -> None:
    """Start the servers and block until a signal stops them."""
    bind_to(host)
    guard_requests(on_reject)
    gate_readiness(models)
    ModelServer(
        http_port=http_port,
        grpc_port=grpc_port,
        enable_grpc=True,
        predictor_config=predictor_config,
        enable_latency_logging=False,
    ).start(models)
