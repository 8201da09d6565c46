"""Turn an exported BitPredict version folder into a Triton model repository.

``bitpredict.operations.registry`` exports the champion in the layout TF Serving loads,
``<store>/bitpredict-lstm/<version>/{saved_model.pb, variables/, bitpredict_model.json}``. Triton wants a
*model repository* instead, and KServe's Triton runtime (``kserve-tritonserver``) points ``tritonserver
--model-store`` at whatever ``storageUri`` downloaded, so that URI must hold this layout::

    <repo>/<name>/config.pbtxt
    <repo>/<name>/<version>/model.savedmodel/{saved_model.pb, variables/, ...}

``config.pbtxt`` is written from ``bitpredict_model.json`` (W, F and Q from ``window``, ``feature_columns``
and ``quantiles``), never typed by hand, so a model with another window or feature list cannot be served
with a stale shape. The SavedModel files are copied unchanged: Triton runs the very graph TF Serving runs.

    python -m inference.triton_layout data/models/serving/bitpredict-lstm/3 gs://bitpredict-models/triton

The repository may be a local folder or ``gs://`` (through ``bitpredict.storage``); the version folder is
read locally. The Triton version defaults to the registry version (the folder's name) so that
``<repo>/bitpredict/3`` is registry version 3.

Triton release: Triton's TensorFlow backend is deprecated from release 25.03 (triton-inference-server/server
#8068: "As of 25.03 TensorFlow backend is deprecated"; later images do not ship it), so the serving manifests
pin ``nvcr.io/nvidia/tritonserver:24.12-py3``, a release before the deprecation that still has it. The
TensorFlow inside that image is older than the TensorFlow 2.21 that exports the model; a SavedModel loads in
an older runtime only when every op it uses exists there, so load the exported model in that image before
switching serving to the Triton overlay.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitpredict import storage
from bitpredict.forecast.artifact import (
    ATTENTION_OUTPUT,
    HORIZON_QUANTILES_OUTPUT,
    INPUT_NAME,
    METADATA_FILE,
    QUANTILES_OUTPUT,
    REFERENCE_FILE,
    SIGNATURE,
    locate,
)

TRITON_SAVEDMODEL_DIR = "model.savedmodel"  # the TensorFlow backend's default_model_filename for SavedModels
CONFIG_FILE = "config.pbtxt"
DEFAULT_MODEL_NAME = "bitpredict"
DEFAULT_MAX_BATCH_SIZE = 64
# Files that sit beside an exported SavedModel but are not part of it (metadata, the drift reference).
NOT_SAVEDMODEL = frozenset({METADATA_FILE, REFERENCE_FILE})
# Triton names a model after its folder; keep to characters that are safe in a folder, a URL and a gs:// key.
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
# Longest time Triton holds a request to batch it with others. The transformer sends one window per request,
# so batching only helps under concurrency; 0.5 ms is small next to the ~15 ms the transformer spends.
MAX_QUEUE_DELAY_US = 500


@dataclass(frozen=True)
class TritonModelShape:
    """What config.pbtxt needs from the model's metadata: tensor names and the non-batch dimensions."""

    window: int
    n_features: int
    n_quantiles: int
    input_name: str = INPUT_NAME
    quantiles_output: str = QUANTILES_OUTPUT
    attention_output: str = ATTENTION_OUTPUT
    signature: str = SIGNATURE
    n_horizons: int = 0  # H of ``horizon_quantiles`` [B, H, Q]; 0: a model exported before the horizon axis

    @property
    def horizon_output(self) -> str:
        return HORIZON_QUANTILES_OUTPUT


def _positive_int(value: Any, what: str, source: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{source}: {what} must be a positive integer, got {value!r}")
    return value


def _non_empty_list(value: Any, what: str, source: Path) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{source}: {what} must be a non-empty list, got {value!r}")
    return value


def shape_from_metadata(metadata: dict[str, Any], source: Path) -> TritonModelShape:
    """W, F, Q and tensor names from ``bitpredict_model.json``; the ``input``/``outputs`` shapes must agree.

    The metadata states the shape twice (``window``/``feature_columns``/``quantiles`` and the explicit
    ``input``/``outputs`` shapes); a disagreement means a hand-edited or corrupt file, and a config built from
    either half would be wrong for the other, so it is refused rather than guessed.
    """
    window = _positive_int(metadata.get("window"), "'window'", source)
    n_features = len(_non_empty_list(metadata.get("feature_columns"), "'feature_columns'", source))
    n_quantiles = len(_non_empty_list(metadata.get("quantiles"), "'quantiles'", source))

    spec = metadata.get("input") or {}
    input_name = spec.get("name", INPUT_NAME)
    if "shape" in spec and list(spec["shape"])[1:] != [window, n_features]:
        raise ValueError(f"{source}: input shape {spec['shape']} disagrees with window={window}, F={n_features}")
    if spec.get("dtype", "float32") != "float32":
        raise ValueError(f"{source}: input dtype {spec['dtype']!r}; the Triton config declares TYPE_FP32")

    outputs = dict(metadata.get("outputs") or {QUANTILES_OUTPUT: [None, n_quantiles], ATTENTION_OUTPUT: [None, window]})
    n_horizons = _horizons(metadata, outputs.pop(HORIZON_QUANTILES_OUTPUT, None), n_quantiles, source)
    names = list(outputs)
    if len(names) != 2:
        raise ValueError(f"{source}: expected the outputs quantiles, attention (and horizon_quantiles), got {names}")
    quantiles_name = next((n for n in names if n == QUANTILES_OUTPUT), names[0])
    attention_name = next(n for n in names if n != quantiles_name)
    if list(outputs[quantiles_name])[1:] != [n_quantiles]:
        raise ValueError(f"{source}: output {quantiles_name!r} shape {outputs[quantiles_name]} but Q={n_quantiles}")
    if list(outputs[attention_name])[1:] != [window]:
        raise ValueError(f"{source}: output {attention_name!r} shape {outputs[attention_name]} but W={window}")

    return TritonModelShape(
        window=window,
        n_features=n_features,
        n_quantiles=n_quantiles,
        input_name=input_name,
        quantiles_output=quantiles_name,
        attention_output=attention_name,
        signature=str(metadata.get("signature") or SIGNATURE),
        n_horizons=n_horizons,
    )


def _horizons(metadata: dict[str, Any], declared: Any, n_quantiles: int, source: Path) -> int:
    """H of the ``horizon_quantiles`` output: the metadata's ``horizons`` and the declared shape [None, H, Q] must
    agree; neither present is a model from before the horizon axis (0: no such output)."""
    horizons = metadata.get("horizons")
    if declared is None and horizons is None:
        return 0
    if declared is None or horizons is None:
        raise ValueError(f"{source}: 'horizons' and the output {HORIZON_QUANTILES_OUTPUT!r} come together")
    n_horizons = len(_non_empty_list(horizons, "'horizons'", source))
    if list(declared)[1:] != [n_horizons, n_quantiles]:
        raise ValueError(
            f"{source}: output {HORIZON_QUANTILES_OUTPUT!r} shape {declared} but H={n_horizons}, Q={n_quantiles}"
        )
    return n_horizons


def _local_savedmodel(version_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """The local folder holding ``saved_model.pb`` and the parsed metadata (``bitpredict.forecast.artifact.locate``).

    The files are copied from a local folder, so a ``gs://`` version folder is refused with what to do.
    """
    if storage.is_gcs(str(version_dir)):
        raise ValueError(f"{version_dir}: read the version folder from a local copy (gsutil cp -r ...)")
    root = Path(version_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder (expected an exported version folder)")
    if not (root / METADATA_FILE).is_file():
        raise ValueError(f"{root}: no {METADATA_FILE}; not an exported BitPredict model")
    located = locate(root, require_saved_model=True)
    return Path(located.saved_model_dir), located.metadata


def render_config(shape: TritonModelShape, model_name: str, max_batch_size: int, source: str = "") -> str:
    """``config.pbtxt`` text. ``dims`` leave out the batch dimension: Triton adds it when max_batch_size > 0."""
    origin = f" from {source}" if source else ""
    return f"""\
# Written by inference/triton_layout.py{origin}; regenerate instead of editing.
name: "{model_name}"
platform: "tensorflow_savedmodel"
max_batch_size: {max_batch_size}
input [
  {{
    name: "{shape.input_name}"
    data_type: TYPE_FP32
    dims: [ {shape.window}, {shape.n_features} ]
  }}
]
output [
  {{
    name: "{shape.quantiles_output}"
    data_type: TYPE_FP32
    dims: [ {shape.n_quantiles} ]
  }},
  {{
    name: "{shape.attention_output}"
    data_type: TYPE_FP32
    dims: [ {shape.window} ]
  }}{_horizon_block(shape)}
]
# One config serves every version folder, so only the newest is loaded: an older version may have another shape.
version_policy: {{ latest: {{ num_versions: 1 }} }}
dynamic_batching {{
  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}
}}
instance_group [
  {{
    count: 1
    kind: KIND_CPU
  }}
]
# The TensorFlow backend's own keys: which MetaGraph and SignatureDef of the SavedModel to run.
parameters: {{
  key: "TF_GRAPH_TAG"
  value: {{ string_value: "serve" }}
}}
parameters: {{
  key: "TF_SIGNATURE_DEF"
  value: {{ string_value: "{shape.signature}" }}
}}
"""


def _horizon_block(shape: TritonModelShape) -> str:
    """The third output's entry, for a model with the horizon axis (else nothing: old configs stay as they were)."""
    if not shape.n_horizons:
        return ""
    return f""",
  {{
    name: "{shape.horizon_output}"
    data_type: TYPE_FP32
    dims: [ {shape.n_horizons}, {shape.n_quantiles} ]
  }}"""


def _default_version(version_dir: Path) -> int:
    return int(version_dir.name) if version_dir.name.isdigit() and int(version_dir.name) > 0 else 1


def build_repository(
    version_dir: str | Path,
    repo_dir: str | Path,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    version: int | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> str:
    """Write ``<repo>/<name>/<version>/model.savedmodel/`` and ``<repo>/<name>/config.pbtxt``; return the config path.

    Everything is checked before anything is written, and the version folder is copied before the config,
    so a failure leaves no config that names files which are not there. Re-running replaces that version.
    """
    if not MODEL_NAME_PATTERN.match(model_name):
        raise ValueError(f"model name {model_name!r}: use letters, digits, '_', '.' or '-'")
    if isinstance(max_batch_size, bool) or max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1 (dynamic batching needs a batch axis), got {max_batch_size}")
    saved, metadata = _local_savedmodel(version_dir)
    root = Path(version_dir)
    version = _default_version(root) if version is None else version
    if isinstance(version, bool) or version < 1:
        raise ValueError(f"version must be a positive integer (Triton's version folders), got {version}")
    shape = shape_from_metadata(metadata, root / METADATA_FILE)
    config = render_config(shape, model_name, max_batch_size, source=f"{root.name}/{METADATA_FILE}")

    model_root = storage.join(str(repo_dir), model_name)
    with tempfile.TemporaryDirectory(prefix="triton-layout-") as tmp:
        staged = Path(tmp) / TRITON_SAVEDMODEL_DIR
        staged.mkdir()
        for entry in sorted(saved.iterdir()):
            if entry.name in NOT_SAVEDMODEL or entry.name.startswith("."):
                continue
            if entry.is_dir():
                shutil.copytree(entry, staged / entry.name)
            else:
                shutil.copy2(entry, staged / entry.name)
        storage.copy_tree(Path(tmp), storage.join(model_root, str(version)))
    config_path = storage.join(model_root, CONFIG_FILE)
    storage.write_text(config_path, config)
    return config_path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; a bad input folder exits 2 with the reason on stderr instead of a traceback."""
    parser = argparse.ArgumentParser(
        prog="python -m inference.triton_layout",
        description="Build a Triton model repository (config.pbtxt + model.savedmodel) from an exported version.",
    )
    parser.add_argument(
        "version_dir", help="exported version folder (saved_model.pb, variables/, bitpredict_model.json)"
    )
    parser.add_argument("repo_dir", help="Triton model repository to write into (local folder or gs://)")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="Triton model name (default: %(default)s)")
    parser.add_argument("--version", type=int, default=None, help="Triton version (default: the folder's name, else 1)")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE, help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        config_path = build_repository(
            args.version_dir,
            args.repo_dir,
            model_name=args.model_name,
            version=args.version,
            max_batch_size=args.max_batch_size,
        )
    except ValueError as exc:
        print(f"triton_layout: {exc}", file=sys.stderr)
        return 2
    print(config_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
