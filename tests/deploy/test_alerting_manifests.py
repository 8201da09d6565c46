"""The alert receiver's manifests and the Alertmanager route: what runs, who it may reach, and one route in two forms.

The workload rules (non-root, read-only root, seccomp, resources, probes, pinned image) and the schemas (the
AlertmanagerConfig's hand-written one included) are asserted once on the rendered overlays in
``tests/deploy/test_manifests.py``; the route's behaviour is tested with real binaries in
``tests/integration/test_alerting.py`` and by amtool in ``tests/integration/test_monitoring.py``.
"""

from __future__ import annotations

import shlex

import pytest
import yaml

from tests.deploy.tools import KUBECTL, REPO, kustomize

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (kustomize is built into it)")
ALERTMANAGER_YML = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"


def _objects() -> dict[str, dict]:
    return {d["kind"]: d for d in kustomize(REPO / "manifests" / "alerting")}


def test_the_receiver_runs_the_drift_jobs_rerun_with_its_state_on_a_volume() -> None:
    objects = _objects()
    assert set(objects) == {"Deployment", "Service", "PersistentVolumeClaim", "ServiceMonitor", "AlertmanagerConfig"}
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "bitpredict-drift"  # the Role that may create pipeline runs
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:2] == ["bitpredict", "alert-receiver"] and container["workingDir"] == "/app"
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options["--rerun-command"] == "python -m pipelines.rerun"  # the same rerun as the drift CronJob's
    from typer.main import get_command

    from bitpredict.cli import app

    known = {o for p in get_command(app).commands["alert-receiver"].params for o in p.opts}  # type: ignore[attr-defined]
    assert set(options) <= known, set(options) - known
    state = next(m for m in container["volumeMounts"] if m["mountPath"] == options["--state-dir"])
    volume = next(v for v in pod["volumes"] if v["name"] == state["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == objects["PersistentVolumeClaim"]["metadata"]["name"]
    # the token is a mounted Secret file (never an env var a rerun would inherit); no token, no pod
    token_dir = options["--token-file"].rsplit("/", 1)[0]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == token_dir)
    secret = next(v for v in pod["volumes"] if v["name"] == mount["name"])["secret"]
    assert mount["readOnly"] and secret["secretName"] == "bitpredict-alert-receiver-token"
    assert not secret.get("optional")
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert {e["name"] for e in container["env"]} >= {"KFP_HOST", "BITPREDICT_DATA_DIR", "MLFLOW_TRACKING_URI"}
    service = objects["Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert objects["ServiceMonitor"]["spec"]["endpoints"][0]["path"] == "/metrics"


def test_the_alertmanager_config_and_its_operator_form_are_the_same_route() -> None:
    plain = yaml.safe_load(ALERTMANAGER_YML.read_text())
    (route,) = [r for r in plain["route"]["routes"] if r["receiver"] == "bitpredict-rerun"]
    (receiver,) = [r for r in plain["receivers"] if r["name"] == "bitpredict-rerun"]
    (webhook,) = receiver["webhook_configs"]
    spec = _objects()["AlertmanagerConfig"]["spec"]
    crd_route = spec["route"]
    assert route["matchers"] == ['action="rerun"']
    assert [(m["name"], m["value"], m.get("matchType", "=")) for m in crd_route["matchers"]] == [
        ("action", "rerun", "=")
    ]
    assert crd_route["groupBy"] == route["group_by"] == ["alertname"]
    for plain_key, crd_key in (("group_wait", "groupWait"), ("group_interval", "groupInterval"),
                               ("repeat_interval", "repeatInterval")):  # fmt: skip
        assert crd_route[crd_key] == route[plain_key], plain_key
    (crd_receiver,) = spec["receivers"]
    (crd_webhook,) = crd_receiver["webhookConfigs"]
    assert crd_webhook["url"] == webhook["url"] and crd_webhook["sendResolved"] is webhook["send_resolved"] is True
    assert crd_webhook["httpConfig"]["authorization"]["credentials"]["name"] == "bitpredict-alert-receiver-token"
    # the webhook reaches the Service on its port and the receiver's path
    service = _objects()["Service"]
    port = service["spec"]["ports"][0]["port"]
    namespace = service["metadata"]["namespace"]
    expected = f"http://{service['metadata']['name']}.{namespace}.svc.cluster.local:{port}/alerts"
    assert webhook["url"] == expected
    command = _objects()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert f"--port {port}" in shlex.join(command)
    (inhibit,) = plain["inhibit_rules"]
    (crd_inhibit,) = spec["inhibitRules"]
    assert inhibit["source_matchers"] == ['alertname="BitPredictNoNewData"'] and inhibit["target_matchers"] == [
        'action="rerun"'
    ]
    assert [(m["name"], m["value"]) for m in crd_inhibit["sourceMatch"]] == [("alertname", "BitPredictNoNewData")]
    assert [(m["name"], m["value"]) for m in crd_inhibit["targetMatch"]] == [("action", "rerun")]


def test_the_base_wires_the_receiver_to_the_settings() -> None:
    objects = {(d["kind"], d["metadata"]["name"]): d for d in kustomize(REPO / "manifests" / "overlays" / "local")}
    container = objects[("Deployment", "bitpredict-alert-receiver")]["spec"]["template"]["spec"]["containers"][0]
    config = container["envFrom"][0]["configMapRef"]["name"]
    assert config.startswith("bitpredict-settings-") and ("ConfigMap", config) in objects
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BITPREDICT_DATA_DIR"] == "/data"  # local: the drift state and the published run on the data PVC
    assert ("ServiceAccount", "bitpredict-drift") in objects
