"""Fake run artifacts for every item ``bitpredict.operations.publish`` publishes, and a snapshot of what is published —
shared by the publish unit tests and the chaos test that SIGKILLs a publish at each step."""

from __future__ import annotations

from pathlib import Path

from bitpredict.operations.publish import ITEMS


def fake_artifacts(root: Path, tag: str) -> dict[str, str]:
    """One run's artifacts, each file holding ``tag`` so the test can tell runs apart."""
    out = {}
    for name, relative in ITEMS.items():
        path = root / tag / name
        if "." in Path(relative).name:  # a file item
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{tag}:{name}")
        else:  # a folder item
            (path / "sub").mkdir(parents=True)
            (path / "part.txt").write_text(f"{tag}:{name}")
            (path / "sub" / "deep.txt").write_text(f"{tag}:{name}:deep")
        out[name] = str(path)
    return out


def published_state(data: Path) -> dict[str, str]:
    """Every published file's content, by path."""
    return {
        str(p.relative_to(data)): p.read_text()
        for relative in ITEMS.values()
        for p in ([data / relative] if (data / relative).is_file() else sorted((data / relative).rglob("*")))
        if p.is_file()
    }
