"""One published state: what a successful run leaves for every consumer (UI, serving, drift, CLI).

Why: the pipeline's tasks write their outputs as artifacts in a run folder nobody else knows about; the
consumers read the data dir. ``publish`` is the one step that moves a run's outputs there, and it does so
all-or-nothing, so a reader sees either the previous run's state or the new one — never a mix, and never
the outputs of a run that failed (the pipeline publishes as its last task, after register).

* **Locally** every item is first copied into a staging folder inside the data dir (same filesystem), then
  renamed into place one by one; the item it replaces is kept aside until all renames succeeded. A failure
  while copying changes nothing; a failure while renaming puts every replaced item back. ``published.json``
  is written last, before the items kept aside are deleted. A journal written before the first rename makes
  this hold across a crash too (SIGKILL, power loss): the next publish, or the next run once it holds the run
  lock (``recover``), finds the staging folder of a publish whose process is gone and, unless its manifest
  was written, puts every replaced item back.
* **On GCS** (``gs://`` data dir) objects cannot be renamed atomically, so each run is written under its own
  prefix ``<data_dir>/published/<run_id>/`` and then the small manifest ``<data_dir>/published.json`` is
  written last, pointing at it. Readers go through ``resolve``, which follows the manifest. No flock exists
  on a bucket and two runs may overlap (a drift rerun and the schedule), so the manifest is a compare-and-swap:
  it is written only if its generation is still the one read before the run's prefix was written
  (``if_generation_match``). The run that loses publishes nothing, deletes its own prefix and says which run
  won (``PublishRaceLost``). Pruning, after a commit, deletes only prefixes the committed manifest's history
  names as older (the previous one stays: a reader may still be on it) and prefixes no manifest ever named
  that began longer ago than a publish may live (``ORPHAN_AFTER_S``, above the KFP publish task's timeout) —
  never a concurrent run's half-written prefix.

The manifest also records the run's id, its pipeline parameters (so a drift-triggered rerun can replay
them), the champion register chose, and the evaluation's headline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bitpredict import storage
from bitpredict.config import Settings
from bitpredict.errors import BitPredictError
from bitpredict.forecast.artifact import ArtifactError, read_metadata
from bitpredict.pipeline.stage_table import (
    CANDIDATE,
    CLEAN,
    CLEAN_REPORT,
    EVALUATION,
    INDICATORS,
    METRICS,
    PROCESSED,
    SENTIMENT_DAILY,
    SENTIMENT_META,
    SENTIMENT_SCORES,
    serving_store,
)

log = logging.getLogger(__name__)

MANIFEST = "published.json"
FORMAT = 1
GCS_PREFIX = "published"
STAGING = ".publishing"
JOURNAL = "journal.json"
OWNER = "owner.pid"
STALE_S = 60.0  # a staging folder that names no owner and is older than this belongs to a dead publish
# A gs:// prefix no manifest names, begun longer ago than this, belongs to a dead publish: the KFP publish task's
# timeout (pipelines/bitpredict_pipeline.py, PUBLISH_TIMEOUT_S) is shorter, so no live publish is that old.
ORPHAN_AFTER_S = 3 * 3600.0
HISTORY = 10  # committed run ids a manifest remembers (newest first): what pruning may delete

# Artifact name -> where it lives under the data dir (a file or a folder), at the stage table's paths.
# Every consumer reads these paths.
ITEMS: dict[str, str] = {
    "clean": CLEAN,
    "clean_report": CLEAN_REPORT,
    "indicators": INDICATORS,
    "sentiment": SENTIMENT_DAILY,
    "sentiment_meta": SENTIMENT_META,
    "sentiment_scores": SENTIMENT_SCORES,
    "features": PROCESSED,
    "evaluation": EVALUATION,
    "candidate": CANDIDATE,
}


class PublishError(BitPredictError, RuntimeError):
    """The run's outputs could not be published; the previous published state is unchanged."""


class PublishRaceLost(PublishError):
    """Another run committed the manifest between this run's read and its write: this run published nothing."""


def manifest_uri(settings: Settings) -> str:
    return settings.path(MANIFEST)


def read_manifest(settings: Settings) -> dict[str, Any] | None:
    """The last published state's manifest, or None when nothing was published (or it is unreadable)."""
    uri = manifest_uri(settings)
    try:
        return json.loads(storage.read_text(uri)) if storage.exists(uri) else None
    except (OSError, ValueError) as exc:
        log.warning("unreadable manifest", extra={"uri": uri, "error": str(exc)})
        return None


def resolve(settings: Settings, *parts: str) -> str:
    """Where a consumer reads a published path: under the manifest's root on GCS, the data dir locally.

    Locally the items are swapped into the data dir itself, so the paths stay the ones the manual and
    ``dvc repro`` use (``data/`` + ``stage_table.CLEAN``), with or without a manifest.
    """
    if storage.is_gcs(settings.data_dir):
        manifest = read_manifest(settings)
        if manifest and manifest.get("root"):
            return storage.join(manifest["root"], *parts)
    return settings.path(*parts)


def published_path(settings: Settings, relative: str) -> str:
    """``resolve`` for a stage path of ``bitpredict.pipeline.stage_table`` (``CLEAN``, ``FEATURES``, …), as
    ``data_path`` is for the data dir: consumers name a table by its constant, never by a typed-out path."""
    return resolve(settings, *relative.split("/"))


def champion_dir(settings: Settings) -> str | None:
    """The published champion's serving folder (``<store>/<name>/<version>``), or None."""
    manifest = read_manifest(settings)
    champion = (manifest or {}).get("champion") or {}
    return champion.get("exported_to") or None


def publish(
    settings: Settings,
    artifacts: Mapping[str, str],
    *,
    run_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    champion: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish ``artifacts`` ({item name: local path}, names from ``ITEMS``) to the settings' data dir.

    Returns the manifest it wrote. Raises ``PublishError`` (previous state intact) when an artifact is
    missing or a copy/rename fails, and ``PublishRaceLost`` on GCS when another run committed meanwhile.
    """
    unknown = sorted(set(artifacts) - set(ITEMS))
    if unknown:
        raise PublishError(f"unknown items {unknown}; known: {sorted(ITEMS)}")
    missing = sorted(name for name, path in artifacts.items() if not Path(path).exists())
    if missing:
        raise PublishError(f"nothing published: artifacts not found: {', '.join(missing)}")
    run_id = run_id or f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "run_id": run_id,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "items": {name: ITEMS[name] for name in sorted(artifacts)},
        "parameters": dict(parameters or {}),
        "champion": dict(champion or {}) or None,
        "evaluation": dict(evaluation or {}) or None,
    }
    if storage.is_gcs(settings.data_dir):
        return _publish_gcs(settings, artifacts, manifest)
    manifest["root"] = str(Path(settings.data_dir).resolve())
    _publish_local(
        Path(settings.data_dir),
        artifacts,
        run_id,
        commit=lambda: storage.write_text(manifest_uri(settings), json.dumps(manifest, indent=2, default=str)),
    )
    log.info("published", extra={"run_id": run_id, "items": len(artifacts), "root": manifest["root"]})
    return manifest


def champion_record(settings: Settings, registered: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the manifest says about the champion, from register's result: name, version, kind, why, and the
    serving folder (register exports the champion there; an older champion was exported when it won)."""
    version = registered.get("champion")
    if version is None:
        return None
    name = registered.get("model") or settings.registered_model_name
    folder = registered.get("exported_to") or storage.join(serving_store(settings), name, str(version))
    this_run = registered.get("version") == version
    kind = registered.get("kind") if this_run else None
    why = (registered.get("why") or registered.get("reason")) if this_run else None
    if kind is None:  # an earlier champion kept its place: its own metadata says what it is
        try:
            kind = read_metadata(folder, check_format=False).get("kind")
        except (OSError, ArtifactError):
            kind = None
    return {
        "model": name,
        "version": int(version),
        "kind": kind or "lstm",
        "why": why or registered.get("reason"),
        "exported_to": folder,
        "registered_version": registered.get("version"),
        "promoted": registered.get("promoted"),
    }


def replace_champion(settings: Settings, champion: Mapping[str, Any], attempts: int = 5) -> dict[str, Any] | None:
    """Rewrite the published manifest's champion record (a rollback); None when nothing was published yet.

    On GCS it is a compare-and-swap on the manifest's generation, retried from a fresh read: a publish that
    commits meanwhile is never overwritten with an older state (its items stay, the champion record changes).
    Locally the caller holds the run lock, so a plain atomic write suffices.
    """
    uri = manifest_uri(settings)
    for _ in range(attempts):
        data, generation = storage.read_generation(uri) if storage.is_gcs(uri) else (None, None)
        manifest = _parse(data) if storage.is_gcs(uri) else (read_manifest(settings) or {})
        if not manifest:
            return None
        manifest["champion"] = dict(champion)
        try:
            storage.write_text(uri, json.dumps(manifest, indent=2, default=str), if_generation_match=generation)
        except storage.ConcurrentWriteError:
            continue
        log.info("published champion replaced", extra={"version": champion.get("version")})
        return manifest
    raise PublishError(f"{uri} kept changing under {attempts} attempts to replace its champion; try again")


def evaluation_headline(evaluation_dir: str | Path) -> dict[str, Any] | None:
    """The evaluation's headline for the manifest: the best method, the primary score, the window, the verdict."""
    path = Path(evaluation_dir) / Path(METRICS).relative_to(EVALUATION)
    if not path.exists():
        return None
    metrics = json.loads(path.read_text())
    best = metrics.get("best")
    primary = metrics.get("primary")
    score = (metrics.get("methods") or {}).get(best, {}).get(primary) if best and primary else None
    return {
        "best": best,
        "primary": primary,
        "best_score": score,
        "days": metrics.get("days"),
        "first_day": metrics.get("first_day"),
        "last_day": metrics.get("last_day"),
        "decision": metrics.get("decision"),
    }


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def _publish_local(
    data_dir: Path, artifacts: Mapping[str, str], run_id: str, commit: Callable[[], None] | None = None
) -> None:
    """Stage every item, journal, rename each into place, ``commit`` (the manifest); on failure put all back."""
    data_dir.mkdir(parents=True, exist_ok=True)
    recover(data_dir)  # a crashed publish's leftovers first: its replaced items go back before we replace them
    staging = data_dir / STAGING / uuid.uuid4().hex
    aside = staging / ".previous"
    staging.mkdir(parents=True)
    (staging / OWNER).write_text(str(os.getpid()))  # a live owner means: not a crashed publish
    try:
        try:
            for name, path in artifacts.items():
                _copy(Path(path), staging / ITEMS[name])
        except OSError as exc:
            raise PublishError(f"nothing published: staging failed ({exc})") from exc
        names = list(artifacts)
        journal = {"run_id": run_id, "items": [ITEMS[name] for name in names]}
        storage.write_text(str(staging / JOURNAL), json.dumps(journal))  # atomic: a journal is whole or absent
        done: list[tuple[Path, Path | None]] = []  # (target, where its previous version went)
        try:
            for name in names:
                target = data_dir / ITEMS[name]
                previous = None
                if target.exists() or target.is_symlink():
                    previous = aside / ITEMS[name]
                    previous.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(target, previous)
                done.append((target, previous))
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / ITEMS[name], target)
            if commit is not None:
                commit()
        except OSError as exc:
            _roll_back(done)
            raise PublishError(f"nothing published: swapping {target} failed ({exc}); previous state kept") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            (data_dir / STAGING).rmdir()  # only when no other publish is staging


def recover(data_dir: str | Path) -> list[str]:
    """Finish what a crashed local publish left: roll its swapped items back, unless its manifest was written.

    Looks at every staging folder under ``<data dir>/.publishing`` whose publishing process (``owner.pid``) is
    gone (a live one is another publish at work). Without a journal the crash came while copying: nothing was swapped,
    the folder is deleted. With one, the manifest decides: it names this run → the publish completed, only
    the cleanup is left; else every journalled item is put back as it was. Returns what it did, one line a
    folder (for the run's log).
    """
    root = Path(data_dir) / STAGING
    if str(data_dir).startswith(storage.GCS_SCHEME) or not root.is_dir():
        return []
    done: list[str] = []
    for staging in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            journal = json.loads((staging / JOURNAL).read_text())
        except FileNotFoundError:
            journal = None
        except (OSError, ValueError):
            continue  # unreadable: leave it for a person rather than guess
        try:
            owner = int((staging / OWNER).read_text())
        except (OSError, ValueError):  # not written yet (a publish just starting) or lost: judge by age
            owner = None
        if owner is not None and storage.pid_alive(owner):
            continue
        if owner is None and time.time() - staging.stat().st_mtime < STALE_S:
            continue
        if journal is None:
            done.append(f"{staging.name}: a publish stopped while staging; nothing had been replaced")
        else:
            current = _manifest_run_id(Path(data_dir))
            if current == journal["run_id"]:
                done.append(f"{staging.name}: run {current} was published; removed what it had kept aside")
            else:
                _restore(Path(data_dir), staging, journal["items"])
                done.append(f"{staging.name}: run {journal['run_id']} stopped while publishing; previous state back")
        shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(OSError):
        root.rmdir()
    for line in done:
        log.warning("publish recovered", extra={"what": line})
    return done


def _manifest_run_id(data_dir: Path) -> str | None:
    try:
        return json.loads((data_dir / MANIFEST).read_text()).get("run_id")
    except (OSError, ValueError):
        return None


def _restore(data_dir: Path, staging: Path, items: list[str]) -> None:
    """Undo a journalled swap: an item still in staging was not swapped in; one gone from it was."""
    for item in reversed(items):
        target, previous = data_dir / item, staging / ".previous" / item
        swapped_in = not (staging / item).exists() and not (staging / item).is_symlink()
        if swapped_in and (target.exists() or target.is_symlink()):
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        if (previous.exists() or previous.is_symlink()) and not (target.exists() or target.is_symlink()):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(previous, target)


def _roll_back(done: list[tuple[Path, Path | None]]) -> None:
    for target, previous in reversed(done):
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()
        if previous is not None and (previous.exists() or previous.is_symlink()):
            os.replace(previous, target)


def _publish_gcs(settings: Settings, artifacts: Mapping[str, str], manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the run under its own prefix, then commit the manifest if nobody else did meanwhile; then prune."""
    uri, run_id = manifest_uri(settings), manifest["run_id"]
    data, generation = storage.read_generation(uri)  # what this publish replaces: the swap's expected value
    current = _parse(data)
    if current.get("run_id") == run_id:  # a retried publish task whose first try committed: done already
        log.info("already published", extra={"run_id": run_id})
        return current
    root = settings.path(GCS_PREFIX, run_id)
    try:
        for name, path in artifacts.items():
            source = Path(path)
            target = storage.join(root, *ITEMS[name].split("/"))
            if source.is_dir():
                storage.copy_tree(source, target)
            else:
                storage.write_bytes(target, source.read_bytes())
    except (OSError, storage.StorageError) as exc:
        storage.delete_tree(root)
        raise PublishError(f"nothing published: writing {root} failed ({exc})") from exc
    manifest["root"] = root
    history = [current.get("run_id"), *current.get("history", [])]
    manifest["history"] = [r for r in history if r and r != run_id][:HISTORY]
    try:
        storage.write_text(uri, json.dumps(manifest, indent=2, default=str), if_generation_match=generation)
    except storage.ConcurrentWriteError:
        storage.delete_tree(root)
        winner = (read_manifest(settings) or {}).get("run_id", "?")
        raise PublishRaceLost(
            f"nothing published: run {winner} published {uri} while run {run_id} was writing its outputs "
            f"(generation {generation} changed); its state stands and {root} was removed"
        ) from None
    log.info("published", extra={"run_id": run_id, "items": len(artifacts), "root": root})
    pruned = prune_gcs(settings, manifest)
    if pruned:
        log.info("pruned published prefixes", extra={"runs": pruned})
    return manifest


def _parse(data: bytes | None) -> dict[str, Any]:
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return {}


def prune_gcs(settings: Settings, committed: Mapping[str, Any], orphan_after_s: float = ORPHAN_AFTER_S) -> list[str]:
    """Delete the published prefixes older than the ``committed`` manifest; returns the run ids deleted.

    Kept: the committed run and the one before it (a reader may still be on it), and every prefix no manifest
    named that began within ``orphan_after_s`` — another publish may be writing it right now. Deleted: runs
    the manifest's history names (committed earlier, since replaced) and orphans older than that (a publish
    that died, or lost a race and was killed before it cleaned up).
    """
    history = list(committed.get("history") or [])
    keep = {committed.get("run_id"), *history[:1]}
    older = set(history[1:])
    base = settings.path(GCS_PREFIX)
    runs: dict[str, float] = {}
    for item in storage.list_objects(base):
        run = item.uri[len(base.rstrip("/")) + 1 :].split("/", 1)[0]
        runs[run] = min(runs.get(run, item.created), item.created)  # when that run began writing
    now = time.time()
    doomed = sorted(r for r, began in runs.items() if r not in keep and (r in older or now - began > orphan_after_s))
    for run in doomed:
        storage.delete_tree(storage.join(base, run))
    return doomed
