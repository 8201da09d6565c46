"""``make run``: the whole Kubeflow pipeline on this machine, no cluster, through ``kfp.local``.

``kfp.local.SubprocessRunner(use_venv=False)`` runs each component of the compiled-from-source pipeline
as a subprocess in the current environment (the same function bodies the cluster runs in the image),
including the ``dsl.If``/``dsl.Else`` branch. ``kfp.local`` has no step cache, so the tasks pass
``cache_dir`` and ``bitpredict.stages`` reuses a stage whose inputs, settings and code are unchanged.

    python -m pipelines.run_local                          # live sources (Binance, CryptoCompare, CoinGecko, RSS)
    python -m pipelines.run_local --data ../shared/data    # the files source: CSV exports in a folder
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bitpredict.config import load_settings
from bitpredict.evaluate import update_readme

LIVE_SOURCES = "binance,cryptocompare,coingecko,rss"


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


def summary(data_root: Path, run_dir: Path, tracking_uri: str, model_name: str) -> dict[str, Any]:
    """What the run produced, read back from its artifacts and from MLflow."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    features_meta = json.loads(next(run_dir.glob("merge/features/features.json")).read_text())
    evaluation = json.loads(next(run_dir.glob("evaluate/evaluation/metrics.json")).read_text())
    client = MlflowClient(tracking_uri)
    versions = sorted(client.search_model_versions(f"name = '{model_name}'"), key=lambda v: int(v.version))
    newest = versions[-1] if versions else None
    try:
        champion = client.get_model_version_by_alias(model_name, "champion")
    except MlflowException:  # no champion yet
        champion = None
    return {
        "data_span": (features_meta["first"][:10], features_meta["last"][:10]),
        "rows": features_meta["rows"],
        "evaluation": evaluation,
        "version": newest.version if newest else None,
        "promoted": newest is not None and newest.tags.get("promoted") == "true",
        "reason": newest.tags.get("promotion_reason") if newest else None,
        "champion": champion.version if champion else None,
        "run_dir": str(run_dir),
        "serving_dir": str(data_root / "models" / "serving" / model_name / champion.version) if champion else None,
    }


def print_summary(info: dict[str, Any], seconds: float, model_name: str) -> None:
    from bitpredict.evaluate import markdown_table

    print(f"\nBitPredict pipeline finished in {seconds:.0f} s")
    print(f"data: {info['rows']} days, {info['data_span'][0]} → {info['data_span'][1]}")
    print(markdown_table(info["evaluation"], info["evaluation"]["decision"]))
    state = "promoted to champion" if info["promoted"] else "registered, not promoted"
    print(f"model: {model_name} v{info['version']} {state} — {info['reason']}")
    print(f"champion: {'v' + info['champion'] if info['champion'] else 'none yet'}")
    print(f"artifacts: {info['run_dir']}")
    if info["serving_dir"]:
        print(f"serve: make serve MODEL_DIR={info['serving_dir']}")
    else:
        print("serve: no champion yet — `make serve MODEL_DIR=<run>/train/model` serves the candidate anyway")


def readme_results(info: dict[str, Any], epochs: int) -> str:
    from bitpredict.evaluate import markdown_table

    blocks = info["evaluation"]["blocks"]
    fitted = ", ".join(f"{b['epochs_run']} (best {b['best_epoch']})" for b in blocks)
    return (
        f"Data: {info['rows']} days, {info['data_span'][0]} → {info['data_span'][1]}. "
        f"Epochs run per walk-forward refit (max {epochs}, early stopping): {fitted}.\n\n"
        + markdown_table(info["evaluation"], info["evaluation"]["decision"])
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="Folder of CSV exports (files source) instead of the live APIs.")
    parser.add_argument("--data-root", default=None, help="Persistent data dir (default: the data_dir setting).")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--window", type=int, default=None)
    parser.add_argument("--test-days", type=int, default=None)
    parser.add_argument("--extra-settings", default="{}", help="JSON object of any other setting.")
    parser.add_argument("--no-cache", action="store_true", help="Run every stage even when nothing changed.")
    parser.add_argument("--readme", type=Path, help="Write the run's results table into this README's markers.")
    args = parser.parse_args(argv)

    import kfp.local

    from pipelines.bitpredict_pipeline import bitpredict_pipeline

    settings = load_settings(**({"data_dir": args.data_root} if args.data_root else {}))
    data_root = Path(settings.data_dir).resolve()
    if args.data:
        files_dir, sources = str(Path(args.data).resolve()), "files"
    else:
        files_dir, sources = "", LIVE_SOURCES
        if not any(reachable(u) for u in (settings.binance_url, settings.coingecko_url, settings.cryptocompare_url)):
            print("no live market source is reachable from here; run `make run DATA=<folder of CSV exports>` "
                  "(e.g. DATA=../shared/data)", file=sys.stderr)  # fmt: skip
            return 2
    data_root.mkdir(parents=True, exist_ok=True)
    tracking_uri = load_settings(data_dir=str(data_root)).tracking_uri
    pipeline_root = data_root / "pipeline_root"
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    model = settings.model
    started = time.monotonic()
    bitpredict_pipeline(
        data_root=str(data_root),
        files_dir=files_dir,
        sources=sources,
        since=str(settings.ingest_since),
        interval="1d",
        window=args.window or model.window,
        epochs=args.epochs or model.epochs,
        test_days=args.test_days or model.test_days,
        min_skill=settings.promotion.min_skill_vs_persistence,
        max_dm_pvalue=settings.promotion.max_dm_pvalue,
        mlflow_tracking_uri=tracking_uri,
        model_store=str(data_root / "models" / "serving"),
        cache_dir="" if args.no_cache else str(data_root / ".stage_cache"),
        extra_settings=args.extra_settings,
    )
    elapsed = time.monotonic() - started
    info = summary(data_root, latest_run_dir(pipeline_root), tracking_uri, settings.registered_model_name)
    print_summary(info, elapsed, settings.registered_model_name)
    if args.readme:
        update_readme(args.readme, readme_results(info, settings.model.epochs if not args.epochs else args.epochs))
        print(f"results table written into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
