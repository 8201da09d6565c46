"""``make run``: the whole Kubeflow pipeline on this machine, no cluster, through ``kfp.local``.

``kfp.local.SubprocessRunner(use_venv=False)`` runs each component of the compiled-from-source pipeline
as a subprocess in the current environment (the same function bodies the cluster runs in the image).
``kfp.local`` has no step cache, so the tasks pass ``cache_dir`` and ``bitpredict.orchestration.stages`` reuses a stage
whose inputs, settings and code are unchanged. The pipeline's last task publishes the outputs into the
data dir (``bitpredict.operations.publish``), so this runner copies nothing itself.

The screen: one line per stage (ran or reused, seconds, its key figure) with a ticking line for the stage
that is running, then a summary. The pipeline itself runs in a child process whose output — KFP's and
TensorFlow's logs — goes to ``<data dir>/logs/run-<time>.log``; ``-v`` (or ``VERBOSE=1``) shows it too.

    python -m pipelines.run_local                          # the embedded sample (data/sample), offline
    python -m pipelines.run_local --sources live           # live sources (Binance, CryptoCompare, CoinGecko, RSS)
    python -m pipelines.run_local --data ../shared/data    # the files source: CSV/parquet exports in a folder
    python -m pipelines.run_local --replay                 # the last published run's parameters again
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bitpredict.config import ConfigError, Settings, load_settings
from bitpredict.errors import BitPredictError
from bitpredict.orchestration.parameters import NAMES, local_values
from bitpredict.pipeline.stage_table import FEATURES_META, METRICS, SENTIMENT_META
from bitpredict.runtime import quiet_tensorflow
from pipelines.data_choice import LIVE_SOURCES, DataChoiceError, choose, describe_parameters
from pipelines.progress import StageBoard

PARAMETERS = NAMES  # the pipeline's parameters, defined in bitpredict.orchestration.parameters


RUNNER_PID = "BITPREDICT_RUNNER_PID"  # the runner's pid, for the pipeline child's watch (``_die_with_parent``)


class RunError(BitPredictError, RuntimeError):
    """The run cannot start or did not succeed; the message says what to do."""


def reachable(url: str, timeout: float = 3.0) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "", parts.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def latest_run_dir(pipeline_root: Path) -> Path:
    runs = [p for p in pipeline_root.glob("bitpredict-*") if p.is_dir()]
    if not runs:
        raise FileNotFoundError(f"no pipeline run under {pipeline_root}")
    return max(runs, key=lambda p: p.stat().st_mtime)


def pipeline_arguments(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The pipeline's parameters for a local run: the settings' values, then the data choice and the command line."""
    data_root = Path(settings.data_dir).resolve()
    try:
        chosen = choose(args.data, args.sources)
    except DataChoiceError as exc:
        raise RunError(str(exc)) from exc
    files_dir, sources = chosen.files_dir, chosen.sources
    if sources == LIVE_SOURCES and not any(
        reachable(u) for u in (settings.binance_url, settings.coingecko_url, settings.cryptocompare_url)
    ):  # no fallback to the sample: the user asked for today's market
        raise RunError(
            "SOURCES=live, but no live market source is reachable from here; run `make run` (the embedded "
            "sample) or `make run DATA=<folder of exports>` (e.g. DATA=../shared/data)"
        )
    local = settings.model_copy(update={"data_dir": str(data_root)})
    values = local_values(local)  # since, interval, model and promotion values, the serving store
    given = {"window": args.window, "epochs": args.epochs, "test_days": args.test_days}
    return {
        **values,
        **{name: value for name, value in given.items() if value},
        "files_dir": files_dir,
        "sources": sources,
        "mlflow_tracking_uri": local.tracking_uri,  # a sqlite store under the data dir unless one is set
        "cache_dir": "" if args.no_cache else str(data_root / ".stage_cache"),
        "extra_settings": args.extra_settings,
    }


def replay_arguments(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The recorded parameters of the last published run: exactly what it ran with."""
    if not manifest:
        raise RunError("nothing has been published yet, so there is no run to replay: run `make run` first")
    recorded = manifest.get("parameters") or {}
    missing = [p for p in PARAMETERS if p not in recorded]
    if missing:
        raise RunError(f"the published manifest does not record {missing}: run `make run` once to refresh it")
    return {p: recorded[p] for p in PARAMETERS}


def run_pipeline(parameters: dict[str, Any]) -> None:
    """Run the pipeline through kfp.local in this process (the child's job); raises when a task fails."""
    import kfp.local

    from pipelines.bitpredict_pipeline import bitpredict_pipeline

    data_root = Path(parameters["data_root"])
    data_root.mkdir(parents=True, exist_ok=True)
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(data_root / "pipeline_root"))
    bitpredict_pipeline(**parameters)


def _die_with_parent(poll_s: float = 0.5) -> None:
    """Kill-safety: the pipeline's process tree stops when the runner dies, even by SIGKILL.

    The runner holds the data dir's lock; its pipeline child and the child's task processes do not. A runner
    killed alone (``kill -9``, the OOM killer) would leave them publishing without the lock while a next run
    starts. So the child leads its own process group (its task processes join it) and a watcher kills that
    group as soon as the runner is gone (the child is re-parented).
    """
    import signal
    import threading

    parent = int(os.environ.get(RUNNER_PID, os.getppid()))  # from the runner: it may be gone before we get here
    if os.getpgid(0) != os.getpid():  # already leading a group (or a session) when started that way
        os.setpgid(0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _child(parameters_file: str) -> int:
    _die_with_parent()
    quiet_tensorflow()
    parameters = json.loads(Path(parameters_file).read_text())
    run_pipeline(parameters)
    return 0


def launch(parameters: dict[str, Any], log_file: Path, verbose: bool, board: StageBoard) -> int:
    """Run the pipeline in a child process; draw the stage lines from its progress file. Returns its exit code."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bitpredict-run-") as tmp:
        params_file, progress = Path(tmp) / "parameters.json", Path(tmp) / "progress.jsonl"
        params_file.write_text(json.dumps(parameters))
        progress.touch()
        env = quiet_tensorflow({**os.environ, "BITPREDICT_PROGRESS": str(progress), "PYTHONUNBUFFERED": "1",
                                RUNNER_PID: str(os.getpid())})  # fmt: skip
        command = [sys.executable, "-m", "pipelines.run_local", "--child", str(params_file)]
        with log_file.open("w") as log:
            log.write(f"# {datetime.now(UTC).isoformat(timespec='seconds')} {' '.join(command)}\n")
            log.write(f"# parameters: {json.dumps(parameters)}\n")
            log.flush()
            child = subprocess.Popen(
                command, stdout=subprocess.PIPE if verbose else log, stderr=subprocess.STDOUT, env=env, text=True
            )
            if verbose:
                assert child.stdout is not None
                for line in child.stdout:  # everything to the terminal and the log; stage lines as they end
                    sys.stdout.write(line)
                    log.write(line)
                    board.poll(progress)
            else:
                while child.poll() is None:
                    board.poll(progress)
                    board.tick()
                    time.sleep(board.interval)
            child.wait()
            board.poll(progress)
            board.finish()
            return child.returncode


def _read_json(path: str) -> dict[str, Any] | None:
    from bitpredict import storage

    try:
        return json.loads(storage.read_text(path)) if storage.exists(path) else None
    except (OSError, ValueError):
        return None


def data_line(settings: Settings, parameters: dict[str, Any]) -> str:
    """Which data the run used: the choice, the published feature span, and how many texts fed sentiment."""
    from bitpredict.operations.publish import resolve

    line = f"data: {describe_parameters(parameters)}"
    features = _read_json(resolve(settings, *FEATURES_META.split("/")))
    if features:
        line += f" → {features['rows']:,} days, {features['first'][:10]} → {features['last'][:10]}"
    texts = _read_json(resolve(settings, *SENTIMENT_META.split("/")))
    if texts is not None:
        line += f"; {texts.get('news', 0):,} news, {texts.get('tweets', 0):,} tweets"
    return line


def summary_lines(
    settings: Settings, board: StageBoard, seconds: float, log_file: Path, parameters: dict[str, Any]
) -> list[str]:
    """What the run left in the published state, in a few lines; the full table only when evaluate ran."""
    from bitpredict.operations.publish import read_manifest, resolve

    manifest = read_manifest(settings) or {}
    reused = [s.name for s in board.finished if s.cached]
    lines = [f"\nBitPredict pipeline finished in {seconds:.0f} s (run {manifest.get('run_id', '?')}"
             + (f"; {len(reused)} of {len(board.finished)} stages reused)" if reused else ")")]  # fmt: skip
    lines.append(data_line(settings, parameters))
    metrics = _read_json(resolve(settings, *METRICS.split("/")))
    evaluated = any(s.name == "evaluate" and not s.cached for s in board.finished)
    if metrics and evaluated:
        from bitpredict.evaluation.report import markdown_table

        lines.append(markdown_table(metrics, metrics["decision"]))
    elif metrics:
        best = metrics.get("best")
        lines.append(f"evaluation unchanged since the last run{f' (best: {best})' if best else ''}")
    champion = manifest.get("champion")
    if champion:
        why = f" — {champion['why']}" if champion.get("why") else ""
        lines.append(f"champion: {champion['model']} v{champion['version']} ({champion['kind']}){why}")
    else:
        lines.append("champion: none registered")
    lines.append(f"published to {settings.data_dir}/ (interim, processed, reports/evaluation, models)")
    lines.append("next: `make serve` (forecasts), `make ui` (http://127.0.0.1:8501), `make drift`")
    lines.append(f"log: {log_file}")
    return lines


def doc_results(settings: Settings, epochs: int) -> str:
    from bitpredict.evaluation.report import markdown_table
    from bitpredict.operations.publish import resolve

    features = _read_json(resolve(settings, *FEATURES_META.split("/"))) or {}
    metrics = _read_json(resolve(settings, *METRICS.split("/")))
    if not metrics:
        raise RunError("no published evaluation to write into the results block")
    blocks = metrics.get("blocks") or []
    fitted = ", ".join(f"{b['epochs_run']} (best {b['best_epoch']})" for b in blocks if "epochs_run" in b)
    head = f"Data: {features.get('rows')} days, {str(features.get('first'))[:10]} → {str(features.get('last'))[:10]}."
    if fitted:
        head += f" Epochs run per walk-forward refit (max {epochs}, early stopping): {fitted}."
    return head + "\n\n" + markdown_table(metrics, metrics["decision"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="Folder of CSV/parquet exports (the files source) instead of the sample.")
    parser.add_argument("--sources", choices=("sample", "live"), default=None,
                        help="sample (default: data/sample, offline) or live (the public APIs).")  # fmt: skip
    parser.add_argument("--data-root", default=None, help="Persistent data dir (default: the data_dir setting).")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--window", type=int, default=None)
    parser.add_argument("--test-days", type=int, default=None)
    parser.add_argument("--extra-settings", default="{}", help="JSON object of any other setting.")
    parser.add_argument("--no-cache", action="store_true", help="Run every stage even when nothing changed.")
    parser.add_argument("--replay", action="store_true", help="Run with the last published run's parameters.")
    parser.add_argument("--doc", type=Path, help="Write the run's results table into this page (docs/forecasting.md).")
    parser.add_argument("-v", "--verbose", action="store_true", default=os.environ.get("VERBOSE", "") not in ("", "0"),
                        help="Show KFP's and TensorFlow's full logs too (also VERBOSE=1).")  # fmt: skip
    parser.add_argument("--lock-timeout", type=float, default=1800.0,
                        help="Seconds to wait for another run on the same data dir to finish.")  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child)

    from bitpredict.operations.publish import read_manifest

    try:
        settings = load_settings(**({"data_dir": args.data_root} if args.data_root else {}))
        parameters = replay_arguments(read_manifest(settings)) if args.replay else pipeline_arguments(args, settings)
        settings = load_settings(data_dir=parameters["data_root"])
    except (RunError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from bitpredict.pipeline.runlock import RunLocked, run_lock

    try:
        with run_lock(parameters["data_root"], "make run", args.lock_timeout, on_wait=print):
            return _run(args, parameters, settings)
    except RunLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


def _run(args: argparse.Namespace, parameters: dict[str, Any], settings: Settings) -> int:
    """The run itself, with the data dir's run lock held."""
    from bitpredict.operations.publish import recover

    for line in recover(parameters["data_root"]):  # a run killed while publishing: its previous state back first
        print(f"recovered a stopped publish: {line}")
    log_file = Path(parameters["data_root"]) / "logs" / f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"
    board = StageBoard(sys.stdout)
    started = time.monotonic()
    code = launch(parameters, log_file, args.verbose, board)
    elapsed = time.monotonic() - started
    if code != 0:
        failed = board.failed
        where = f"stage {failed.name} failed: {failed.error}" if failed else f"the pipeline failed (exit {code})"
        print(f"\nerror: {where}\nnothing was published; the previous state is unchanged. Full log: {log_file}",
              file=sys.stderr)  # fmt: skip
        return 1
    print("\n".join(summary_lines(settings, board, elapsed, log_file, parameters)))
    if args.doc:
        from bitpredict.evaluation.report import write_results

        write_results(args.doc, doc_results(settings, int(parameters["epochs"])))
        print(f"results table written into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
