"""Every object the kustomize overlays render: valid against its schema, and following the workload policy
(``tests/deploy/k8s_policy.py``); no Secret with data anywhere in the repo. Each overlay under
``manifests/overlays/<name>/`` is rendered with ``kubectl kustomize`` (skipped, saying so, while an overlay or
kubectl is missing). Each check is also run against a deliberately broken copy (``test_*_catches_*``)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from tests.deploy.k8s_policy import (
    cluster_problems,
    policy_problems,
    repo_yaml_files,
    secret_documents,
    validation_problems,
    workloads,
)
from tests.deploy.tools import KUBECTL, OVERLAYS, REPO, kustomize

EXPECTED_OVERLAYS = ("local", "gcp")
OVERLAY_NAMES = sorted(set(EXPECTED_OVERLAYS) | {p.name for p in OVERLAYS.glob("*/") if p.is_dir()})


def render_overlay(overlay: str) -> tuple[dict[str, Any], ...]:
    return kustomize(OVERLAYS / overlay)


@pytest.fixture(params=OVERLAY_NAMES)
def rendered(request: pytest.FixtureRequest) -> tuple[str, tuple[dict[str, Any], ...]]:
    """(overlay name, its rendered objects); a skip, saying why, while the overlay or kubectl is missing."""
    overlay = request.param
    if not (OVERLAYS / overlay / "kustomization.yaml").exists():
        pytest.skip(f"manifests/overlays/{overlay}/ does not exist yet (the base/overlays layout is being built)")
    if KUBECTL is None:
        pytest.skip("kubectl not installed (kustomize is built into it)")
    return overlay, render_overlay(overlay)


def test_every_rendered_object_validates_against_its_schema(rendered: tuple[str, tuple[dict, ...]]) -> None:
    overlay, objects = rendered
    assert objects, f"overlay {overlay} renders nothing"
    problems = [p for obj in objects for p in validation_problems(obj)]
    assert not problems, f"overlay {overlay}:\n" + "\n".join(problems)


def test_every_rendered_workload_follows_the_policy(rendered: tuple[str, tuple[dict, ...]]) -> None:
    overlay, objects = rendered
    assert any(True for obj in objects for _ in workloads(obj)), f"overlay {overlay} renders no containers"
    problems = policy_problems(objects)
    assert not problems, f"overlay {overlay}:\n" + "\n".join(problems)


def test_every_rendered_overlay_lets_in_only_who_belongs(rendered: tuple[str, tuple[dict, ...]]) -> None:
    """Issue 29: default deny, the predictor only from the transformer, the InferenceService cluster-local, the UI
    behind oauth2-proxy with TLS (and its ManagedCertificate defined), seccomp on every pod (policy_problems)."""
    overlay, objects = rendered
    problems = cluster_problems(objects)
    assert not problems, f"overlay {overlay}:\n" + "\n".join(problems)
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "NetworkPolicy"} >= {"default-deny", "drift-egress"}


CLUSTER_MUTATIONS = {
    "no default deny": (lambda objs: [o for o in objs if o["metadata"]["name"] != "default-deny"], "default-deny"),
    "predictor open": (
        lambda objs: [
            o
            if o["metadata"]["name"] != "predictor-from-transformer"
            else {**o, "spec": {**o["spec"], "ingress": [{"from": [{"namespaceSelector": {}}]}]}}
            for o in objs
        ],
        "the predictor admits",
    ),
    "public isvc": (
        lambda objs: [
            {**o, "metadata": {**o["metadata"], "labels": {}}} if o["kind"] == "InferenceService" else o for o in objs
        ],
        "not cluster-local",
    ),
    "no auth": (
        lambda objs: [_reroute(o) if o["kind"] == "Ingress" else o for o in objs],
        "without authentication",
    ),
    "no certificate": (lambda objs: [o for o in objs if o["kind"] != "ManagedCertificate"], "is not defined"),
}


def _reroute(ingress: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(ingress)
    changed["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "bitpredict-ui"
    return changed


@pytest.mark.parametrize("mutation", sorted(CLUSTER_MUTATIONS))
def test_cluster_checks_catch_a_broken_copy(mutation: str) -> None:
    if KUBECTL is None or not (OVERLAYS / "gcp" / "kustomization.yaml").exists():
        pytest.skip("kubectl or the gcp overlay is missing")
    objects = list(copy.deepcopy(render_overlay("gcp")))
    assert not cluster_problems(objects)
    mutate, expected = CLUSTER_MUTATIONS[mutation]
    problems = cluster_problems(mutate(objects))
    assert any(expected in p for p in problems), f"{mutation}: expected {expected!r}, got {problems}"


def test_seccomp_is_required_on_the_predictor_pod_for_the_storage_initializer() -> None:
    isvc = _find(_first_rendered(), "InferenceService")
    assert not policy_problems([isvc])
    isvc["spec"]["predictor"].pop("securityContext")
    assert any("storage-initializer" in p for p in policy_problems([isvc]))


def test_no_secret_with_data_anywhere_in_the_repo() -> None:
    files = repo_yaml_files()
    assert any(p.is_relative_to(REPO / "manifests") for p in files), "found none of the manifests: wrong root?"
    found = {str(p.relative_to(REPO)): s for p in files if (s := secret_documents(p.read_text(errors="replace")))}
    assert not found, f"Secrets with data/stringData (reference them by name; create them out of band): {found}"


# ---- the checks themselves, against broken copies -------------------------------------------------------


def _first_rendered() -> tuple[dict[str, Any], ...]:
    for overlay in OVERLAY_NAMES:
        if (OVERLAYS / overlay / "kustomization.yaml").exists():
            if KUBECTL is None:
                pytest.skip("kubectl not installed (kustomize is built into it)")
            return render_overlay(overlay)
    pytest.skip("no overlay exists yet under manifests/overlays/")


def _find(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o.get("kind") == kind]
    if not found:
        pytest.skip(f"the overlay renders no {kind}")
    return copy.deepcopy(found[0])


def _ui_container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


POLICY_MUTATIONS = {
    "no cpu limit": (lambda c, p: c["resources"]["limits"].pop("cpu"), "resources.limits lacks cpu"),
    "no requests": (lambda c, p: c["resources"].pop("requests"), "resources.requests lacks cpu, memory"),
    "latest tag": (lambda c, p: c.update(image="ghcr.io/bitpredict/bitpredict-ui:latest"), "not pinned"),
    "untagged": (lambda c, p: c.update(image="ghcr.io/bitpredict/bitpredict-ui"), "not pinned"),
    "root": (
        lambda c, p: (p["securityContext"].pop("runAsNonRoot"), p["securityContext"].update(runAsUser=0)),
        "may run as root",
    ),
    "escalation": (lambda c, p: c["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEsc"),
    "writable root": (lambda c, p: c["securityContext"].pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem"),
    "capabilities": (lambda c, p: c["securityContext"]["capabilities"].update(drop=["NET_RAW"]), "drop lacks ALL"),
    "no liveness": (lambda c, p: c.pop("livenessProbe"), "no livenessProbe"),
    "no readiness": (lambda c, p: c.pop("readinessProbe"), "no readinessProbe"),
}


@pytest.mark.parametrize("mutation", sorted(POLICY_MUTATIONS))
def test_policy_catches_a_broken_copy(mutation: str) -> None:
    objects = _first_rendered()
    deployment = _find(objects, "Deployment")
    assert not policy_problems([deployment])
    mutate, expected = POLICY_MUTATIONS[mutation]
    mutate(_ui_container(deployment), deployment["spec"]["template"]["spec"])
    problems = policy_problems([deployment])
    assert any(expected in p for p in problems), f"{mutation}: expected {expected!r}, got {problems}"


def test_policy_catches_a_secret_and_an_unsafe_transformer() -> None:
    objects = _first_rendered()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}, "stringData": {"token": "x"}}
    assert any("a Secret with data" in p for p in policy_problems([secret]))
    assert secret_documents(yaml.safe_dump(secret)) == ["Secret/k"]
    assert secret_documents("kind: Secret\nmetadata: {name: k}\ndata: {{ .Values.x }}\n: bad") != []
    isvc = _find(objects, "InferenceService")
    assert not policy_problems([isvc])
    transformer = isvc["spec"]["transformer"]["containers"][0]
    transformer["securityContext"].pop("readOnlyRootFilesystem")
    transformer["resources"].pop("limits")
    problems = policy_problems([isvc])
    assert any("transformer container" in p and "readOnlyRootFilesystem" in p for p in problems), problems
    assert any("transformer container" in p and "resources.limits" in p for p in problems), problems


def test_schemas_catch_a_broken_copy() -> None:
    objects = _first_rendered()
    deployment = _find(objects, "Deployment")
    _ui_container(deployment)["imagePullPolcy"] = "Always"  # misspelt: strict mode rejects unknown fields
    assert any("imagePullPolcy" in p for p in validation_problems(deployment))
    deployment = _find(objects, "Deployment")
    deployment["spec"]["replicas"] = "two"
    assert any("spec.replicas" in p for p in validation_problems(deployment))

    isvc = _find(objects, "InferenceService")
    assert not validation_problems(isvc)
    isvc["spec"]["transformer"]["containers"][0]["readinesProbe"] = {}  # misspelt
    assert any("readinesProbe" in p for p in validation_problems(isvc))
    isvc = _find(objects, "InferenceService")
    isvc["spec"]["predictor"]["model"]["storageUrl"] = isvc["spec"]["predictor"]["model"].pop("storageUri")
    assert any("storageUrl" in p for p in validation_problems(isvc))
    isvc = _find(objects, "InferenceService")
    isvc["spec"]["predictor"]["minReplicas"] = "one"
    assert any("minReplicas" in p for p in validation_problems(isvc))

    monitor = _find(objects, "PodMonitor")
    monitor["spec"].pop("selector")
    assert any("'selector' is a required property" in p for p in validation_problems(monitor))

    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert any("no schema for example.com/v1 Widget" in p for p in validation_problems(unknown))


def test_the_stored_kserve_schema_matches_the_pinned_sdk() -> None:
    """Regenerate with ``.venv/bin/python -m tests.schemas.kserve_schema`` after changing the kserve pin."""
    from tests.schemas import kserve_schema

    stored = json.loads(kserve_schema.SCHEMA_FILE.read_text())
    assert stored == kserve_schema.build(), "stale: run `.venv/bin/python -m tests.schemas.kserve_schema`"
