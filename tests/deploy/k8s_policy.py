"""Kubernetes checks as functions: schema validation of every rendered object, and the workload policy.

Built-in kinds are validated by ``kubernetes_validate`` against the Kubernetes 1.30 OpenAPI schemas it bundles
(strict: unknown fields fail); the InferenceService against ``tests/schemas/serving.kserve.io_inferenceservices.json``
(built from the pinned KServe SDK, see the README there); the prometheus-operator and GKE kinds against the small
hand-written schemas below, which check only apiVersion, kind, the required fields and the types of the fields this
project uses. The policy, over every object: resources, non-root, no privilege escalation, read-only root,
capabilities dropped, pinned images, probes on Deployments, and no Secret with data. This is the one place these
rules are asserted; ``tests/deploy/test_manifests.py`` runs them on every overlay and on broken copies.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.deploy.tools import REPO

# The Kubernetes API the manifests are checked against: the kubernetes client pinned in the lock is 30.x.
K8S_VERSION = "1.30.0"
SCHEMAS = REPO / "tests" / "schemas"

_SELECTOR = {
    "type": "object",
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"]}},
    },
    "additionalProperties": False,
}
_DURATION = {  # Prometheus durations, as the operator's CRDs pattern them
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_ENDPOINT = {
    "type": "object",
    "properties": {
        "port": {"type": "string"},
        "portNumber": {"type": "integer"},
        "targetPort": {"type": ["integer", "string"]},
        "path": {"type": "string"},
        "scheme": {"type": "string"},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
    },
}


def _crd(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": spec,
        },
    }


def _monitor(kind: str, endpoints_field: str) -> dict[str, Any]:
    """PodMonitor and ServiceMonitor differ only in the name of their endpoint list."""
    spec = {
        "type": "object",
        "required": ["selector"],
        "properties": {
            "selector": _SELECTOR,
            endpoints_field: {"type": "array", "items": _ENDPOINT},
            "namespaceSelector": {"type": "object"},
            "jobLabel": {"type": "string"},
        },
    }
    return _crd("monitoring.coreos.com/v1", kind, spec)


_MATCHERS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "value": {"type": "string"},
            "matchType": {"enum": ["=", "!=", "=~", "!~"]},
        },
        "additionalProperties": False,
    },
}
_SECRET_KEY = {
    "type": "object",
    "required": ["name", "key"],
    "properties": {"name": {"type": "string"}, "key": {"type": "string"}, "optional": {"type": "boolean"}},
    "additionalProperties": False,
}
# AlertmanagerConfig (v1alpha1): the route, webhook receivers and inhibit rules; unknown fields fail (the operator
# would drop them silently), e.g. a snake_case `group_wait` copied from alertmanager.yml.
_ALERTMANAGER_CONFIG_SPEC = {
    "type": "object",
    "properties": {
        "route": {
            "type": "object",
            "required": ["receiver"],
            "properties": {
                "receiver": {"type": "string", "minLength": 1},
                "matchers": _MATCHERS,
                "groupBy": {"type": "array", "items": {"type": "string"}},
                "groupWait": _DURATION,
                "groupInterval": _DURATION,
                "repeatInterval": _DURATION,
                "continue": {"type": "boolean"},
                "routes": {"type": "array"},
            },
            "additionalProperties": False,
        },
        "receivers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "webhookConfigs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "url": {"type": "string", "pattern": "^https?://"},
                                "urlSecret": _SECRET_KEY,
                                "sendResolved": {"type": "boolean"},
                                "maxAlerts": {"type": "integer", "minimum": 0},
                                "httpConfig": {
                                    "type": "object",
                                    "properties": {
                                        "authorization": {
                                            "type": "object",
                                            "properties": {"type": {"type": "string"}, "credentials": _SECRET_KEY},
                                            "additionalProperties": False,
                                        }
                                    },
                                },
                            },
                            "additionalProperties": False,
                        },
                    },
                },
            },
        },
        "inhibitRules": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sourceMatch": _MATCHERS,
                    "targetMatch": _MATCHERS,
                    "equal": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}


# Hand-written from prometheus-operator's CRDs (operator 0.91: PodMonitor/ServiceMonitor require spec and
# spec.selector) and GKE's ManagedCertificate (spec.domains): not their full schemas, only what this project uses.
HAND_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "PodMonitor"): _monitor("PodMonitor", "podMetricsEndpoints"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _monitor("ServiceMonitor", "endpoints"),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _crd(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        {
            "type": "object",
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "properties": {
                                        "record": {"type": "string"},
                                        "alert": {"type": "string"},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": _DURATION,
                                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                        "annotations": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    ),
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): _crd(
        "monitoring.coreos.com/v1alpha1", "AlertmanagerConfig", _ALERTMANAGER_CONFIG_SPEC
    ),
    ("networking.gke.io/v1", "ManagedCertificate"): _crd(
        "networking.gke.io/v1",
        "ManagedCertificate",
        {
            "type": "object",
            "required": ["domains"],
            "properties": {"domains": {"type": "array", "minItems": 1, "items": {"type": "string"}}},
        },
    ),
}


@functools.cache
def _validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    kserve = json.loads((SCHEMAS / "serving.kserve.io_inferenceservices.json").read_text())
    schemas = {**HAND_SCHEMAS, ("serving.kserve.io/v1beta1", "InferenceService"): kserve}
    out = {}
    for key, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        out[key] = jsonschema.Draft202012Validator(schema)
    return out


def label(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def validation_problems(obj: dict[str, Any]) -> list[str]:
    """Schema errors of one object: built-in kinds by kubernetes_validate (strict), CRDs by their JSON schema."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    validator = _validators().get(key)
    if validator is not None:
        return [
            f"{label(obj)}: {'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message[:300]}"
            for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        ]
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{label(obj)}: {'.'.join(str(p) for p in err.path) or '<root>'}: {err.message[:300]}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"{label(obj)}: no schema for {key[0]} {key[1]} (not a Kubernetes {K8S_VERSION} kind): add its CRD "
            "schema to tests/schemas/ or HAND_SCHEMAS in tests/deploy/k8s_policy.py"
        ]
    return []


POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}
ISVC_COMPONENTS = ("predictor", "transformer", "explainer")


@dataclass(frozen=True)
class Workload:
    where: str  # e.g. "Deployment/bitpredict-ui container ui"
    container: dict[str, Any]
    pod: dict[str, Any]  # the pod spec (its securityContext is the fallback)
    full_policy: bool  # False: a container KServe builds from its ServingRuntime (resources only)


def workloads(obj: dict[str, Any]) -> Iterator[Workload]:
    """Every container an object runs, with its pod spec."""
    kind = obj.get("kind")
    pods: list[tuple[str, dict[str, Any]]] = []
    if kind in POD_TEMPLATE_PATHS:
        spec: Any = obj
        for key in POD_TEMPLATE_PATHS[kind]:
            spec = (spec or {}).get(key)
        pods.append((label(obj), spec or {}))
    elif kind == "InferenceService":
        for component in ISVC_COMPONENTS:
            comp = (obj.get("spec") or {}).get(component)
            if not comp:
                continue
            pods.append((f"{label(obj)} {component}", comp))
            # `predictor.model` (or a framework key such as `tensorflow`) is not a container of ours: KServe
            # builds it from the ServingRuntime and merges these fields in. Only its resources are ours to set.
            for key, value in comp.items():
                if isinstance(value, dict) and ("modelFormat" in value or "storageUri" in value):
                    yield Workload(f"{label(obj)} {component}.{key}", value, comp, full_policy=False)
    for where, pod in pods:
        for field in ("initContainers", "containers"):
            for container in pod.get(field) or []:
                yield Workload(f"{where} {field[:-1]} {container.get('name')}", container, pod, full_policy=True)


def _image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


def container_problems(w: Workload) -> list[str]:
    c = w.container
    problems = []
    resources = c.get("resources") or {}
    for section in ("requests", "limits"):
        missing = [r for r in ("cpu", "memory") if r not in (resources.get(section) or {})]
        if missing:
            problems.append(f"{w.where}: resources.{section} lacks {', '.join(missing)}")
    if "image" in c and not _image_pinned(str(c["image"])):
        problems.append(f"{w.where}: image {c['image']!r} is not pinned to a tag (or is :latest)")
    if not w.full_policy:
        return problems
    if not c.get("image"):
        problems.append(f"{w.where}: no image")
    sc = c.get("securityContext") or {}
    pod_sc = w.pod.get("securityContext") or {}

    def _setting(key: str) -> Any:
        return sc[key] if key in sc else pod_sc.get(key)

    non_root = _setting("runAsNonRoot")
    user = _setting("runAsUser")
    if non_root is False or user == 0 or not (non_root is True or (user is not None and user != 0)):
        problems.append(f"{w.where}: may run as root (runAsNonRoot: true or a runAsUser other than 0)")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{w.where}: securityContext.allowPrivilegeEscalation is not false")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{w.where}: securityContext.readOnlyRootFilesystem is not true")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        problems.append(f"{w.where}: securityContext.capabilities.drop lacks ALL")
    if sc.get("privileged"):
        problems.append(f"{w.where}: privileged")
    return problems


SECCOMP_OK = ("RuntimeDefault", "Localhost")


def seccomp_problems(w: Workload) -> list[str]:
    """The restricted Pod Security Standard: a seccomp profile on the container or its pod. A KServe model
    container also runs the storage-initializer (an init container KServe adds), which only the pod level covers."""
    pod_type = ((w.pod.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    own_type = (((w.container.get("securityContext") or {}).get("seccompProfile")) or {}).get("type")
    if not w.full_policy and "storageUri" in w.container and pod_type not in SECCOMP_OK:
        return [f"{w.where}: no pod-level seccompProfile RuntimeDefault (the storage-initializer would have none)"]
    if own_type not in SECCOMP_OK and pod_type not in SECCOMP_OK:
        return [f"{w.where}: no seccompProfile RuntimeDefault (the namespace enforces restricted)"]
    return []


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = ((policy.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


PREDICTOR = {"serving.kserve.io/inferenceservice": "bitpredict", "component": "predictor"}
TRANSFORMER = {"serving.kserve.io/inferenceservice": "bitpredict", "component": "transformer"}
KNATIVE = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "knative-serving"}}}
PREDICTOR_CALLERS = ({"podSelector": {"matchLabels": TRANSFORMER}}, KNATIVE)


def cluster_problems(objects: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[str]:
    """Who may reach what: a default-deny NetworkPolicy, the predictor only from the transformer, the
    InferenceService cluster-local, the UI's Ingress with TLS (its certificate defined) and auth in front."""
    problems: list[str] = []
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    both = {"Ingress", "Egress"}
    deny = [
        p for p in policies
        if (p["spec"].get("podSelector") or {}) == {} and set(p["spec"].get("policyTypes") or []) == both
        and not p["spec"].get("ingress") and not p["spec"].get("egress")
    ]  # fmt: skip
    if not deny:
        problems.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    for policy in policies:
        if not _selects(policy, PREDICTOR) or not (policy["spec"].get("podSelector") or {}):
            continue
        for rule in policy["spec"].get("ingress") or []:
            for peer in rule.get("from") or [{}]:
                if peer not in PREDICTOR_CALLERS:
                    problems.append(f"{label(policy)}: the predictor admits {peer} (only the transformer may call it)")
    if any(o.get("kind") == "InferenceService" for o in objects) and not any(
        _selects(p, PREDICTOR) and (p["spec"].get("podSelector") or {}) and "Ingress" in p["spec"]["policyTypes"]
        for p in policies
    ):
        problems.append("no NetworkPolicy restricts who reaches the predictor")
    certificates = {o["metadata"]["name"] for o in objects if o.get("kind") == "ManagedCertificate"}
    for obj in objects:
        if obj.get("kind") == "InferenceService":
            visibility = ((obj.get("metadata") or {}).get("labels") or {}).get("networking.kserve.io/visibility")
            if visibility != "cluster-local":
                problems.append(f"{label(obj)}: not cluster-local (networking.kserve.io/visibility)")
        if obj.get("kind") == "Ingress":
            managed = ((obj.get("metadata") or {}).get("annotations") or {}).get(
                "networking.gke.io/managed-certificates"
            )
            if managed:
                missing = [n.strip() for n in managed.split(",") if n.strip() not in certificates]
                if missing:
                    problems.append(f"{label(obj)}: ManagedCertificate {missing} is not defined")
            elif not (obj.get("spec") or {}).get("tls"):
                problems.append(f"{label(obj)}: no TLS (spec.tls or a GKE ManagedCertificate)")
            for rule in (obj.get("spec") or {}).get("rules") or []:
                for path in (rule.get("http") or {}).get("paths") or []:
                    service = ((path.get("backend") or {}).get("service") or {}).get("name", "")
                    if "oauth2-proxy" not in service:
                        problems.append(f"{label(obj)}: routes to {service!r} without authentication in front")
    return problems


def policy_problems(objects: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    for obj in objects:
        for w in workloads(obj):
            problems += container_problems(w)
            problems += seccomp_problems(w)
        if obj.get("kind") == "Deployment":
            pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
            for c in pod.get("containers") or []:
                for probe in ("readinessProbe", "livenessProbe"):
                    if not c.get(probe):
                        problems.append(f"{label(obj)} container {c.get('name')}: no {probe}")
        if obj.get("kind") == "Secret" and (obj.get("data") or obj.get("stringData")):
            problems.append(f"{label(obj)}: a Secret with data in the manifests (reference secrets by name only)")
    return problems


def repo_yaml_files() -> list[Path]:
    """The repo's YAML as git sees it (tracked + untracked, not ignored); a walk when git is unavailable."""
    git = shutil.which("git")
    if git:
        out = subprocess.run(
            [git, "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "*.yaml", "*.yml"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if out.returncode == 0:
            return [REPO / p for p in out.stdout.split("\0") if p and (REPO / p).is_file()]
    skip = {".git", ".venv", "data", "build", "node_modules", ".hypothesis", ".pytest_cache", ".ruff_cache"}
    return [
        p
        for p in REPO.rglob("*")
        if p.suffix in (".yaml", ".yml") and p.is_file() and not skip & set(p.relative_to(REPO).parts)
    ]


def secret_documents(text: str) -> list[str]:
    """Descriptions of the Secret documents with data/stringData in a YAML text."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError:  # a template or a fragment: fall back to a plain-text look
        blocks = re.split(r"^---\s*$", text, flags=re.MULTILINE)
        return [
            "a Secret with data (unparsed YAML)"
            for b in blocks
            if re.search(r"^kind:\s*Secret\s*$", b, re.MULTILINE) and re.search(r"^(?:data|stringData):", b, re.M)
        ]
    return [
        f"Secret/{(d.get('metadata') or {}).get('name')}"
        for d in docs
        if d.get("kind") == "Secret" and (d.get("data") or d.get("stringData"))
    ]
