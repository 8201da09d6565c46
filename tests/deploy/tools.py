"""What the deploy checks run: the project root, external tools (from the venv first), and kustomize renders."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")
OVERLAYS = REPO / "manifests" / "overlays"


def tool(name: str) -> str | None:
    """A binary from the venv's bin/ (``make test`` runs without activating it), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


@functools.cache
def kustomize(folder: Path) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl kustomize <folder>`` renders (cached: several tests read the same render)."""
    out = subprocess.run([KUBECTL or "kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {folder.relative_to(REPO)} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)
