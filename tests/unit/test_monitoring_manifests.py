"""The drift CronJob and its RBAC render with kustomize and follow the rules every workload here follows."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (kustomize is built into it)")
def test_the_drift_cronjob_renders_runs_as_non_root_and_may_only_create_runs() -> None:
    rendered = subprocess.run(
        [KUBECTL, "kustomize", str(REPO / "manifests" / "monitoring")], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    objects = {d["kind"]: d for d in yaml.safe_load_all(rendered.stdout) if d}
    assert set(objects) == {"ServiceAccount", "Role", "RoleBinding", "CronJob"}
    job = objects["CronJob"]
    assert job["metadata"]["namespace"] == "bitpredict" and job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "bitpredict-drift" and pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] == ["bitpredict", "drift"] and not container["image"].endswith(":latest")
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"] for e in container["env"]}
    assert {"KFP_HOST", "BITPREDICT_DRIFT__PUSHGATEWAY_URL", "MLFLOW_TRACKING_URI"} <= env
    rules = objects["Role"]["rules"]
    assert {g for r in rules for g in r["apiGroups"]} == {"pipelines.kubeflow.org"}
    assert not {v for r in rules for v in r["verbs"]} & {"delete", "update", "patch", "*"}
