"""``make chaos`` row: the v1 routes are closed (404) on both servers, before a body is read.

The probe itself is ``benchmarks.chaos.surface.v1_routes`` (the four issue-29 rows share their servers' set-up there).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.chaos import ScenarioResult
from benchmarks.chaos.surface import v1_routes as _probe


def run(workdir: Path, quick: bool = False) -> ScenarioResult:
    return _probe(workdir, quick)
