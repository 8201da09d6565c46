"""A rollback on a ``gs://`` store while readers keep choosing what to serve (GCS emulator + MLflow registry).

The promise (``bitpredict.operations.rollback``): after ``bitpredict register --rollback --reason …`` every reader
names the previous champion — the registry alias, the published manifest (what ``make serve``, the UI and drift
read) and the model store's highest version folder (what TF Serving and a KServe predictor serve) — and at no
moment during it does a reader find a version folder it would serve without its graph and metadata. The scenario
registers two champions (v2 replaced v1) in a sqlite-backed MLflow registry, exports both to a bucket on
fake-gcs-server and publishes v2; then, while a poller plays TF Serving and ``make serve`` (highest complete version,
the manifest's folder), it runs the CLI in a real process. A rollback without a reason must be refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from unittest import mock

from benchmarks.chaos import ScenarioResult
from benchmarks.chaos.racing_publish import emulator, make_artifacts

REPO = Path(__file__).resolve().parents[2]
VARIABLE_FILES = 5  # model_folder's variables/: the index and four shards
WITHDRAWING = "withdrawing"  # a poll saw the highest folder without its graph: being deleted, not loadable


def model_folder(root: Path, version: int) -> Path:
    """What train logs as ``model/``: ``saved_model/`` (graph + variables) and the metadata, tagged by version."""
    from bitpredict.forecast.artifact import METADATA_FILE, SAVED_MODEL_DIR, SAVED_MODEL_PB

    folder = root / f"v{version}" / "model"
    (folder / SAVED_MODEL_DIR / "variables").mkdir(parents=True, exist_ok=True)
    (folder / SAVED_MODEL_DIR / SAVED_MODEL_PB).write_bytes(f"graph v{version}".encode())
    (folder / SAVED_MODEL_DIR / "variables" / "variables.index").write_bytes(b"index")
    for shard in range(4):
        (folder / SAVED_MODEL_DIR / "variables" / f"variables.data-{shard:05d}-of-00004").write_bytes(os.urandom(4096))
    meta = {"kind": "ewma", "window": 10, "feature_columns": ["log_return"], "version_tag": version}
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    return folder


def two_champions(settings: object, scratch: Path) -> None:
    """Version 1 was champion, version 2 replaced it (the tags register leaves), and a run published v2."""
    from mlflow.tracking import MlflowClient

    from bitpredict.operations.publish import champion_record, publish
    from bitpredict.operations.registry import export_for_serving
    from bitpredict.pipeline.tracking import CHAMPION

    name = settings.registered_model_name  # type: ignore[attr-defined]
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)  # type: ignore[attr-defined]
    client.create_registered_model(name)
    experiment = client.create_experiment(f"rollback-{name}", artifact_location=str(scratch / "mlartifacts"))
    for version in (1, 2):
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(model_folder(scratch / "models", version)), "model")
        made = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        if version == 2:
            client.set_model_version_tag(name, made.version, "previous_champion", "1")
        export_for_serving(settings, made.version)  # type: ignore[arg-type]
        client.set_registered_model_alias(name, CHAMPION, made.version)
    champion = champion_record(settings, {"champion": 2, "model": name, "version": 2, "kind": "ewma"})  # type: ignore[arg-type]
    publish(settings, make_artifacts(scratch / "artifacts", "run-a", 3), run_id="run-a", champion=champion)  # type: ignore[arg-type]


def served(settings: object) -> tuple[int | None, int | None, list[str]]:
    """What TF Serving would serve (the highest version folder) and what the manifest names; problems seen."""
    from bitpredict import storage
    from bitpredict.forecast.artifact import METADATA_FILE, SAVED_MODEL_PB
    from bitpredict.operations.publish import read_manifest
    from bitpredict.operations.rollback import version_folders
    from bitpredict.pipeline.stage_table import serving_store

    name = settings.registered_model_name  # type: ignore[attr-defined]
    problems = []
    folders = version_folders(settings, name)  # type: ignore[arg-type]
    highest = folders[-1] if folders else None
    if highest is not None:
        base = storage.join(serving_store(settings), name, str(highest))  # type: ignore[arg-type]
        names = {item.uri[len(base) + 1 :] for item in storage.list_objects(base)}
        shards = sum(1 for n in names if n.startswith("variables/"))
        if SAVED_MODEL_PB in names and (METADATA_FILE not in names or shards < VARIABLE_FILES):
            problems.append(f"version folder {highest} has its graph but {shards} of {VARIABLE_FILES} variable files")
        elif SAVED_MODEL_PB not in names:
            problems.append(WITHDRAWING)  # no graph: not a loadable model (a load fails; nothing wrong is served)
    champion = (read_manifest(settings) or {}).get("champion") or {}  # type: ignore[arg-type]
    folder = champion.get("exported_to")
    if folder and not storage.exists(storage.join(folder, METADATA_FILE)):
        problems.append(f"the manifest names {folder}, which has no metadata")
    return highest, champion.get("version"), problems


def run(workdir: Path, quick: bool = False) -> ScenarioResult:
    """Two champions, a refused rollback, then a rollback in a real process under a polling reader."""
    from mlflow.tracking import MlflowClient

    from bitpredict.config import load_settings
    from bitpredict.pipeline.tracking import CHAMPION

    workdir.mkdir(parents=True, exist_ok=True)
    lost: list[str] = []
    errors: Counter[str] = Counter()
    with mock.patch.dict(os.environ), emulator("bp-chaos-rollback") as bucket:  # the env is restored after
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
               "MLFLOW_DISABLE_TELEMETRY": "true", "BITPREDICT_DATA_DIR": f"{bucket}/data",
               "BITPREDICT_MODEL_STORE": f"{bucket}/store"}  # fmt: skip
        os.environ.update(env)
        settings = load_settings()
        two_champions(settings, workdir / "scratch")
        cli = [sys.executable, "-m", "bitpredict.cli", "register", "--rollback"]
        refused = subprocess.run(cli, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        if refused.returncode == 2 and "--reason" in refused.stderr:
            errors["exit 2 (no --reason)"] += 1
        else:
            lost.append(f"a rollback without a reason was not refused: {refused.returncode} {refused.stderr[-300:]}")
        seen: list[tuple[float, int | None, int | None, list[str]]] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                seen.append((time.monotonic(), *served(settings)))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        started = time.monotonic()
        done = subprocess.run([*cli, "--reason", "chaos: v2 misses its band", "--by", "chaos"], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        took = time.monotonic() - started
        time.sleep(0.5)
        stop.set()
        poller.join(timeout=60)
        if done.returncode != 0:
            lost.append(f"the rollback failed: {done.stderr[-500:]}")
        client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
        alias = client.get_model_version_by_alias(settings.registered_model_name, CHAMPION).version
        highest, published, problems = served(settings)
        if (str(alias), highest, published) != ("1", 1, 1):
            lost.append(f"after the rollback: alias v{alias}, store serves v{highest}, manifest names v{published}")
        tags = client.get_model_version(settings.registered_model_name, "2").tags
        if tags.get("rolled_back_by") != "chaos" or not tags.get("rollback_reason"):
            lost.append(f"the registry does not record who rolled back and why: {tags}")
        lost += sorted({p for *_, ps in seen for p in ps if p != WITHDRAWING} | set(problems))
        withdrawing = sum(1 for *_, ps in seen if WITHDRAWING in ps)
        settled = [t for t, h, p, _ in seen if (h, p) == (1, 1)]
        recovery = (settled[0] - started) if settled else None
    settled_text = f"after {recovery:.1f} s" if recovery is not None else "never"
    notes = (
        f"rollback v2 → v1 in {took:.1f} s (CLI process); {len(seen)} reader polls during it: none saw a graph "
        f"with half its variables, {withdrawing} saw v2 without its graph (being withdrawn); store and manifest "
        f"named v1 {settled_text}"
    )
    if lost:
        notes += "; LOST: " + "; ".join(lost)
    return ScenarioResult(
        scenario="rollback on gs:// while readers choose what to serve",
        requests=len(seen) + 2,
        errors=errors,
        max_latency_s=took,
        recovery_s=recovery,
        lost=len(lost),
        notes=notes,
    )
