"""``make chaos`` row: slow bodies get 408 at the body deadline and hold no admission slot (a normal client
is still served).

The probe itself is ``benchmarks.chaos.surface.slow_bodies`` (the four issue-29 rows share their servers' set-up there).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.chaos import ScenarioResult
from benchmarks.chaos.surface import slow_bodies as _probe


def run(workdir: Path, quick: bool = False) -> ScenarioResult:
    return _probe(workdir, quick)
