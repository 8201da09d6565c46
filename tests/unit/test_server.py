"""inference/server.py without starting a model server: the flags, the in-flight bound, the REST socket."""

from __future__ import annotations

import asyncio
import socket

import pytest

from inference.server import Admission, ShedLoad, bind_rest, check_args, parser


def test_the_parser_extends_kserves_and_refuses_impossible_settings() -> None:
    args, _ = parser().parse_known_args(["--workers", "3", "--max_in_flight", "2", "--http_port", "9000"])
    assert (args.workers, args.max_in_flight, args.http_port, args.host) == (3, 2, 9000, "0.0.0.0")
    assert args.model_name == "bitpredict" and args.enable_latency_logging is False  # our defaults
    assert hasattr(args, "max_threads") and hasattr(args, "predictor_request_timeout_seconds")  # KServe's flags
    for bad in (["--workers", "0"], ["--max_in_flight", "0"], ["--retry_after_s", "0"]):
        with pytest.raises(SystemExit, match=bad[0]):
            check_args(parser().parse_known_args(bad)[0])


def test_admission_holds_the_bound_and_frees_a_slot_on_leave() -> None:
    admission = Admission(2, retry_after_s=1.5)
    assert admission.enter() and admission.enter() and not admission.enter()
    assert (admission.in_flight, admission.shed, admission.retry_after) == (2, 1, "2")  # whole seconds, rounded up
    admission.leave()
    assert admission.enter()
    with pytest.raises(ValueError, match="in-flight limit"):
        Admission(0, 1.0)


def test_past_the_bound_an_inference_request_is_answered_503_at_once_and_health_passes() -> None:
    async def scenario() -> list[dict]:
        release = asyncio.Event()

        async def slow_app(scope: dict, receive: object, send: object) -> None:
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        shed_reasons: list[str] = []
        app = ShedLoad(slow_app, Admission(1, 1.0), on_shed=lambda: shed_reasons.append("overloaded"))
        infer = {"type": "http", "method": "POST", "path": "/v2/models/bitpredict/infer"}
        sent: list[list[dict]] = [[], [], []]

        async def call(scope: dict, index: int) -> None:
            async def send(message: dict) -> None:
                sent[index].append(message)

            await app(scope, None, send)

        first = asyncio.create_task(call(infer, 0))
        await asyncio.sleep(0)  # the first is in flight
        await asyncio.wait_for(call(infer, 1), timeout=1)  # answered without waiting for the first
        health = asyncio.create_task(call({"type": "http", "method": "GET", "path": "/v2/health/ready"}, 2))
        release.set()
        await asyncio.gather(first, health)
        assert shed_reasons == ["overloaded"]
        return [messages[0] for messages in sent]

    first, second, health = asyncio.run(scenario())
    assert first["status"] == 200 and health["status"] == 200
    assert second["status"] == 503 and (b"retry-after", b"1") in second["headers"]


def test_every_accepted_rest_connection_has_tcp_nodelay() -> None:
    """uvicorn serves the bound socket through its fd, where asyncio would not set TCP_NODELAY (a 40 ms stall)."""
    listener = bind_rest("127.0.0.1", 0)
    try:
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()
