"""Serving latency and throughput: through the transformer, directly to the predictor, and in-process.

Starts the predictor and the transformer (``inference/``) on 127.0.0.1 with the model in ``--model-dir``
(an exported version folder or a training candidate, e.g. ``data/pipeline_root/<run>/train/model``), sends
v2 requests built from the last 200 real daily bars (``../shared/data/btc_usd_daily.csv``), and prints:

* sequential latency p50/p95/p99 for each path (one request at a time);
* closed-loop throughput (requests/s) with ``--concurrency`` requests in flight;
* open-loop latency at a fixed ``--rate`` (requests/s) — the "p99 at 100 requests/s" figure;
* the ratios: transformer overhead = transformer latency / predictor latency.

Targets (2 cores): ≥ 300 req/s through the transformer, p99 ≤ 50 ms at 100 req/s, overhead ≤ 2×.

    .venv/bin/python benchmarks/bench_serving.py --model-dir data/models/serving/bitpredict-lstm
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from inference.client import v2_request  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daily_bars(rows: int) -> pd.DataFrame:
    folder = Path(os.environ.get("BITPREDICT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    raw = pd.read_csv(folder / "btc_usd_daily.csv")
    bars = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(raw["Date"], utc=True),
            **{c.lower(): raw[c].astype(float) for c in ("Open", "High", "Low", "Close")},
            "volume": raw["Volume"].astype(float) / raw["Close"].astype(float),
        }
    )
    return bars.dropna().tail(rows).reset_index(drop=True)


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready")


def percentiles(samples: list[float]) -> str:
    ms = np.asarray(samples) * 1000
    return (
        f"p50 {np.percentile(ms, 50):6.2f} ms  p95 {np.percentile(ms, 95):6.2f} ms  p99 {np.percentile(ms, 99):6.2f} ms"
    )


def sequential(url: str, body: dict, n: int) -> list[float]:
    times = []
    with httpx.Client(timeout=30) as client:
        for _ in range(10):
            client.post(url, json=body).raise_for_status()  # warm-up
        for _ in range(n):
            start_time = time.perf_counter()
            client.post(url, json=body).raise_for_status()
            times.append(time.perf_counter() - start_time)
    return times


async def closed_loop(url: str, body: dict, concurrency: int, seconds: float) -> float:
    done = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                (await client.post(url, json=body)).raise_for_status()
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


async def open_loop(url: str, body: dict, rate: float, seconds: float) -> tuple[list[float], int]:
    """Requests sent on a fixed schedule (not waiting for answers): latency as a client at ``rate`` sees it."""
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as client:

        async def one() -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                (await client.post(url, json=body)).raise_for_status()
                latencies.append(time.perf_counter() - t0)
            except httpx.HTTPError:
                errors += 1

        tasks = []
        begin = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies, errors


def in_process(model_dir: str, bars: pd.DataFrame, n: int) -> tuple[list[float], list[float]]:
    """The SavedModel alone, and features + SavedModel (the transformer's work without HTTP)."""
    import tensorflow as tf

    from bitpredict.serving import ModelSpec, feature_window, locate_model, parse_request

    located = locate_model(model_dir)
    spec = ModelSpec.from_metadata(located.metadata, located.version)
    signature = tf.saved_model.load(located.saved_model_dir).signatures["serving_default"]
    body = v2_request(bars)
    inputs = {t["name"]: (t["datatype"], np.asarray(t["data"])) for t in body["inputs"]}
    window = tf.constant(feature_window(parse_request(inputs, spec), spec))
    model_times, full_times = [], []
    for _ in range(10):
        signature(features=window)
    for _ in range(n):
        t0 = time.perf_counter()
        signature(features=window)
        model_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        signature(features=tf.constant(feature_window(parse_request(inputs, spec), spec)))
        full_times.append(time.perf_counter() - t0)
    return model_times, full_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per path")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()

    bars = daily_bars(200)
    p_http, t_http = free_port(), free_port()
    predictor = start(["-m", "inference.predictor", "--model_dir", args.model_dir, "--host", "127.0.0.1",
                       "--http_port", str(p_http), "--grpc_port", str(free_port())])  # fmt: skip
    transformer = start(["-m", "inference.transformer", "--model_uri", args.model_dir, "--host", "127.0.0.1",
                         "--predictor_host", f"127.0.0.1:{p_http}", "--http_port", str(t_http),
                         "--grpc_port", str(free_port())])  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{p_http}")
        wait_ready(f"http://127.0.0.1:{t_http}")
        transformer_url = f"http://127.0.0.1:{t_http}/v2/models/bitpredict/infer"
        predictor_url = f"http://127.0.0.1:{p_http}/v2/models/bitpredict/infer"
        from bitpredict.serving import ModelSpec, feature_window, locate_model, parse_request

        located = locate_model(args.model_dir)
        spec = ModelSpec.from_metadata(located.metadata, located.version)
        body = v2_request(bars)
        inputs = {t["name"]: (t["datatype"], np.asarray(t["data"])) for t in body["inputs"]}
        window = feature_window(parse_request(inputs, spec), spec)
        features_body = {"inputs": [{"name": "features", "shape": list(window.shape), "datatype": "FP32",
                                     "data": window.ravel().tolist()}]}  # fmt: skip

        model_only, features_and_model = in_process(args.model_dir, bars, args.requests)
        via_predictor = sequential(predictor_url, features_body, args.requests)
        via_transformer = sequential(transformer_url, body, args.requests)
        print(f"sequential latency, {args.requests} requests each (200 daily bars per request)")
        print(f"  in-process SavedModel          {percentiles(model_only)}")
        print(f"  in-process features + model    {percentiles(features_and_model)}")
        print(f"  predictor (v2 REST)            {percentiles(via_predictor)}")
        print(f"  transformer → predictor (REST) {percentiles(via_transformer)}")
        overhead = np.median(via_transformer) / np.median(via_predictor)
        print(f"  transformer / predictor (p50)  {overhead:.2f}x   (target ≤ 2x)")

        rps_t = asyncio.run(closed_loop(transformer_url, body, args.concurrency, args.seconds))
        rps_p = asyncio.run(closed_loop(predictor_url, features_body, args.concurrency, args.seconds))
        print(f"throughput, {args.concurrency} in flight, {args.seconds:.0f} s")
        print(f"  transformer {rps_t:7.1f} req/s   (target ≥ 300)")
        print(f"  predictor   {rps_p:7.1f} req/s")

        latencies, errors = asyncio.run(open_loop(transformer_url, body, args.rate, args.seconds))
        print(f"open loop at {args.rate:.0f} req/s for {args.seconds:.0f} s through the transformer")
        print(f"  {percentiles(latencies)}  errors {errors}   (target p99 ≤ 50 ms)")
    finally:
        for process in (transformer, predictor):
            process.terminate()
        for process in (transformer, predictor):
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
