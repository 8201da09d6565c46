"""An ASGI guard in front of KServe's v2 ``/infer`` routes: malformed bodies get a 400, never a 500.

KServe parses the body itself and turns some malformed documents into a 500 (a top-level ``Infinity``
makes its own error message unserialisable, for one). The guard parses the body first and answers 400
with a message for anything that is not a v2 request document: not JSON, non-finite numbers, no
``inputs`` list, a tensor without ``name``/``datatype``/``shape``/``data`` of the right kinds. Bodies that
pass go on to KServe unchanged.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
MAX_BODY = 16 * 1024 * 1024
# A v2 document is an object → "inputs" list → tensor object → data, nested once per tensor dimension;
# no BitPredict tensor has more than three. Anything deeper is refused before a recursive decoder sees it
# (Python's json raises RecursionError near 1,000 levels: a 500, not the client's 400).
MAX_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


class MalformedRequest(ValueError):
    pass


def _reject_constant(token: str) -> float:
    raise MalformedRequest(f"the JSON body holds {token}, which JSON does not allow; send finite numbers")


def nesting_depth(body: bytes) -> int:
    """The deepest ``[``/``{`` nesting outside JSON strings — vectorised, no recursion, linear in the body."""
    structure = np.frombuffer(_STRING.sub(b'""', body), dtype=np.uint8)
    step = np.isin(structure, (ord("["), ord("{"))).astype(np.int32) - np.isin(structure, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def _walk_numbers(value: Any) -> None:
    pending = [value]
    while pending:  # iterative: the depth is bounded already, but a walk should never recurse on client data
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise MalformedRequest("non-finite number in the body (NaN, Infinity or beyond the float range)")
        if isinstance(item, list):
            pending.extend(item)


def check_v2_body(body: bytes) -> None:
    """Raise ``MalformedRequest`` unless ``body`` is a v2 inference request document."""
    depth = nesting_depth(body)
    if depth > MAX_DEPTH:
        raise MalformedRequest(f"the body nests {depth} levels deep; a v2 request needs at most {MAX_DEPTH}")
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except MalformedRequest:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedRequest(f"the body is not JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list) or not document["inputs"]:
        raise MalformedRequest('a v2 request is a JSON object with a non-empty "inputs" list')
    for index, tensor in enumerate(document["inputs"]):
        if not isinstance(tensor, dict):
            raise MalformedRequest(f"inputs[{index}] is not an object")
        name = tensor.get("name")
        label = f"input '{name}'" if isinstance(name, str) and name else f"inputs[{index}]"
        if not isinstance(name, str) or not name:
            raise MalformedRequest(f"{label}: 'name' must be a non-empty string")
        if not isinstance(tensor.get("datatype"), str):
            raise MalformedRequest(f"{label}: 'datatype' must be a string")
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise MalformedRequest(f"{label}: 'shape' must be a list of non-negative integers")
        if not isinstance(tensor.get("data"), list):
            raise MalformedRequest(f"{label}: 'data' must be a list")
        _walk_numbers(tensor["data"])


class V2RequestGuard:
    def __init__(self, app: Any, on_reject: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.on_reject = on_reject

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/infer"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                await self._reply(send, 413, f"the body is larger than {MAX_BODY} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = dict(scope.get("headers") or [])
        if b"inference-header-content-length" not in headers:  # binary-tensor bodies are KServe's to parse
            try:
                check_v2_body(body)
            except MalformedRequest as exc:
                if self.on_reject:
                    self.on_reject("malformed_body")
                await self._reply(send, 400, str(exc))
                return
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _reply(send: Send, status: int, message: str) -> None:
        payload = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})
