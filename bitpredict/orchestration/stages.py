"""Run one stage on artifacts: the bridge between KFP's artifact paths and the stage functions' data dir.

A pipeline task gets its inputs as separate artifact paths and must write its outputs to other paths;
the stage functions read and write a data directory (``data/raw``, ``data/interim/…``). ``run_stage``
builds a private workspace, places each input artifact where the stage expects it, runs the stage
function, and copies each declared output to its artifact path. The KFP components are one call to it,
so they hold no logic; it imports no kfp and is tested on its own.

Reuse: with ``cache_dir``, a deterministic stage whose inputs (file contents), settings and code version
are unchanged is not run again — its outputs are copied from the cache. This is what KFP's step cache
does on a cluster; ``kfp.local`` has none, so the local run brings its own.

Which stages exist and where their artifacts live is ``bitpredict.pipeline.stage_table`` (the table ``dvc.yaml``
is generated from as well).

Progress: when ``BITPREDICT_PROGRESS`` names a file, every stage appends one JSON line when it starts and
one when it ends (ran or reused, seconds, its key figure) or fails. ``make run`` draws its screen from
those lines while the tasks' own logs go to a log file; on a cluster the variable is unset and nothing
is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bitpredict.config import Settings, load_settings
from bitpredict.features.merge import code_version
from bitpredict.pipeline.stage_table import STAGES, Stage
from bitpredict.runtime import quiet_tensorflow

__all__ = ["STAGES", "Stage", "publish_stage", "report_progress", "run_stage"]

log = logging.getLogger(__name__)

PROGRESS_ENV = "BITPREDICT_PROGRESS"


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def _digest(paths: Mapping[str, Path], settings: Settings, name: str) -> str:
    """Hash of the stage name, the code version, the settings and every input file's bytes."""
    h = hashlib.sha256()
    h.update(f"{name}\n{code_version()}\n".encode())
    relevant = {k: v for k, v in settings.public_dict().items() if k != "data_dir"}  # a fresh temp dir each run
    h.update(json.dumps(relevant, sort_keys=True, default=str).encode())
    for key in sorted(paths):
        root = paths[key]
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            h.update(f"{key}:{path.relative_to(root) if root.is_dir() else ''}\n".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:32]


def run_stage(
    name: str,
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run stage ``name`` with input artifacts at ``inputs`` and write its outputs to ``outputs``.

    ``overrides``: settings (as for ``load_settings``) the pipeline passes as parameters; ``data_dir``
    among them makes the stage work in that persistent directory (ingest keeps its raw tables there so
    every run is incremental). ``options``: keyword arguments of the stage function itself.
    Returns the stage's report, plus ``cached: True`` when it was reused.
    """
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; known: {sorted(STAGES)}")
    quiet_tensorflow()  # before a stage imports TensorFlow
    started = time.monotonic()
    report_progress({"stage": name, "event": "start"})
    try:
        report = _run_stage(name, inputs, outputs, overrides, cache_dir, options)
    except BaseException as exc:
        report_progress({"stage": name, "event": "failed", "seconds": time.monotonic() - started,
                         "error": f"{type(exc).__name__}: {exc}"[:500]})  # fmt: skip
        raise
    report_progress({"stage": name, "event": "end", "cached": bool(report.get("cached")),
                     "seconds": time.monotonic() - started, "figure": key_figure(name, report)})  # fmt: skip
    return report


def _run_stage(
    name: str,
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
    cache_dir: str | None,
    options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    stage = STAGES[name]
    unknown = (set(inputs) - set(stage.inputs)) | (set(outputs) - set(stage.outputs))
    missing = (set(stage.inputs) - set(inputs)) | (set(stage.outputs) - set(outputs))
    if unknown or missing:
        raise ValueError(f"stage {name}: unknown artifacts {sorted(unknown)}, missing {sorted(missing)}")
    overrides = dict(overrides or {})
    with tempfile.TemporaryDirectory(prefix=f"bitpredict-{name}-") as tmp:
        data_dir = Path(overrides.pop("data_dir", None) or Path(tmp) / "data")
        settings = load_settings(data_dir=str(data_dir), **overrides)
        sources = {key: Path(path) for key, path in inputs.items()}
        for key, path in sources.items():
            if not path.exists():
                raise FileNotFoundError(f"stage {name}: input artifact {key!r} not found at {path}")
            _copy(path, data_dir / stage.inputs[key])

        key = _digest(sources, settings, name) if cache_dir and stage.deterministic else None
        cached = Path(cache_dir) / name / key if key and cache_dir else None
        if cached is not None and (cached / "report.json").exists():
            for out, path in outputs.items():
                _copy(cached / out, Path(path))
            report = json.loads((cached / "report.json").read_text())
            log.info("stage reused from cache", extra={"stage": name, "key": key})
            return {**report, "cached": True}

        report = stage.run(settings, **(options or {}))
        for out, path in outputs.items():
            produced = data_dir / stage.outputs[out]
            if not produced.exists():
                raise FileNotFoundError(f"stage {name} did not produce {stage.outputs[out]}")
            _copy(produced, Path(path))
        if cached is not None:
            staging = cached.with_name(cached.name + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            for out in outputs:
                _copy(data_dir / stage.outputs[out], staging / out)
            (staging / "report.json").write_text(json.dumps(report, default=str))
            shutil.rmtree(cached, ignore_errors=True)
            staging.rename(cached)
        return {**json.loads(json.dumps(report, default=str)), "cached": False}


def publish_stage(
    artifacts: Mapping[str, str],
    overrides: Mapping[str, Any],
    registered: Mapping[str, Any],
    parameters: Mapping[str, Any],
    run_id: str,
) -> dict[str, Any]:
    """The publish task: the run's artifacts to ``overrides["data_dir"]`` (``bitpredict.operations.publish``),
    with progress."""
    from bitpredict.operations.publish import champion_record, evaluation_headline, publish

    started = time.monotonic()
    report_progress({"stage": "publish", "event": "start"})
    try:
        settings = load_settings(**overrides)
        manifest = publish(
            settings,
            artifacts,
            run_id=run_id or None,
            parameters=parameters,
            champion=champion_record(settings, registered),
            evaluation=evaluation_headline(artifacts["evaluation"]) if "evaluation" in artifacts else None,
        )
    except BaseException as exc:
        report_progress({"stage": "publish", "event": "failed", "seconds": time.monotonic() - started,
                         "error": f"{type(exc).__name__}: {exc}"[:500]})  # fmt: skip
        raise
    figure = f"{len(manifest['items'])} items → {manifest['root']}"
    report_progress({"stage": "publish", "event": "end", "cached": False, "seconds": time.monotonic() - started,
                     "figure": figure, "run_id": manifest["run_id"]})  # fmt: skip
    return manifest


def report_progress(event: Mapping[str, Any]) -> None:
    """Append one JSON line to the file named by ``BITPREDICT_PROGRESS`` (nothing when it is unset).

    One short ``write`` in append mode, so lines from concurrent tasks never interleave.
    """
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    line = json.dumps({**event, "at": time.time()}, default=str) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
    except OSError as exc:  # progress is a courtesy: never fail a stage over it
        log.debug("progress not written", extra={"error": str(exc)})


def _get(report: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if report.get(key) is not None:
            return report[key]
    return None


def key_figure(name: str, report: Mapping[str, Any]) -> str:
    """The one figure a person wants from each stage's report (rows, epochs, the verdict, the champion)."""
    try:
        if name == "ingest":
            tables = report.get("tables") or {}
            failed = report.get("failed") or []
            text = f"{sum(int(v or 0) for v in tables.values())} new rows in {len(tables)} tables"
            return text + (f", {len(failed)} failed" if failed else "")
        if name == "clean":
            return f"{report['rows']} days {str(report['first'])[:10]} → {str(report['last'])[:10]}"
        if name == "indicators":
            return f"{report['rows']} rows"
        if name == "sentiment":
            return f"{report.get('news', 0)} news, {report.get('tweets', 0)} tweets, {report.get('days', 0)} days"
        if name == "merge":
            return f"{report['rows']} rows, {len(report.get('feature_columns', []))} features"
        if name == "train":
            text = f"{report['epochs_run']} epochs (best {report['best_epoch']})"
            baselines = report.get("baselines")
            return text + (f" + {len(baselines)} baselines" if baselines else "")
        if name == "evaluate":
            best = report.get("best")
            verdict = "beats the baselines" if (report.get("decision") or {}).get("beats_baselines") else "no edge"
            return f"best: {best}, network: {verdict}" if best else f"network: {verdict}"
        if name == "register":
            kind = _get(report, "kind")
            champion = report.get("champion")
            head = f"champion v{champion}" + (f" ({kind})" if kind else "") if champion else "no champion"
            why = _get(report, "why", "reason")
            return f"{head}: {why}" if why else head
    except (KeyError, TypeError, ValueError):
        pass
    return ""
