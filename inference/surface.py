"""Only the inference surface is reachable: KServe's model-repository API and the v1 routes are closed.

Why: KServe registers ``POST /v2/repository/models/{name}/load|unload`` (REST) and ``RepositoryModelLoad/Unload``
(gRPC) on every server; one unauthenticated POST unloaded the served model, after which every forecast was a 404
while ``/v2/health/ready`` still said 200. Nothing here loads models at run time (a new model is a new revision),
so the repository API is refused on both servers: REST 403, gRPC ``PERMISSION_DENIED``. The v1 routes
(``:predict``, ``:explain``, ``/v1/models``) are not part of BitPredict's contract (v2 only) and bypassed the
request checks, so they are closed (404) rather than guarded twice.

``ModelsLoaded`` makes readiness honest about the server's own models: ``/v2/health/ready`` is 503 unless every
model the worker started with is still registered and ready (KServe's answer is ``all([])`` = ready once a model
is gone).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

REPOSITORY_PREFIXES = ("/v2/repository", "/v1/repository")
V1_PREFIX = "/v1/"
CLOSED_GRPC_METHODS = (
    "/inference.GRPCInferenceService/RepositoryModelLoad",
    "/inference.GRPCInferenceService/RepositoryModelUnload",
)
READY_PATHS = ("/v2/health/ready",)


async def _answer(send: Send, status: int, message: str) -> None:
    payload = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def closed_reason(path: str) -> tuple[int, str] | None:
    """(status, message) for a path outside the inference surface, None for one that is served."""
    normal = "/" + "/".join(p for p in path.split("/") if p)  # //v2//repository/... is the same route to a router
    if normal.startswith(REPOSITORY_PREFIXES):
        return 403, "the model repository API is not served: models are deployed, not loaded at run time"
    if normal.startswith(V1_PREFIX) or normal == V1_PREFIX.rstrip("/"):
        return 404, "the v1 protocol is not served: use v2, POST /v2/models/<name>/infer"
    return None


class ClosedRoutes:
    """ASGI middleware: the repository API and the v1 routes answered before any body is read or parsed."""

    def __init__(self, app: Any, on_reject: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.on_reject = on_reject

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            closed = closed_reason(scope.get("path", ""))
            if closed is not None:
                if self.on_reject:
                    self.on_reject("closed_route")
                await _answer(send, *closed)
                return
        await self.app(scope, receive, send)


def grpc_closer() -> Any:
    """A gRPC server interceptor answering the repository methods ``PERMISSION_DENIED``."""
    import grpc

    async def refuse(request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the model repository API is not served")

    class CloseRepository(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation: Any, details: Any) -> Any:
            if details.method in CLOSED_GRPC_METHODS:
                return grpc.unary_unary_rpc_method_handler(refuse)  # the request is never deserialised
            return await continuation(details)

    return CloseRepository()


class ModelsLoaded:
    """ASGI middleware: ``/v2/health/ready`` is 503 while a model this worker serves is gone or not ready."""

    def __init__(self, app: Any, repository: Any, names: list[str]) -> None:
        self.app = app
        self.repository = repository  # KServe's ModelRepository (the server's registered_models)
        self.names = names

    async def missing(self) -> list[str]:
        gone = []
        for name in self.names:
            if self.repository.get_model(name) is None or not await self.repository.is_model_ready(name):
                gone.append(name)
        return gone

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        asked = scope["type"] == "http" and scope.get("method") in ("GET", "HEAD")
        if asked and scope.get("path", "").rstrip("/") in READY_PATHS:
            gone = await self.missing()
            if gone:
                await _answer(send, 503, f"not ready: model(s) {gone} not loaded")
                return
        await self.app(scope, receive, send)
