"""Admission after the body: every POST body is read whole, under a deadline and a size cap, before anything else.

Why: a request that counted as in flight while its client trickled the body let four slow clients hold every
admission slot of a worker (the next normal request got 503). ``BodyLimit`` is the outermost middleware on POST:

* ``Content-Length`` above ``max_bytes`` is answered 413 at once, without reading a byte of the body;
* a body that grows past ``max_bytes`` while streaming (chunked, or a lying ``Content-Length``) is 413 then;
* a body not complete within ``deadline_s`` of the request's start is 408.

Only then does the request go on (to the in-flight bound, ``inference.server.ShedLoad``), with the body replayed
from memory, so a slot is held for work, never for a slow network. A refused request's connection is closed
(``connection: close``): its unread body must not be taken for the next request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_DEADLINE_S = 5.0


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: POST bodies read whole under ``deadline_s`` and ``max_bytes`` (408 / 413), then replayed."""

    def __init__(
        self,
        app: Any,
        max_bytes: int = DEFAULT_MAX_BYTES,
        deadline_s: float = DEFAULT_DEADLINE_S,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.deadline_s = deadline_s
        self.on_reject = on_reject

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, 413, "body_too_large", self._too_large())
            return
        try:
            body = await asyncio.wait_for(self._read(receive), timeout=self.deadline_s)
        except BodyTooLarge:
            await self._refuse(send, 413, "body_too_large", self._too_large())
            return
        except TimeoutError:
            await self._refuse(send, 408, "body_timeout", f"the body was not received within {self.deadline_s:g} s")
            return
        if body is None:  # the client went away mid-body: nobody to answer
            return
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: a disconnect, as the server reports it
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        scope.setdefault("state", {})["body_bytes"] = len(body)
        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"the body is larger than {self.max_bytes} bytes (the most rows a request may send fit in that)"

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, send: Send, status: int, reason: str, message: str) -> None:
        if self.on_reject:
            self.on_reject(reason)
        payload = json.dumps({"error": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _content_length(scope: dict[str, Any]) -> int | None:
    for key, value in scope.get("headers") or []:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
