"""``bitpredict register --rollback``: the previous champion becomes what is served, everywhere, and the registry
says who did it and why.

Why more than moving the alias: three readers decide what is served, and each must change. The registry's
``champion`` alias (the drift job, the next register); the model store, where TF Serving and a KServe predictor
serve the *highest* numbered version folder under ``<store>/<name>/`` — so the rolled-back version's folder (and any
stray folder above the restored one) must leave the store; and ``published.json``, whose champion record is what
``make serve``, the UI and drift read. The steps run in the order that never points at a half-made state:

1. export the restored version to the store (complete before anything names it: ``registry.export_for_serving``);
2. move the alias and tag the rolled-back version (``rolled_back_by``, ``rolled_back_at``, ``rollback_reason``,
   ``rolled_back_to``) and the registered model (``last_rollback``), so the registry records who, what and why;
3. rewrite the manifest's champion record (a compare-and-swap on GCS, under the run lock locally);
4. withdraw the version folders above the restored one from the store — TF Serving then unloads them and serves
   the restored version (its default policy serves the latest version present). Their artifacts stay in MLflow.

The switching rule for champions lives in ``registry``; this module only undoes its last decision.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bitpredict import storage
from bitpredict.config import Settings
from bitpredict.forecast.artifact import METADATA_FILE, SAVED_MODEL_PB
from bitpredict.operations import publish
from bitpredict.operations.registry import RegistryError, export_for_serving
from bitpredict.pipeline import tracking
from bitpredict.pipeline.runlock import run_lock
from bitpredict.pipeline.stage_table import serving_store
from bitpredict.pipeline.tracking import CHAMPION, champion_version

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 120.0  # a local run holding the data dir is waited for this long before the rollback gives up


def actor() -> str:
    """Who is rolling back: ``BITPREDICT_ACTOR`` (set by automation), else the login name."""
    try:
        return os.environ.get("BITPREDICT_ACTOR") or getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return f"uid {os.getuid()}"


def rollback(settings: Settings, *, reason: str, by: str | None = None) -> dict[str, Any]:
    """Make the version the champion replaced the served and published champion; returns what changed."""
    if not reason or not reason.strip():
        raise RegistryError("say why you roll back (--reason): the registry records it next to who did it")
    client = tracking.client(settings)
    name = settings.registered_model_name
    current = champion_version(client, name)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    previous = current.tags.get("previous_champion")
    if not previous:
        raise RegistryError(f"{name} version {current.version} replaced no earlier champion: nothing to roll back to")
    who, when = by or actor(), datetime.now(UTC).isoformat(timespec="seconds")

    exported = export_for_serving(settings, previous)  # 1. complete in the store before anything names it
    client.set_registered_model_alias(name, CHAMPION, previous)  # 2. the registry
    record = {"rolled_back_by": who, "rolled_back_at": when, "rollback_reason": reason, "rolled_back_to": previous}
    for key, value in record.items():
        client.set_model_version_tag(name, current.version, key, value)
    client.set_model_version_tag(name, current.version, "rolled_back", "true")
    summary = {"from": int(current.version), "to": int(previous), "by": who, "at": when, "reason": reason}
    client.set_registered_model_tag(name, "last_rollback", json.dumps(summary))
    manifest = _republish_champion(settings, name, int(previous), exported, summary)  # 3. the published state
    withdrawn = withdraw_above(settings, name, int(previous))  # 4. what TF Serving / KServe serve
    log.info("rolled back", extra={"model": name, **summary, "withdrawn": withdrawn})
    return {
        "model": name,
        "from": int(current.version),
        "champion": int(previous),
        "exported_to": exported,
        "withdrawn": withdrawn,
        "published": manifest is not None,
        "by": who,
        "reason": reason,
    }


def _republish_champion(
    settings: Settings, name: str, version: int, exported: str, summary: dict[str, Any]
) -> dict[str, Any] | None:
    champion = publish.champion_record(settings, {"champion": version, "model": name, "exported_to": exported})
    assert champion is not None
    champion["why"] = f"rolled back from v{summary['from']} by {summary['by']}: {summary['reason']}"
    champion["rolled_back"] = summary
    if storage.is_gcs(settings.data_dir):
        return publish.replace_champion(settings, champion)
    with run_lock(settings.data_dir, "bitpredict register --rollback", timeout_s=LOCK_TIMEOUT_S):
        return publish.replace_champion(settings, champion)


def version_folders(settings: Settings, name: str) -> list[int]:
    """The numbered version folders under ``<store>/<name>/`` (what TF Serving chooses among)."""
    base = storage.join(serving_store(settings), name)
    if storage.is_gcs(base):
        names = {item.uri[len(base.rstrip("/")) + 1 :].split("/", 1)[0] for item in storage.list_objects(base)}
    else:
        names = {p.name for p in Path(base).iterdir() if p.is_dir()} if Path(base).is_dir() else set()
    return sorted(int(n) for n in names if n.isdigit())


def withdraw_above(settings: Settings, name: str, version: int) -> list[int]:
    """Delete every version folder above ``version`` from the store, so the highest one left is ``version``."""
    doomed = [v for v in version_folders(settings, name) if v > version]
    for v in doomed:  # the graph first: from then on the folder is no loadable model, never a half-deleted one
        storage.delete_tree(storage.join(serving_store(settings), name, str(v)), first=(SAVED_MODEL_PB, METADATA_FILE))
    return doomed
