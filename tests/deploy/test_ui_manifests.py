"""The UI's Deployment, Service and Ingress: probes on the Streamlit health endpoint, its settings, its route.

The rules every workload follows (non-root, read-only root, resources, pinned images) are asserted once, on the
rendered overlays that include the UI, in ``tests/deploy/test_manifests.py``.
"""

from __future__ import annotations

import pytest

from tests.deploy.tools import KUBECTL, REPO, kustomize


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (kustomize is built into it)")
def test_the_ui_renders_with_probes_on_the_streamlit_health_endpoint() -> None:
    objects = {d["kind"]: d for d in kustomize(REPO / "manifests" / "ui")}
    assert set(objects) == {"Deployment", "Service", "Ingress", "ServiceAccount"}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/_stcore/health"
    env = {e["name"] for e in container["env"]}
    assert {"BITPREDICT_TRANSFORMER_URL", "MLFLOW_TRACKING_URI", "BITPREDICT_DATA_DIR"} <= env
    backend = objects["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == objects["Service"]["metadata"]["name"] == "bitpredict-ui"
