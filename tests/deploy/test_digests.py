"""Images by digest: the base images the Dockerfiles start from, and the images a release deploys
(``scripts/pin_images.py`` rewrites the gcp overlay; kubectl's kustomize renders it)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = ("components/Dockerfile", "inference/Dockerfile", "ui/Dockerfile")
IMAGES = ("bitpredict-components", "bitpredict-inference", "bitpredict-ui")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_the_base_image_is_pinned_by_digest(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert base and re.search(r"@sha256:[0-9a-f]{64}$", base.group(1)), f"{dockerfile}: {base and base.group(1)}"
    assert all(line.split()[1].startswith("${BASE_IMAGE}") for line in text.splitlines() if line.startswith("FROM "))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not installed")
def test_a_release_names_every_image_by_digest(tmp_path: Path) -> None:
    manifests = shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    digests = tmp_path / "digests"
    digests.mkdir()
    for i, image in enumerate(IMAGES):
        (digests / image).write_text(f"sha256:{str(i) * 64}\n")
    overlay = manifests / "overlays" / "gcp"
    before = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"ghcr\.io/bitpredict/bitpredict-inference:", before)  # by tag until a release pins it
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "pin_images.py"), str(overlay), str(digests)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rendered = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True).stdout
    named = re.findall(r"image:\s*(ghcr\.io/bitpredict/\S+)", rendered)
    assert sorted(set(named)) == sorted(f"ghcr.io/bitpredict/{image}@sha256:{str(i) * 64}" for i, image in
                                        enumerate(IMAGES))  # fmt: skip
    (digests / "bitpredict-ui").write_text("latest\n")
    refused = subprocess.run([sys.executable, str(REPO / "scripts" / "pin_images.py"), str(overlay), str(digests)],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and "not sha256" in refused.stderr
