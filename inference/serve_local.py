"""``make serve``: predictor + transformer on 127.0.0.1, the model from MLflow's ``champion`` or a path.

    python -m inference.serve_local                       # the champion (exported from the MLflow registry)
    python -m inference.serve_local --model-dir <dir>     # any exported model or training candidate

The transformer listens on 8080 (REST) and 8081 (gRPC), the predictor on 8085/8086. Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bitpredict.config import load_settings


def resolve_model_dir(model_dir: str | None) -> str:
    """A path as given, or the champion's serving copy (exported now if it is not there yet)."""
    if model_dir:
        if not Path(model_dir).exists():
            raise SystemExit(f"{model_dir} does not exist")
        return model_dir
    from bitpredict.registry import champion_info, export_for_serving

    settings = load_settings()
    champion = champion_info(settings)
    if champion is None:
        raise SystemExit(
            "no champion in the MLflow registry yet (no model has beaten the baselines). Serve a candidate with "
            "`make serve MODEL_DIR=<dir>`, e.g. the newest data/pipeline_root/*/train/model"
        )
    target = Path(settings.serving_store) / settings.registered_model_name / str(champion["version"])
    if not (target / "saved_model.pb").exists():
        export_for_serving(settings, champion["version"])
    return str(target)


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited (code {process.returncode})")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url}: not ready after {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR") or None)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--predictor-port", type=int, default=8085)
    args = parser.parse_args(argv)
    model_dir = resolve_model_dir(args.model_dir)
    settings = load_settings()
    python = sys.executable
    predictor = subprocess.Popen(
        [python, "-m", "inference.predictor", "--model_dir", model_dir, "--host", "127.0.0.1",
         "--http_port", str(args.predictor_port), "--grpc_port", str(args.predictor_port + 1)],
    )  # fmt: skip
    transformer = subprocess.Popen(
        [python, "-m", "inference.transformer", "--model_uri", model_dir, "--host", "127.0.0.1",
         "--predictor_host", f"127.0.0.1:{args.predictor_port}", "--http_port", str(args.port),
         "--grpc_port", str(args.port + 1), "--request_log", settings.path("requests")],
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{args.predictor_port}", predictor)
        wait_ready(f"http://127.0.0.1:{args.port}", transformer)
        print(f"\nserving {model_dir}\n  transformer http://127.0.0.1:{args.port} (gRPC {args.port + 1})")
        print(f"  predictor   http://127.0.0.1:{args.predictor_port}\n")
        print("try it with the last 200 clean days:")
        print("  .venv/bin/python -m inference.client data/interim/clean_1d.parquet > /tmp/req.json")
        url = f"http://127.0.0.1:{args.port}/v2/models/bitpredict/infer"
        print(f"  curl -s -H 'content-type: application/json' -d @/tmp/req.json {url}")
        transformer.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for process in (transformer, predictor):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (transformer, predictor):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
