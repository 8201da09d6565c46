"""The locked-down serving surface, probed against the real servers (issue 29): four ``make chaos`` rows.

Each probe starts the real predictor and transformer on 127.0.0.1 (the HAR baseline of ``fuzz``: no training) and
measures one promise:

* ``repository``: ``POST /v2/repository/models/<m>/load|unload`` on both servers and gRPC ``RepositoryModelLoad/
  Unload`` on both — every one refused, 0 models unloaded (the model still ready and still forecasting after);
* ``slow_bodies``: ``SLOW`` connections trickle a body one byte at a time while a normal client sends forecasts —
  the normal client is still served (every answer 200) and each slow one gets 408 at the body deadline;
* ``oversized``: bodies above the cap, declared (``Content-Length``) and streamed (chunked) — 413 at once, while a
  normal client's latency stays within a few ms of its own baseline;
* ``v1``: the v1 routes (``:predict``, ``:explain``, ``/v1/models``) — closed (404) on both servers, a large v1
  body refused before it is read.

Across all rows a 5xx answer to anything a client sent is counted in ``client_input_5xx`` (must be 0).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.chaos import ScenarioResult
from benchmarks.chaos.fuzz import MODEL_NAME, Stack, base_document, baseline_model, sample_bars, serving_stack

SLOW = 8  # twice the default --max_in_flight: before issue 29, four were enough to shut a worker out
BODY_DEADLINE_S = 5.0  # the servers' default --body_timeout_s


@contextlib.contextmanager
def _stack(workdir: Path) -> Iterator[tuple[Stack, dict]]:
    workdir.mkdir(parents=True, exist_ok=True)
    daily = sample_bars(workdir)
    with serving_stack(baseline_model(workdir, daily), workdir / "logs") as stack:
        yield stack, base_document(daily)


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _count(codes: Counter[str], status: int) -> int:
    codes[str(status)] += 1
    return 1 if status >= 500 else 0


def repository(workdir: Path, quick: bool = False) -> ScenarioResult:
    import grpc
    import httpx
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    codes: Counter[str] = Counter()
    server_errors = slowest = 0.0
    rounds = 2 if quick else 10
    with _stack(workdir) as (stack, document):
        for url in (stack.rest, stack.predictor_rest):
            for _ in range(rounds):
                for action in ("unload", "load"):
                    started = time.monotonic()
                    status = httpx.post(f"{url}/v2/repository/models/{MODEL_NAME}/{action}", timeout=10).status_code
                    slowest = max(slowest, time.monotonic() - started)
                    server_errors += _count(codes, status)
        for target in (stack.grpc, stack.predictor_grpc):
            with grpc.insecure_channel(target) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                for _ in range(rounds):
                    for call, request in (
                        (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name=MODEL_NAME)),
                        (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name=MODEL_NAME)),
                    ):
                        try:
                            call(request, timeout=10)
                            codes["grpc:OK"] += 1
                        except grpc.RpcError as exc:
                            codes[f"grpc:{exc.code().name}"] += 1
                            server_errors += exc.code().name in ("INTERNAL", "UNKNOWN")
        unloaded = 0
        for url in (stack.rest, stack.predictor_rest):
            ready = httpx.get(f"{url}/v2/models/{MODEL_NAME}/ready", timeout=5).status_code == 200
            unloaded += 0 if ready and httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200 else 1
        served = httpx.post(f"{stack.rest}/v2/models/{MODEL_NAME}/infer", json=document, timeout=30).status_code
    accepted = codes["200"] + codes["grpc:OK"]
    return ScenarioResult(
        scenario="repository API (load/unload, REST + gRPC)",
        requests=sum(codes.values()),
        errors=Counter({k: v for k, v in codes.items() if k not in ("200", "grpc:OK")}),
        max_latency_s=slowest,
        lost=unloaded + accepted + (0 if served == 200 else 1),
        client_input_5xx=int(server_errors),
        notes=f"{unloaded} models unloaded, {accepted} repository calls accepted; a forecast after: {served}",
    )


class _Normal:
    """A normal client sending forecasts one after another in a thread; latencies and statuses recorded."""

    def __init__(self, url: str, document: dict) -> None:
        self.url, self.document = url, document
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Normal:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        import httpx

        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = client.post(f"{self.url}/v2/models/{MODEL_NAME}/infer", json=self.document).status_code
                except httpx.HTTPError:
                    status = 0
                self.samples.append((time.monotonic() - started, status))
                self._stop.wait(0.02)


def _slow_body(url: str, results: list[tuple[int, float]]) -> None:
    """Headers promising 50 kB, then one byte every 0.5 s until the server answers: (status, seconds)."""
    started = time.monotonic()
    with socket.create_connection(_host_port(url), timeout=30) as sock:
        sock.sendall(
            f"POST /v2/models/{MODEL_NAME}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 50000\r\n\r\n".encode()
        )
        sock.settimeout(0.5)
        answer = b""
        while time.monotonic() - started < 30:
            try:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
            except TimeoutError:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    results.append((status, time.monotonic() - started))


def slow_bodies(workdir: Path, quick: bool = False) -> ScenarioResult:
    with _stack(workdir) as (stack, document):
        slow: list[tuple[int, float]] = []
        threads = [threading.Thread(target=_slow_body, args=(stack.rest, slow), daemon=True) for _ in range(SLOW)]
        with _Normal(stack.rest, document) as normal:
            time.sleep(1.0)
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=40)
            time.sleep(0.5)
    codes: Counter[str] = Counter(str(status) for _, status in normal.samples)
    codes.update(f"slow:{status}" for status, _ in slow)
    failed = [s for _, s in normal.samples if s != 200]
    five = sum(1 for k, v in codes.items() if k.removeprefix("slow:").startswith("5") for _ in range(v))
    return ScenarioResult(
        scenario=f"slow bodies ({SLOW} connections trickling) + a normal client",
        requests=len(normal.samples) + len(slow),
        errors=Counter({k: v for k, v in codes.items() if k != "200"}),
        max_latency_s=max((seconds for seconds, _ in normal.samples), default=0.0),
        lost=len(failed),
        client_input_5xx=five,
        notes=f"normal client {len(normal.samples) - len(failed)}/{len(normal.samples)} served (200); slow ones "
        f"answered in {min((t for _, t in slow), default=0):.1f}-{max((t for _, t in slow), default=0):.1f} s",
    )


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"9" * size
        sent += size


def oversized(workdir: Path, quick: bool = False) -> ScenarioResult:
    import httpx

    big = 8 if quick else 32  # MB
    with _stack(workdir) as (stack, document):
        with _Normal(stack.rest, document) as before:
            time.sleep(2.0)
        baseline = sorted(seconds for seconds, _ in before.samples)
        codes: Counter[str] = Counter()
        refused: list[float] = []
        with _Normal(stack.rest, document) as during, httpx.Client(timeout=30) as client:
            until, round_ = time.monotonic() + (3.0 if quick else 10.0), 0
            while time.monotonic() < until:
                round_ += 1
                for streamed in (False, True):
                    started = time.monotonic()
                    url = f"{stack.rest if round_ % 2 == 0 else stack.predictor_rest}/v2/models/{MODEL_NAME}/infer"
                    try:
                        body: Any = _chunks(big << 20) if streamed else b"9" * (big << 20)
                        status = client.post(url, content=body).status_code
                    except httpx.HTTPError:  # the server closed after its 413 while we were still sending
                        status = 413 if streamed else 0
                    refused.append(time.monotonic() - started)
                    codes[str(status)] += 1
    p50 = baseline[len(baseline) // 2] if baseline else 0.0
    worst = max((seconds for seconds, _ in during.samples), default=0.0)
    failed = sum(1 for _, s in during.samples if s != 200)
    codes.update(str(s) for _, s in during.samples)
    return ScenarioResult(
        scenario=f"oversized bodies ({big} MB, declared + streamed) + a normal client",
        requests=sum(codes.values()),
        errors=Counter({k: v for k, v in codes.items() if k != "200"}),
        max_latency_s=worst,
        lost=failed,
        client_input_5xx=sum(v for k, v in codes.items() if k.startswith("5")),
        notes=f"413 in at most {max(refused) * 1000:.0f} ms; normal client p50 {p50 * 1000:.0f} ms before, "
        f"worst {worst * 1000:.0f} ms during ({len(during.samples) - failed}/{len(during.samples)} served)",
    )


def v1_routes(workdir: Path, quick: bool = False) -> ScenarioResult:
    import httpx

    codes: Counter[str] = Counter()
    slowest = 0.0
    large = b'{"instances": [' + b"1," * (15 << 20) + b"1]}"  # 30 MB: refused before it is read
    with _stack(workdir) as (stack, document), httpx.Client(timeout=30) as client:
        for url in (stack.rest, stack.predictor_rest):
            calls = [
                ("POST", f"/v1/models/{MODEL_NAME}:predict", b'{"instances": [[1, 2, 3]]}'),
                ("POST", f"/v1/models/{MODEL_NAME}:explain", b'{"instances": [[1, 2, 3]]}'),
                ("POST", f"/v1/models/{MODEL_NAME}:predict", large),
                ("GET", "/v1/models", None),
                ("GET", f"/v1/models/{MODEL_NAME}", None),
            ]
            for method, path, body in calls:
                started = time.monotonic()
                try:
                    status = client.request(method, url + path, content=body).status_code
                except httpx.HTTPError:
                    status = 0
                slowest = max(slowest, time.monotonic() - started)
                codes[str(status)] += 1
        served = client.post(f"{stack.rest}/v2/models/{MODEL_NAME}/infer", json=document).status_code
    return ScenarioResult(
        scenario="v1 routes (:predict, :explain, /v1/models)",
        requests=sum(codes.values()),
        errors=Counter({k: v for k, v in codes.items() if k != "200"}),
        max_latency_s=slowest,
        lost=codes["200"] + (0 if served == 200 else 1),
        client_input_5xx=sum(v for k, v in codes.items() if k.startswith("5") or k == "0"),
        notes=f"{codes['200']} v1 calls answered 200; a v2 forecast after: {served}",
    )
