"""The images, built for real without a Docker daemon and then run (``scripts/build_images_daemonless.sh``).

Slow (a first build downloads the image's part of the pinned stack: ~1 GB for the UI) and only where buildah and
debootstrap are installed and the user is root: ``make test-all`` on such a machine. The fast Dockerfile checks
(hadolint and the project's rules) are in ``tests/deploy/test_dockerfiles.py`` and run everywhere.

The base is made from Debian's packages (Docker Hub is not reachable here); pip inside the build reaches PyPI,
trusts the host's CA bundle (a TLS-inspecting proxy's) and, where the machine keeps a CPU torch wheel in
``/opt/wheels``, takes it from there instead of download.pytorch.org.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_images_daemonless.sh"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
LOCAL_WHEELS = Path("/opt/wheels")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("buildah") is None or shutil.which("debootstrap") is None,
        reason="buildah and debootstrap not installed (apt-get install buildah debootstrap)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="the daemonless build is set up for root here"),
]


def _reachable(host: str, port: int = 443) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def _build_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    if HOST_CA.exists():
        env["CA_BUNDLE"] = str(HOST_CA)
    if not _reachable("download.pytorch.org"):
        env["TORCH_INDEX_URL"] = "https://pypi.org/simple"
        if any(LOCAL_WHEELS.glob("torch-*+cpu-*.whl")):
            env["WHEELS"] = str(LOCAL_WHEELS)
    return env


@pytest.mark.timeout(3600)  # a first build on a slow network
def test_ui_image_builds_runs_as_non_root_and_answers_its_health_check() -> None:
    proc = subprocess.run(
        ["bash", str(SCRIPT), "ui"], cwd=REPO, env=_build_env(), capture_output=True, text=True, timeout=3600
    )
    assert proc.returncode == 0, f"daemonless build of the UI image failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
    inspect = subprocess.run(
        ["buildah", "inspect", "--type", "image", "--format", "{{.OCIv1.Config.User}}", _image("ui")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert inspect.stdout.strip() == "10001:10001"
    # The UI installs the `ui` extra only: the serving and training stacks must not be in it.
    absent = "import importlib.util as u, sys; sys.exit(sum(bool(u.find_spec(m)) for m in sys.argv[1:]))"
    heavy = ["tensorflow", "torch", "transformers", "kserve", "evidently", "kfp"]
    ctr = subprocess.run(["buildah", "from", _image("ui")], capture_output=True, text=True, timeout=120, check=True)
    name = ctr.stdout.strip()
    try:
        found = subprocess.run(
            ["buildah", "run", "--isolation", "chroot", name, "--", "python", "-c", absent, *heavy],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, timeout=120)
    assert found.returncode == 0, f"the UI image carries {found.returncode} of {heavy}:\n{found.stderr[-2000:]}"


def _image(name: str) -> str:
    version = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-c", "import bitpredict; print(bitpredict.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"ghcr.io/bitpredict/bitpredict-{name}:{version}"
