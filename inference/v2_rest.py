"""The v2 REST inference route, with the body parsed once and off the event loop, and honest error answers.

Why not KServe's own route handler: it has FastAPI parse and validate the body into pydantic models on the event
loop, after our check had parsed it already (the body was parsed twice; a 13 MB body stalled the loop 1.4 s). Here
``POST /v2/models/<name>/infer`` is answered by this middleware: the body (already read whole by
``inference.body.BodyLimit``, admitted by ``ShedLoad``) is parsed once, by ``inference.guard.parse_v2_body`` with
orjson in a thread of its own, into KServe's ``InferRequest``; then KServe's own ``DataPlane.infer`` and
``DataPlane.encode`` run the model (preprocess → predict → postprocess for a transformer) exactly as its route does.

Errors: a client gets a status that says whose fault it was and a message that never names our internals —
400 with the reason for a malformed or invalid request (``InvalidInput``: the client's own input, named),
404 for an unknown model, 503 (+ ``Retry-After``) when the model or its predictor is not available, 502 when the
predictor answered something that is not a forecast, 500 for anything else; every error carries a ``request_id``
(also the ``x-request-id`` header) and the detail goes to the log under that id. An exception may set
``http_status`` (``inference.upstream``'s errors do) to choose its status.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from kserve import InferInput, InferRequest
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotLive, ServerNotReady
from kserve.protocol.infer_type import RequestedOutput

from inference.guard import DEFAULT_MAX_ELEMENTS, MalformedRequest, parse_v2_body

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
BINARY_HEADER = b"inference-header-content-length"
GENERIC = {
    404: "unknown model",
    500: "internal error",
    502: "the model's backend gave an unusable answer",
    503: "the model is not available right now; retry later",
}


def infer_target(path: str) -> tuple[str, bool] | None:
    """(model name, versioned?) for ``/v2/models/<name>[/versions/<v>]/infer``; None for any other path."""
    parts = [p for p in path.split("/") if p]
    if len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "infer":
        return parts[2], False
    if len(parts) == 6 and parts[:2] == ["v2", "models"] and parts[3] == "versions" and parts[5] == "infer":
        return parts[2], True
    return None


def decode(body: bytes, model_name: str, max_elements: int) -> InferRequest:
    """The one parse of a v2 REST body, straight into KServe's ``InferRequest`` (``MalformedRequest`` if bad)."""
    document = parse_v2_body(body, max_elements)
    inputs = [
        InferInput(name=t["name"], shape=t["shape"], datatype=t["datatype"], data=t["data"],
                   parameters=_parameters(t.get("parameters"), f"input '{t['name']}'"))
        for t in document["inputs"]
    ]  # fmt: skip
    outputs = document.get("outputs")
    if outputs is not None and not (
        isinstance(outputs, list) and all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)
    ):
        raise MalformedRequest("'outputs' must be a list of objects with a 'name'")
    requested = [
        RequestedOutput(name=o["name"], parameters=_parameters(o.get("parameters"), "outputs")) for o in outputs or []
    ]
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise MalformedRequest("'id' must be a string")
    return InferRequest(
        model_name=model_name,
        infer_inputs=inputs,
        request_id=request_id,
        parameters=_parameters(document.get("parameters"), "the request"),
        request_outputs=requested or None,
    )


def _parameters(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedRequest(f"{where}: 'parameters' must be an object")
    return value


def status_of(exc: BaseException) -> int:
    """The HTTP status of an exception raised while answering: the client's fault (4xx) or ours (5xx)."""
    chosen = getattr(exc, "http_status", None)
    if isinstance(chosen, int):
        return chosen
    if isinstance(exc, InvalidInput | MalformedRequest):
        return 400
    if isinstance(exc, ModelNotFound):
        return 404
    if isinstance(exc, ModelNotReady | ServerNotReady | ServerNotLive):
        return 503
    if isinstance(exc, NotImplementedError):
        return 501
    return 500


class V2Infer:
    """ASGI middleware answering ``POST /v2/models/<name>/infer`` through KServe's data plane (see the module)."""

    def __init__(
        self,
        app: Any,
        dataplane: Any,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
        retry_after_s: float = 1.0,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.dataplane = dataplane
        self.max_elements = max_elements
        self.retry_after = str(max(1, round(retry_after_s)))
        self.on_reject = on_reject
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2-parse")

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        target = infer_target(scope.get("path", "")) if scope["type"] == "http" else None
        if target is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        name, versioned = target
        request_id = uuid.uuid4().hex
        if versioned:
            await self._reply(send, 501, {"error": "model versions are not served; use /v2/models/<name>/infer"})
            return
        raw_headers = scope.get("headers") or []
        if any(key == BINARY_HEADER for key, _ in raw_headers):
            self._count("binary_body")
            await self._reply(send, 415, {"error": "the binary tensor extension is not served; send JSON"})
            return
        body = await _read(receive)
        try:
            request = await asyncio.get_running_loop().run_in_executor(
                self._parser, decode, body, name, self.max_elements
            )
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw_headers}
            if not await self.dataplane.model_ready(name, True):  # raises ModelNotFound for an unknown model
                raise ModelNotReady(name)
            response, response_headers = await self.dataplane.infer(model_name=name, request=request, headers=headers)
            response, extra = self.dataplane.encode(
                model_name=name, response=response, headers=headers, req_attributes={}
            )
        except Exception as exc:  # every failure gets a status that says whose fault it was, and a request id
            await self._fail(send, exc, name, request_id)
            return
        payload = response if isinstance(response, bytes) else orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
        merged = {**response_headers, **extra}
        merged.pop("content-length", None)
        merged.setdefault("content-type", "application/json")
        await self._reply_raw(send, 200, payload, merged)

    async def _fail(self, send: Send, exc: BaseException, name: str, request_id: str) -> None:
        status = status_of(exc)
        if isinstance(exc, MalformedRequest):
            self._count("malformed_body")  # a model's own refusals (InvalidInput) are counted by the model
        if status < 500:
            message = str(exc) if status in (400, 415) else GENERIC.get(status, "request refused")
            log.info("request refused", extra={"request_id": request_id, "model": name, "status": status,
                                               "error": str(exc)})  # fmt: skip
        else:
            message = GENERIC.get(status, GENERIC[500])
            log.error("request failed", extra={"request_id": request_id, "model": name, "status": status,
                                               "error": f"{type(exc).__name__}: {exc}"},
                      exc_info=status == 500)  # fmt: skip
        headers = {"x-request-id": request_id}
        if status == 503:
            headers["retry-after"] = self.retry_after
        await self._reply(send, status, {"error": message, "request_id": request_id}, headers)

    def _count(self, reason: str) -> None:
        if self.on_reject:
            self.on_reject(reason)

    async def _reply(self, send: Send, status: int, document: dict, headers: dict[str, str] | None = None) -> None:
        await self._reply_raw(send, status, orjson.dumps(document), {"content-type": "application/json",
                                                                      **(headers or {})})  # fmt: skip

    @staticmethod
    async def _reply_raw(send: Send, status: int, payload: bytes, headers: dict[str, str]) -> None:
        raw = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
        raw.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False) or message["type"] != "http.request":
            return b"".join(chunks)
