"""The model artifact contract, defined once: file and tensor names, the metadata file, and where a model lives.

Training writes a *candidate* folder (``saved_model/`` + ``bitpredict_model.json``); the registry exports a
*version* folder in the layout TF Serving loads (``saved_model.pb``, ``variables/`` and the metadata side by
side) under ``<store>/<name>/<version>/``; the transformer, the predictor, the drift job and the Triton layout
read either. Every one of them takes the names and ``locate()`` from here, so a renamed file or tensor is one
edit. No TensorFlow, pandas or KServe import: the Triton builder and the UI load this module cheaply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitpredict import storage
from bitpredict.errors import BitPredictError

METADATA_FILE = "bitpredict_model.json"  # what a server needs to build the model's exact inputs
REFERENCE_FILE = "reference.parquet"  # the training rows' inputs (unscaled): the drift job's reference
SAVED_MODEL_DIR = "saved_model"  # a training candidate keeps its SavedModel in this sub-folder
SAVED_MODEL_PB = "saved_model.pb"
SIGNATURE = "serving_default"
FORMAT_VERSION = 1
INPUT_NAME = "features"  # FP32 [B, W, F]
QUANTILES_OUTPUT = "quantiles"  # FP32 [B, Q]: next-day log-return quantiles
ATTENTION_OUTPUT = "attention"  # FP32 [B, W]
# FP32 [B, H, Q]: the log-return quantiles of close[t + h] / close[t] for each of the metadata's ``horizons``
# (days ahead, the first is 1: its row equals ``quantiles``). Models exported before the horizon axis lack it
# (and the ``horizons`` key): readers treat them as ``horizons = [1]``.
HORIZON_QUANTILES_OUTPUT = "horizon_quantiles"
OUTPUTS = (QUANTILES_OUTPUT, ATTENTION_OUTPUT, HORIZON_QUANTILES_OUTPUT)


class ArtifactError(BitPredictError, ValueError):
    """A folder is not a servable BitPredict model; the message says what is missing."""


@dataclass(frozen=True)
class LocatedModel:
    directory: str  # the version (or candidate) folder that holds the metadata file
    saved_model_dir: str  # the folder that holds saved_model.pb
    version: str  # the registry version, or the first 12 characters of a candidate's MLflow run id
    metadata: dict[str, Any]


def write_metadata(directory: str | Path, meta: dict[str, Any]) -> str:
    """Write ``<directory>/bitpredict_model.json`` (local or gs://); returns its path."""
    path = storage.join(str(directory), METADATA_FILE)
    storage.write_text(path, json.dumps(meta, indent=2))
    return path


def read_metadata(directory: str | Path, *, check_format: bool = True) -> dict[str, Any]:
    """The parsed metadata of a model folder; an ``ArtifactError`` when it is missing, not JSON or another format."""
    path = storage.join(str(directory), METADATA_FILE)
    if not storage.exists(path):
        raise ArtifactError(f"{directory}: no {METADATA_FILE}; not an exported BitPredict model")
    try:
        meta = json.loads(storage.read_text(path))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: top level must be a JSON object")
    if check_format and meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{directory}: model metadata format {meta.get('format_version')}, expected {FORMAT_VERSION}"
        )
    return meta


def _newest_version(uri: str) -> str:
    if storage.is_gcs(uri):
        raise ArtifactError(f"{uri}: point at a version folder on GCS (the server downloads it first)")
    root = Path(uri)
    if not root.is_dir():
        raise ArtifactError(f"{root}: not a folder (expected a model store, a version folder or a candidate)")
    versions = sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise ArtifactError(f"{uri}: no {METADATA_FILE} and no numbered version folders")
    return str(versions[-1])


def locate(uri: str | Path, *, require_saved_model: bool = False) -> LocatedModel:
    """The model under ``uri``: a store folder of numbered versions (the newest wins, as in TF Serving), one
    version folder, or a training candidate (``saved_model/`` beside the metadata).

    Raises ``ArtifactError`` naming what is missing: no metadata or unreadable metadata, and — with
    ``require_saved_model`` (copying the graph: the Triton layout) — no ``saved_model.pb``. Readers of the
    metadata alone (the drift job, the UI) accept a folder without the graph; a server loading it fails there.
    """
    uri = str(uri).rstrip("/")
    directory, version = uri, Path(uri).name
    if not storage.exists(storage.join(uri, METADATA_FILE)):
        version = _newest_version(uri)
        directory = storage.join(uri, version)
    metadata = read_metadata(directory, check_format=False)
    nested = storage.join(directory, SAVED_MODEL_DIR)
    if storage.exists(storage.join(directory, SAVED_MODEL_PB)):
        saved = directory
    elif storage.exists(storage.join(nested, SAVED_MODEL_PB)):
        saved = nested
    elif require_saved_model:
        raise ArtifactError(
            f"{directory}: no {SAVED_MODEL_PB} (nor {SAVED_MODEL_DIR}/{SAVED_MODEL_PB}); nothing to serve"
        )
    else:
        saved = directory
    if not version.isdigit():
        version = str(metadata.get("mlflow_run_id", "candidate"))[:12]
    return LocatedModel(directory, saved, version, metadata)
