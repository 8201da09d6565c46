"""``make chaos`` row: the model-repository API (REST and gRPC) refused on both servers: 0 models unloaded.

The probe itself is ``benchmarks.chaos.surface.repository`` (the four issue-29 rows share their servers' set-up there).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.chaos import ScenarioResult
from benchmarks.chaos.surface import repository as _probe


def run(workdir: Path, quick: bool = False) -> ScenarioResult:
    return _probe(workdir, quick)
