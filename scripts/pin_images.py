"""Name BitPredict's images by digest in a kustomize overlay: the release's deploy job runs it after the images job.

    python scripts/pin_images.py manifests/overlays/gcp digests/
    # digests/ holds one file per image, named as the image (bitpredict-components …), holding sha256:<64 hex>

Why a digest and not a tag: a tag can be pushed again (every push to main used to move ``:0.1.0``), so what runs
would depend on when a node pulled it; a digest names one image forever. The script writes kustomize's ``images:``
entries (name → digest) into the overlay's ``kustomization.yaml`` and the field specs that let kustomize's image
transformer reach the InferenceService's transformer container (a custom resource it does not know), then checks
that every BitPredict image in the rendered overlay is named by digest. Exit 1, naming the culprit, when not.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REGISTRY = "ghcr.io/bitpredict"
IMAGES = ("bitpredict-components", "bitpredict-inference", "bitpredict-ui")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
CONFIGURATION = "images-config.yaml"
# kustomize's image transformer knows Deployments, CronJobs …; these paths add KServe's InferenceService.
FIELD_SPECS = {
    "images": [
        {"path": "spec/transformer/containers/image", "kind": "InferenceService"},
        {"path": "spec/predictor/containers/image", "kind": "InferenceService"},
    ]
}


def read_digests(folder: Path) -> dict[str, str]:
    """``{image: digest}`` from one file per image; every image must be there, each a sha256 digest."""
    digests = {}
    for image in IMAGES:
        path = folder / image
        if not path.is_file():
            raise SystemExit(f"pin_images: no digest for {image} in {folder}")
        digest = path.read_text().strip()
        if not DIGEST.match(digest):
            raise SystemExit(f"pin_images: {path} holds {digest!r}, not sha256:<64 hex>")
        digests[image] = digest
    return digests


def pin(overlay: Path, digests: dict[str, str]) -> None:
    """Write the ``images:`` entries and the InferenceService field specs into the overlay."""
    path = overlay / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    kustomization["images"] = [{"name": f"{REGISTRY}/{image}", "digest": digests[image]} for image in IMAGES]
    configurations = kustomization.setdefault("configurations", [])
    if CONFIGURATION not in configurations:
        configurations.append(CONFIGURATION)
    (overlay / CONFIGURATION).write_text(yaml.safe_dump(FIELD_SPECS, sort_keys=False))
    path.write_text(yaml.safe_dump(kustomization, sort_keys=False))


def unpinned(rendered: str) -> list[str]:
    """BitPredict images in rendered manifests that are not named by digest."""
    names = re.findall(rf"image:\s*['\"]?({re.escape(REGISTRY)}/[^\s'\"]+)", rendered)
    return sorted({name for name in names if "@sha256:" not in name})


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    overlay, folder = Path(argv[0]), Path(argv[1])
    pin(overlay, read_digests(folder))
    rendered = subprocess.run(["kubectl", "kustomize", str(overlay)], check=True, capture_output=True, text=True)
    left = unpinned(rendered.stdout)
    if left:
        print(f"pin_images: still named by tag after pinning: {left}", file=sys.stderr)
        return 1
    print(f"pin_images: {overlay} names {len(IMAGES)} images by digest")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
