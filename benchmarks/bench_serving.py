"""Serving at the predictor's pace? The transformer against the predictor alone, same client, one run.

Starts on 127.0.0.1, with the model in ``--model-dir`` (an exported version folder or a training candidate):
the predictor, a transformer that calls it over v2 REST and one that calls it over v2 gRPC (each with one
kept-alive connection). v2 requests are built from the last 200 real daily bars
(``../shared/data/btc_usd_daily.csv``, else the embedded sample). For each path — predictor alone (the
features window, what the transformer sends it), transformer with the REST hop, transformer with the gRPC hop —
the same client measures:

* sequential latency p50/p99 (one request at a time);
* closed-loop throughput with ``--concurrency`` requests in flight for ``--seconds`` (answers other than 200
  are counted apart, never as throughput);
* open loop at ``--rate`` requests/s for ``--seconds``: p99 of the accepted requests and the share shed (503
  with Retry-After: each worker admits ``--max-in-flight`` requests at once).

Then the ratios the targets are about (issue 18): transformer throughput ÷ predictor's (target ≥ 0.5) and
transformer p50 ÷ predictor's (target ≤ 2). ``--doc docs/serving.md`` also writes the table into that page's
``serving-bench`` block (generated, never typed).

    .venv/bin/python benchmarks/bench_serving.py --model-dir data/models/candidate [--doc docs/serving.md]

On a machine shared with other work the latencies are upper bounds and the throughputs lower bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bitpredict.docs_blocks import replace_block  # noqa: E402
from inference.client import v2_request  # noqa: E402

HEADERS = {"content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daily_bars(rows: int) -> pd.DataFrame:
    """The last ``rows`` real daily bars: the shared data's daily CSV, else the embedded sample resampled."""
    folder = Path(os.environ.get("BITPREDICT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if (folder / "btc_usd_daily.csv").is_file():
        raw = pd.read_csv(folder / "btc_usd_daily.csv")
        bars = pd.DataFrame(
            {
                "timestamp": pd.to_datetime(raw["Date"], utc=True),
                **{c.lower(): raw[c].astype(float) for c in ("Open", "High", "Low", "Close")},
                "volume": raw["Volume"].astype(float) / raw["Close"].astype(float),
            }
        )
    else:
        hourly = pd.read_parquet(REPO_ROOT / "data" / "sample" / "btc_usd_hourly.parquet")
        hourly = hourly.set_index(pd.to_datetime(hourly["timestamp"], utc=True))
        agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
        bars = hourly.resample("1D").agg(agg).dropna().rename_axis("timestamp").reset_index()
    return bars.dropna().tail(rows).reset_index(drop=True)


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_ready(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready")


@dataclass
class PathFigures:
    name: str
    sequential: list[float] = field(default_factory=list)
    throughput: float = 0.0
    closed_loop_other: int = 0  # answers other than 200 in the closed loop (shed or failed)
    open_accepted: list[float] = field(default_factory=list)
    open_shed: int = 0
    open_errors: int = 0
    open_sent: int = 0

    def p(self, q: float, samples: list[float] | None = None) -> float:
        values = self.sequential if samples is None else samples
        return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")

    @property
    def shed_share(self) -> float:
        return self.open_shed / self.open_sent if self.open_sent else 0.0


def sequential(url: str, body: bytes, n: int) -> list[float]:
    times = []
    with httpx.Client(timeout=30) as client:
        for _ in range(10):
            client.post(url, content=body, headers=HEADERS).raise_for_status()  # warm-up
        for _ in range(n):
            started = time.perf_counter()
            client.post(url, content=body, headers=HEADERS).raise_for_status()
            times.append(time.perf_counter() - started)
    return times


async def closed_loop(url: str, body: bytes, concurrency: int, seconds: float) -> tuple[float, int]:
    """(successful requests/s, answers other than 200) with ``concurrency`` requests always in flight."""
    done = other = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal done, other
            while time.perf_counter() < stop:
                reply = await client.post(url, content=body, headers=HEADERS)
                if reply.status_code == 200:
                    done += 1
                else:
                    other += 1
                    await asyncio.sleep(0.01)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started), other


async def open_loop(url: str, body: bytes, rate: float, seconds: float) -> tuple[list[float], int, int, int]:
    """Requests sent on a fixed schedule, not waiting for answers: (accepted latencies, shed, errors, sent)."""
    accepted: list[float] = []
    shed = errors = 0
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=500)) as client:

        async def one() -> None:
            nonlocal shed, errors
            started = time.perf_counter()
            try:
                reply = await client.post(url, content=body, headers=HEADERS)
            except httpx.HTTPError:
                errors += 1
                return
            if reply.status_code == 200:
                accepted.append(time.perf_counter() - started)
            elif reply.status_code == 503 and "retry-after" in reply.headers:
                shed += 1
            else:
                errors += 1

        tasks = []
        begin = time.perf_counter()
        sent = int(rate * seconds)
        for i in range(sent):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return accepted, shed, errors, sent


def in_process(model_dir: str, body: dict, n: int) -> tuple[list[float], list[float]]:
    """The SavedModel alone, and features + SavedModel (the transformer's work without HTTP)."""
    import tensorflow as tf

    from bitpredict.forecast.artifact import INPUT_NAME, SIGNATURE, locate
    from bitpredict.forecast.serving import ModelSpec, feature_window, parse_bars

    located = locate(model_dir)
    spec = ModelSpec.from_metadata(located.metadata, located.version)
    signature = tf.saved_model.load(located.saved_model_dir).signatures[SIGNATURE]
    inputs = {t["name"]: (t["datatype"], np.asarray(t["data"])) for t in body["inputs"]}
    window = tf.constant(feature_window(parse_bars(inputs, spec), spec))
    model_times, full_times = [], []
    for _ in range(10):
        signature(**{INPUT_NAME: window})
    for _ in range(n):
        started = time.perf_counter()
        signature(**{INPUT_NAME: window})
        model_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        signature(**{INPUT_NAME: tf.constant(feature_window(parse_bars(inputs, spec), spec))})
        full_times.append(time.perf_counter() - started)
    return model_times, full_times


def features_body(model_dir: str, body: dict) -> bytes:
    """What the transformer sends the predictor for ``body``: the model's window as a v2 FP32 tensor."""
    from bitpredict.forecast.artifact import INPUT_NAME, locate
    from bitpredict.forecast.serving import ModelSpec, feature_window, parse_bars

    located = locate(model_dir)
    spec = ModelSpec.from_metadata(located.metadata, located.version)
    inputs = {t["name"]: (t["datatype"], np.asarray(t["data"])) for t in body["inputs"]}
    window = feature_window(parse_bars(inputs, spec), spec)
    tensor = {"name": INPUT_NAME, "shape": list(window.shape), "datatype": "FP32", "data": window.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def measure(path: PathFigures, url: str, body: bytes, args: argparse.Namespace) -> None:
    path.sequential = sequential(url, body, args.requests)
    path.throughput, path.closed_loop_other = asyncio.run(closed_loop(url, body, args.concurrency, args.seconds))
    path.open_accepted, path.open_shed, path.open_errors, path.open_sent = asyncio.run(
        open_loop(url, body, args.rate, args.seconds)
    )


def report(paths: list[PathFigures], in_proc: tuple[list[float], list[float]], args: argparse.Namespace) -> str:
    predictor = paths[0]
    command = " ".join(["benchmarks/bench_serving.py", *sys.argv[1:]])
    lines = [
        f"`{command}` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores shared by the client, the "
        f"servers and other work, so latencies are upper bounds and throughputs lower bounds; 200 daily bars per "
        f"request; closed loop {args.concurrency} in flight for {args.seconds:.0f} s; open loop {args.rate:.0f} "
        f"req/s for {args.seconds:.0f} s; --max_in_flight {args.max_in_flight}, --workers 1):",
        "",
        "| path | p50 | p99 | throughput | ÷ predictor's | p50 ÷ predictor's "
        f"| open loop {args.rate:.0f}/s: p99 accepted | shed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        ratio = path.throughput / predictor.throughput if predictor.throughput else float("nan")
        p50_ratio = path.p(50) / predictor.p(50)
        targets = "" if path is predictor else (" ✓" if ratio >= 0.5 else " ✗")
        p50_target = "" if path is predictor else (" ✓" if p50_ratio <= 2 else " ✗")
        other = f" ({path.closed_loop_other} not 200)" if path.closed_loop_other else ""
        errors = f", {path.open_errors} errors" if path.open_errors else ""
        lines.append(
            f"| {path.name} | {path.p(50):.1f} ms | {path.p(99):.1f} ms | {path.throughput:.0f} req/s{other} "
            f"| {ratio:.2f}×{targets} | {p50_ratio:.2f}×{p50_target} | {path.p(99, path.open_accepted):.0f} ms "
            f"| {path.shed_share:.0%}{errors} |"
        )
    model_only, full = in_proc
    lines += [
        "",
        f"In-process, no HTTP: SavedModel p50 {np.percentile(model_only, 50) * 1000:.1f} ms; features + SavedModel "
        f"p50 {np.percentile(full, 50) * 1000:.1f} ms. Targets: throughput ≥ 0.5× the predictor's, p50 ≤ 2× its "
        "p50, open-loop p99 of accepted ≤ 50 ms (or the share shed beside it).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per path")
    parser.add_argument("--concurrency", type=int, default=4, help="closed-loop requests in flight (same client)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--max-in-flight", type=int, default=4, help="the servers' --max_in_flight")
    parser.add_argument("--doc", type=Path, help="also write the table into this page's serving-bench block")
    args = parser.parse_args()

    bars = daily_bars(200)
    body_doc = v2_request(bars)
    body = json.dumps(body_doc).encode()
    window_body = features_body(args.model_dir, body_doc)
    p_http, p_grpc, t_rest, t_grpc = free_port(), free_port(), free_port(), free_port()
    common = ["--host", "127.0.0.1", "--max_in_flight", str(args.max_in_flight)]
    processes = [
        start(["-m", "inference.predictor", "--model_dir", args.model_dir, *common,
               "--http_port", str(p_http), "--grpc_port", str(p_grpc)]),
        start(["-m", "inference.transformer", "--model_uri", args.model_dir, *common,
               "--predictor_host", f"127.0.0.1:{p_http}", "--predictor_protocol", "v2",
               "--http_port", str(t_rest), "--grpc_port", str(free_port())]),
        start(["-m", "inference.transformer", "--model_uri", args.model_dir, *common,
               "--predictor_host", f"127.0.0.1:{p_grpc}", "--predictor_protocol", "grpc-v2",
               "--http_port", str(t_grpc), "--grpc_port", str(free_port())]),
    ]  # fmt: skip
    try:
        for port in (p_http, t_rest, t_grpc):
            wait_ready(f"http://127.0.0.1:{port}")
        paths = [
            (PathFigures("predictor alone (v2 REST, the window)"), p_http, window_body),
            (PathFigures("transformer → predictor over v2 REST"), t_rest, body),
            (PathFigures("transformer → predictor over v2 gRPC"), t_grpc, body),
        ]
        for figures, port, payload in paths:
            measure(figures, f"http://127.0.0.1:{port}/v2/models/bitpredict/infer", payload, args)
            print(f"measured: {figures.name}", file=sys.stderr, flush=True)
        in_proc = in_process(args.model_dir, body_doc, args.requests)
        table = report([p for p, _, _ in paths], in_proc, args)
        print(table)
        if args.doc:
            replace_block(args.doc, "serving-bench", table)
            print(f"table written into {args.doc}", file=sys.stderr)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
