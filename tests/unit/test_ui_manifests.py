"""The UI's Deployment, Service and Ingress render and follow the workload rules (non-root, probes, limits)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (kustomize is built into it)")
def test_the_ui_renders_non_root_with_probes_on_the_streamlit_health_endpoint() -> None:
    rendered = subprocess.run([KUBECTL, "kustomize", str(REPO / "manifests" / "ui")], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    objects = {d["kind"]: d for d in yaml.safe_load_all(rendered.stdout) if d}
    assert set(objects) == {"Deployment", "Service", "Ingress", "ServiceAccount"}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/_stcore/health"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert not container["image"].endswith(":latest")
    env = {e["name"] for e in container["env"]}
    assert {"BITPREDICT_TRANSFORMER_URL", "MLFLOW_TRACKING_URI", "BITPREDICT_DATA_DIR"} <= env
    backend = objects["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == objects["Service"]["metadata"]["name"] == "bitpredict-ui"
