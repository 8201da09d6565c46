"""A predictor killed under load: SIGKILL while clients send forecasts, then restarted on the same ports.

The promise (issue 21): requests during the outage get a 503 quickly — none hangs to the client's timeout —,
the transformer does not crash, its readiness goes false while the predictor is gone and true again after,
and it serves forecasts again within seconds of the predictor's return.

The real predictor and transformer run on 127.0.0.1 (the transformer → predictor hop over v2 gRPC, the
production path; ``protocol="v2"`` runs it over REST) with the HAR baseline exported from the embedded sample,
so nothing is trained. ``CLIENTS`` threads send a forecast request every ``PACE_S`` each, with a client timeout
of ``CLIENT_TIMEOUT_S``; a probe reads the transformer's ``/v2/health/ready`` every ``PROBE_S``. Timeline:
steady load, SIGKILL the predictor's process group, an outage, a fresh predictor on the same ports, load until
the first forecast after the predictor reports ready, then a short steady tail.

Figures: ``max_latency_s`` is the slowest answer from the kill to the first forecast after the restart (any
status); ``recovery_s`` is the predictor's ready → the transformer's first forecast. ``lost`` counts requests
that got no HTTP answer at all (a timeout or a dropped connection) — what a client cannot tell from an outage
— plus one if the transformer process died.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.chaos import ScenarioResult
from benchmarks.chaos.fuzz import _start, baseline_model, free_port, sample_bars, stop, wait_ready

CLIENTS = 4
PACE_S = 0.05
CLIENT_TIMEOUT_S = 5.0
PROBE_S = 0.2
MODEL_NAME = "bitpredict"


@dataclass
class PredictorKillResult(ScenarioResult):
    """The chaos row plus what the test asserts about readiness and the transformer process."""

    protocol: str = "grpc-v2"
    outage_answers: Counter[str] = field(default_factory=Counter)  # status of every answer during the fault
    readiness_went_false: bool = False
    readiness_came_back: bool = False
    transformer_alive: bool = False
    predictor_restart_s: float = 0.0  # restart → the predictor's own ready (model loading: not the transformer's)


@dataclass
class _Sample:
    sent: float
    latency_s: float
    status: str  # "200", "503", … or "timeout" / "no-answer"


class _Load:
    """``CLIENTS`` threads of forecast requests and one readiness probe, recorded with their send times."""

    def __init__(self, url: str, body: dict) -> None:
        self.url, self.body = url, body
        self.samples: list[_Sample] = []
        self.ready: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]
        self._threads.append(threading.Thread(target=self._probe, daemon=True))
        self._lock = threading.Lock()

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT_S + 5)

    def _client(self) -> None:
        import httpx

        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    status = str(client.post(f"{self.url}/v2/models/{MODEL_NAME}/infer", json=self.body).status_code)
                except httpx.TimeoutException:
                    status = "timeout"
                except httpx.HTTPError:
                    status = "no-answer"
                with self._lock:
                    self.samples.append(_Sample(sent, time.monotonic() - sent, status))
                self._stop.wait(PACE_S)

    def _probe(self) -> None:
        import httpx

        while not self._stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                code = httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code
                self.ready.append((time.monotonic(), code))
            self._stop.wait(PROBE_S)

    def first_ok_after(self, moment: float) -> float | None:
        with self._lock:
            done = [s.sent + s.latency_s for s in self.samples if s.status == "200" and s.sent >= moment]
        return min(done) if done else None


def _predictor_args(model: Path, http: int, grpc: int) -> list[str]:
    return ["-m", "inference.predictor", "--model_dir", str(model), "--host", "127.0.0.1",
            "--http_port", str(http), "--grpc_port", str(grpc)]  # fmt: skip


def run(workdir: Path, quick: bool = False, protocol: str = "grpc-v2") -> PredictorKillResult:
    """Run the scenario in ``workdir`` (logs under ``workdir/logs``); stops everything it started."""
    import httpx

    from inference.client import v2_request

    steady_s, outage_s, tail_s, deadline_s = (2.0, 3.0, 1.0, 90.0) if quick else (5.0, 6.0, 3.0, 180.0)
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs" / "predictor_kill"
    logs.mkdir(parents=True, exist_ok=True)
    daily = sample_bars(workdir)
    model = baseline_model(workdir, daily)
    body = v2_request(daily.tail(200).reset_index(drop=True))
    p_http, p_grpc, t_http, t_grpc = free_port(), free_port(), free_port(), free_port()
    upstream = f"127.0.0.1:{p_grpc if protocol == 'grpc-v2' else p_http}"
    predictor = _start(_predictor_args(model, p_http, p_grpc), logs / "predictor.log")
    transformer = _start(
        ["-m", "inference.transformer", "--model_uri", str(model), "--predictor_host", upstream,
         "--predictor_protocol", protocol, "--host", "127.0.0.1", "--http_port", str(t_http),
         "--grpc_port", str(t_grpc), "--predictor_request_timeout_seconds", "2"],
        logs / "transformer.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{t_http}"
    result = PredictorKillResult(scenario=f"predictor SIGKILL under load ({protocol})", protocol=protocol)
    try:
        wait_ready(f"http://127.0.0.1:{p_http}", predictor, logs / "predictor.log")
        wait_ready(url, transformer, logs / "transformer.log")
        with _Load(url, body) as load:
            time.sleep(steady_s)
            killed = time.monotonic()
            stop_now(predictor)
            time.sleep(outage_s)
            restarted = time.monotonic()
            predictor = _start(_predictor_args(model, p_http, p_grpc), logs / "predictor-restarted.log")
            wait_ready(f"http://127.0.0.1:{p_http}", predictor, logs / "predictor-restarted.log", deadline_s)
            back = time.monotonic()
            while load.first_ok_after(back) is None and time.monotonic() - back < deadline_s:
                time.sleep(0.05)
            served_again = load.first_ok_after(back)
            time.sleep(tail_s)
        result.transformer_alive = transformer.poll() is None
        with contextlib.suppress(httpx.HTTPError):
            result.transformer_alive &= httpx.get(f"{url}/v2/health/live", timeout=2).status_code == 200
        _summarise(result, load, killed, back, served_again, restarted)
    finally:
        stop(transformer)
        stop(predictor)
    return result


def stop_now(process: subprocess.Popen) -> None:
    """SIGKILL the process group: no shutdown, no goodbye to open connections."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _summarise(
    result: PredictorKillResult,
    load: _Load,
    killed: float,
    back: float,
    served_again: float | None,
    restarted: float,
) -> None:
    fault_end = served_again if served_again is not None else float("inf")
    result.requests = len(load.samples)
    for sample in load.samples:
        if sample.status != "200":
            result.errors[sample.status] += 1
        if killed <= sample.sent < fault_end:
            result.outage_answers[sample.status] += 1
            result.max_latency_s = max(result.max_latency_s, sample.latency_s)
    result.lost = sum(result.errors[s] for s in ("timeout", "no-answer")) + (0 if result.transformer_alive else 1)
    result.recovery_s = None if served_again is None else served_again - back
    result.predictor_restart_s = back - restarted
    codes = [(t, code) for t, code in load.ready if t >= killed]
    result.readiness_went_false = any(code == 503 for t, code in codes if t < back)
    result.readiness_came_back = any(code == 200 for t, code in codes if t >= back)
    result.notes = (
        f"readiness false during the outage: {result.readiness_went_false}, true again: "
        f"{result.readiness_came_back}; transformer alive: {result.transformer_alive}; predictor reload "
        f"{result.predictor_restart_s:.1f} s"
    )
