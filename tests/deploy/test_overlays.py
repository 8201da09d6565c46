"""The two overlays say what they promise: local storage and one replica; GCS, workload identity, autoscaling."""

from __future__ import annotations

import pytest

from tests.deploy.tools import KUBECTL, OVERLAYS, kustomize

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (kustomize is built into it)")


def render(overlay: str) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in kustomize(OVERLAYS / overlay)}


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_local_runs_one_replica_on_persistent_volumes() -> None:
    objects = render("local")
    isvc = objects[("InferenceService", "bitpredict")]["spec"]
    assert isvc["predictor"]["model"]["storageUri"].startswith("pvc://")
    transformer = isvc["transformer"]["containers"][0]
    assert (
        _env(transformer)["STORAGE_URI"].startswith("pvc://") and "--request_log=/data/requests" in transformer["args"]
    )
    assert isvc["predictor"]["maxReplicas"] == isvc["transformer"]["maxReplicas"] == 1
    ui = objects[("Deployment", "bitpredict-ui")]["spec"]
    assert ui["replicas"] == 1 and _env(ui["template"]["spec"]["containers"][0])["BITPREDICT_DATA_DIR"] == "/data"
    assert {("PersistentVolumeClaim", "bitpredict-data"), ("PersistentVolumeClaim", "bitpredict-models")} <= set(
        objects
    )
    settings = next(
        d for (kind, name), d in objects.items() if kind == "ConfigMap" and name.startswith("bitpredict-settings")
    )
    assert settings["data"]["BITPREDICT_DATA_DIR"] == "/data" and "MLFLOW_TRACKING_URI" in settings["data"]


def test_gcp_uses_gcs_workload_identity_and_autoscaling_limits() -> None:
    objects = render("gcp")
    isvc = objects[("InferenceService", "bitpredict")]["spec"]
    assert isvc["predictor"]["model"]["storageUri"].startswith("gs://")
    assert isvc["predictor"]["maxReplicas"] == 6 and isvc["transformer"]["maxReplicas"] == 10
    for account in ("bitpredict-serving", "bitpredict-drift", "bitpredict-ui"):
        annotation = objects[("ServiceAccount", account)]["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        assert annotation == f"{account}@PROJECT_ID.iam.gserviceaccount.com"
    assert objects[("Ingress", "bitpredict-ui")]["spec"]["ingressClassName"] == "gce"


@pytest.mark.parametrize("overlay", ["local", "gcp"])
def test_the_config_map_is_wired_and_secrets_are_references_only(overlay: str) -> None:
    objects = render(overlay)
    assert not [k for k in objects if k[0] == "Secret"]
    job = objects[("CronJob", "bitpredict-drift")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    config = job["envFrom"][0]["configMapRef"]["name"]
    assert config.startswith("bitpredict-settings-") and ("ConfigMap", config) in objects  # hashed name, resolved
    # keys reach the pod as files of a mounted Secret, never as env vars (a child process would inherit those)
    assert not [e for e in job["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    env = {e["name"]: e.get("value") for e in job["env"]}
    mount = next(m for m in job["volumeMounts"] if m["name"] == "api-keys")
    assert env["BITPREDICT_SECRETS_DIR"] == mount["mountPath"] and mount["readOnly"]
    pod = objects[("CronJob", "bitpredict-drift")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "api-keys")["secret"]
    assert volume["secretName"] == "bitpredict-api-keys" and volume["optional"]
    for objects_kind in objects.values():  # no workload anywhere takes a key from the environment
        assert "secretKeyRef" not in str(objects_kind)
    assert (
        objects[("Namespace", "bitpredict")]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    )
