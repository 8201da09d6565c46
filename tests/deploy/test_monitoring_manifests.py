"""The drift CronJob and its RBAC: one run at a time, its own service account, and leave to create runs only.

The rules every workload follows (non-root, read-only root, resources, pinned images) are asserted once, on the
rendered overlays that include monitoring, in ``tests/deploy/test_manifests.py``.
"""

from __future__ import annotations

import pytest

from tests.deploy.tools import KUBECTL, REPO, kustomize


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (kustomize is built into it)")
def test_the_drift_cronjob_renders_and_may_only_create_runs() -> None:
    objects = {d["kind"]: d for d in kustomize(REPO / "manifests" / "monitoring")}
    assert set(objects) == {"ServiceAccount", "Role", "RoleBinding", "CronJob"}
    job = objects["CronJob"]
    assert job["metadata"]["namespace"] == "bitpredict" and job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "bitpredict-drift"
    (container,) = pod["containers"]
    # `bitpredict drift` alone only reports: the rerun on drift is the trigger command the job passes
    assert container["command"] == ["bitpredict", "drift", "--trigger-command", "python -m pipelines.rerun"]
    # ... which runs from the image's /app, where components/Dockerfile copies pipelines/
    assert container["image"].split("/")[-1].startswith("bitpredict-components:")
    assert container["workingDir"] == "/app"
    dockerfile = (REPO / "components" / "Dockerfile").read_text()
    assert "WORKDIR /app" in dockerfile and "pipelines/ pipelines/" in dockerfile
    assert (REPO / "pipelines" / "rerun.py").is_file()
    env = {e["name"] for e in container["env"]}
    assert {"KFP_HOST", "BITPREDICT_DRIFT__PUSHGATEWAY_URL", "MLFLOW_TRACKING_URI"} <= env
    rules = objects["Role"]["rules"]
    assert {g for r in rules for g in r["apiGroups"]} == {"pipelines.kubeflow.org"}
    assert not {v for r in rules for v in r["verbs"]} & {"delete", "update", "patch", "*"}
