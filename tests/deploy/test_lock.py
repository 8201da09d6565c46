"""The hashed locks (scripts/lock_hashes.sh) agree with the curated pins and hash every wheel they name.

Why: ``make setup`` and the images install with ``pip install --require-hashes``; a lock regenerated from an old
``requirements/constraints.txt`` (or edited by hand) would install other versions than the ones the pins explain.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "requirements"
LOCKS = ("lock.txt", "lock-pipeline.txt", "lock-serve.txt", "lock-ui.txt", "torch-cpu.txt", "torch-pypi.txt")
ENTRY = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", re.M)


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text.split("[")[0]).lower()


def entries(path: Path) -> dict[str, tuple[str, int]]:
    """``{name: (version, number of hashes)}`` of one lock file."""
    return {_name(m[1]): (m[2], m[3].count("--hash=")) for m in ENTRY.finditer(path.read_text())}


def pins() -> dict[str, str]:
    out = {}
    for line in (REQUIREMENTS / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, _, version = line.split(";")[0].strip().partition("==")
            out[_name(name)] = version.strip()
    return out


@pytest.mark.parametrize("lock", LOCKS)
def test_every_entry_is_hashed_and_agrees_with_the_pins(lock: str) -> None:
    found = entries(REQUIREMENTS / lock)
    assert found, f"{lock} names no package"
    unhashed = sorted(name for name, (_, hashes) in found.items() if hashes == 0)
    assert not unhashed, f"{lock}: no hash for {unhashed}"
    pinned = pins()
    differ = {n: (v, pinned[n]) for n, (v, _) in found.items() if n in pinned and v.split("+")[0] != pinned[n]}
    assert not differ, f"{lock} disagrees with constraints.txt (lock, pin): {differ}; run `make lock-hashes`"


def test_the_full_lock_holds_every_pin_and_torch_is_split_off() -> None:
    full = entries(REQUIREMENTS / "lock.txt")
    missing = sorted(set(pins()) - set(full) - {"torch"})
    assert not missing, f"pinned in constraints.txt, absent from lock.txt: {missing}"
    assert "torch" not in full and entries(REQUIREMENTS / "torch-cpu.txt")["torch"][0] == "2.13.0+cpu"
    pypi = entries(REQUIREMENTS / "torch-pypi.txt")
    assert pypi["torch"][0] == "2.13.0" and not set(pypi) - {"torch"} & set(full)  # only what lock.txt lacks
    assert {"setuptools", "wheel"} <= set(full)  # `pip install --no-build-isolation -e .` needs its backend
