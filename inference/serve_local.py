"""``make serve``: predictor + transformer on 127.0.0.1, the published champion or a given model folder.

    python -m inference.serve_local                       # the champion of the published state (else the registry's)
    python -m inference.serve_local --model-dir <dir>     # any exported model or training candidate

The transformer listens on 8080 (REST) and 8081 (gRPC), the predictor on 8085/8086, both on 127.0.0.1 only
(``--host``); the transformer calls the predictor over v2 gRPC (``--predictor-protocol v2`` for REST), with
``WORKERS`` server processes each (default 1) and at most ``MAX_IN_FLIGHT`` requests in flight per worker (more
get 503 + Retry-After at once). Their logs go to ``<data dir>/logs/serve.log``. It prints one line — which
model, kind and version, at which URL — only after a real v2 forecast request through the transformer has
succeeded (built from the published clean bars).
Ctrl-C stops both. A failure is one line saying what to do, and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bitpredict import storage
from bitpredict.config import ConfigError, Settings, load_settings
from bitpredict.errors import BitPredictError
from bitpredict.forecast.artifact import METADATA_FILE
from bitpredict.pipeline.stage_table import serving_store
from bitpredict.runtime import quiet_tensorflow

MODEL_NAME = "bitpredict"
REQUEST_ROWS = 200


class ServeError(BitPredictError, RuntimeError):
    """Serving cannot start; the message says what to do."""


@dataclass(frozen=True)
class Chosen:
    directory: str
    name: str  # registered model name, or "candidate"
    version: str
    kind: str


def _kind_of(directory: str) -> tuple[str, str]:
    from bitpredict.forecast.artifact import locate

    try:
        located = locate(directory, require_saved_model=True)
    except (OSError, ValueError) as exc:  # ArtifactError is a ValueError
        raise ServeError(f"{directory} is not a servable BitPredict model ({exc})") from None
    return located.version, str(located.metadata.get("kind", "lstm"))


def choose_model(settings: Settings, model_dir: str | None) -> Chosen:
    """``model_dir`` as given; else the published champion; else the registry's champion (exported now)."""
    from bitpredict.operations.publish import read_manifest

    if model_dir:
        if not storage.exists(model_dir):
            raise ServeError(f"MODEL_DIR={model_dir} does not exist")
        version, kind = _kind_of(model_dir)
        name = Path(model_dir.rstrip("/")).parent.name if version.isdigit() else "candidate"
        return Chosen(model_dir, name, version, kind)
    champion = (read_manifest(settings) or {}).get("champion") or {}
    folder = champion.get("exported_to")
    if folder and storage.exists(storage.join(folder, METADATA_FILE)):
        version, kind = _kind_of(folder)
        return Chosen(folder, champion.get("model", settings.registered_model_name), version, kind)
    from bitpredict.operations.registry import export_for_serving
    from bitpredict.pipeline.tracking import champion_info

    try:
        registered = champion_info(settings)
    except Exception as exc:  # an unreachable or unreadable registry
        where = settings.tracking_uri
        raise ServeError(f"nothing published and the registry at {where} cannot be read ({exc})") from None
    if registered is None:
        raise ServeError("no champion yet: run `make run` first (or `make serve MODEL_DIR=<dir>`)")
    target = storage.join(serving_store(settings), settings.registered_model_name, str(registered["version"]))
    if not storage.exists(storage.join(target, METADATA_FILE)):
        export_for_serving(settings, registered["version"])
    version, kind = _kind_of(target)
    return Chosen(target, settings.registered_model_name, version, kind)


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Until ``/v2/health/ready`` answers 200; the transformer's says 200 only while its predictor is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServeError(f"the server at {url} exited (code {process.returncode}); see {log}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ServeError(f"{url} not ready after {timeout:.0f} s; see {log}")


def probe(settings: Settings, transformer: str, predictor: str) -> dict[str, Any]:
    """One real v2 request: a forecast from the last published days through the transformer.

    Without published bars (a bare ``MODEL_DIR``), the predictor itself is asked with a zero window of the
    model's own shape, so the line is still printed only after the model has answered.
    """
    from bitpredict.operations.publish import published_path
    from bitpredict.pipeline.stage_table import CLEAN, SENTIMENT_DAILY
    from inference.client import v2_request, with_sentiment

    bars_uri = published_path(settings, CLEAN)
    if storage.exists(bars_uri):
        bars = storage.read_parquet(bars_uri).tail(REQUEST_ROWS).reset_index(drop=True)
        daily_uri = published_path(settings, SENTIMENT_DAILY)
        daily = storage.read_parquet(daily_uri) if storage.exists(daily_uri) else None
        body = v2_request(bars, with_sentiment(bars, daily))  # what the UI sends: the days' sentiment too
        reply = httpx.post(f"{transformer}/v2/models/{MODEL_NAME}/infer", json=body, timeout=30)
        if reply.status_code != 200:
            raise ServeError(f"the first forecast request failed ({reply.status_code}: {reply.text[:300]})")
        return {o["name"]: o["data"][0] for o in reply.json()["outputs"]}
    meta = httpx.get(f"{predictor}/v2/models/{MODEL_NAME}", timeout=10).json()
    tensor = meta["inputs"][0]
    shape = [1, *[int(d) for d in tensor["shape"][1:]]]
    size = 1
    for d in shape:
        size *= d
    body = {"inputs": [{"name": tensor["name"], "shape": shape, "datatype": "FP32", "data": [0.0] * size}]}
    reply = httpx.post(f"{predictor}/v2/models/{MODEL_NAME}/infer", json=body, timeout=30)
    if reply.status_code != 200:
        raise ServeError(f"the first request to the predictor failed ({reply.status_code}: {reply.text[:300]})")
    return {"as_of": None}


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR") or None)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8080))
    parser.add_argument("--predictor-port", type=int, default=int(os.environ.get("PREDICTOR_PORT") or 8085))
    parser.add_argument(
        "--predictor-protocol",
        choices=("grpc-v2", "v2"),
        default=os.environ.get("PREDICTOR_PROTOCOL") or "grpc-v2",
        help="transformer → predictor: v2 gRPC (default) or v2 REST",
    )
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS") or 1))
    parser.add_argument("--max-in-flight", type=int, default=int(os.environ.get("MAX_IN_FLIGHT") or 4))
    args = parser.parse_args(argv)
    processes: list[subprocess.Popen] = []
    signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM stops both servers too, like Ctrl-C
    try:
        settings = load_settings()
        chosen = choose_model(settings, args.model_dir)
        log = Path(settings.path("logs", "serve.log")) if not storage.is_gcs(settings.data_dir) else Path("serve.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        env = quiet_tensorflow(dict(os.environ))
        with log.open("a") as out:
            start = {"stdout": out, "stderr": subprocess.STDOUT, "env": env}
            python = sys.executable
            serving = ["--host", "127.0.0.1", "--workers", str(args.workers),
                       "--max_in_flight", str(args.max_in_flight)]  # fmt: skip
            upstream = args.predictor_port + (1 if args.predictor_protocol == "grpc-v2" else 0)
            processes.append(subprocess.Popen(
                [python, "-m", "inference.predictor", "--model_dir", chosen.directory, *serving,
                 "--http_port", str(args.predictor_port), "--grpc_port", str(args.predictor_port + 1)], **start,
            ))  # fmt: skip
            processes.append(subprocess.Popen(
                [python, "-m", "inference.transformer", "--model_uri", chosen.directory, *serving,
                 "--predictor_host", f"127.0.0.1:{upstream}", "--predictor_protocol", args.predictor_protocol,
                 "--http_port", str(args.port), "--grpc_port", str(args.port + 1),
                 "--request_log", settings.path("requests"),
                 "--calibration", settings.path("reports", "drift", "aci.json")], **start,
            ))  # fmt: skip
        transformer, predictor = f"http://127.0.0.1:{args.port}", f"http://127.0.0.1:{args.predictor_port}"
        wait_ready(predictor, processes[0], log)
        wait_ready(transformer, processes[1], log)
        forecast = probe(settings, transformer, predictor)
        day = f", forecast for {forecast['as_of']} answered" if forecast.get("as_of") else ""
        print(f"serving {chosen.name} v{chosen.version} ({chosen.kind}) at {transformer}/v2/models/{MODEL_NAME}/infer"
              f"{day} — logs {log}, Ctrl-C stops", flush=True)  # fmt: skip
        processes[1].wait()
        if processes[1].returncode not in (0, -signal.SIGTERM):
            raise ServeError(f"the transformer exited (code {processes[1].returncode}); see {log}")
    except (ServeError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"error: the first request failed ({type(exc).__name__}: {exc}); see the serve log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        _stop(list(reversed(processes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
