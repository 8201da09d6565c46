"""The whole named stack imports together from the project's environment (one process, like a container)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

MODULES = {
    "kfp": "kfp.dsl",
    "kserve": "kserve",
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "tensorflow": "tensorflow",
    "tensorflow-serving-api": "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "mlflow": "mlflow",
    "dvc": "dvc.repo",
    "dvc-gs": "dvc_gs",
    "google-cloud-storage": "google.cloud.storage",
    "tweepy": "tweepy",
    "feedparser": "feedparser",
    "vaderSentiment": "vaderSentiment.vaderSentiment",
    "transformers": "transformers",
    "torch": "torch",
    "evidently": "evidently",
    "streamlit": "streamlit",
    "statsmodels": "statsmodels.api",
    "scikit-learn": "sklearn",
    "pytest": "pytest",
    "hypothesis": "hypothesis",
    "ta-lib": "talib",
}

PROBE = textwrap.dedent(
    """
    import importlib, json, sys
    from importlib.metadata import version
    found = {}
    for dist, module in json.loads(sys.argv[1]).items():
        mod = importlib.import_module(module)
        found[dist] = {"version": version(dist), "file": getattr(mod, "__file__", "") or ""}
    print(json.dumps(found))
    """
)


def test_every_package_of_the_stack_imports_from_the_venv() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(MODULES)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(found) == set(MODULES)
    prefix = sys.prefix
    outside = {d: info["file"] for d, info in found.items() if info["file"] and not info["file"].startswith(prefix)}
    assert not outside, f"imported from outside {prefix}: {outside}"


def test_pins_that_resolve_known_conflicts_hold() -> None:
    from importlib.metadata import version

    tweepy = tuple(int(p) for p in version("tweepy").split(".")[:2])
    assert tweepy >= (4, 16), "kfp dragged tweepy back to a 2022 release (see constraints.txt)"
    assert int(version("protobuf").split(".")[0]) < 7
    assert int(version("pandas").split(".")[0]) < 3
    assert version("tensorflow").startswith("2.21")
