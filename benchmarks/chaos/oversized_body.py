"""``make chaos`` row: bodies above the cap get 413 at once (declared or streamed) without stalling other requests.

The probe itself is ``benchmarks.chaos.surface.oversized`` (the four issue-29 rows share their servers' set-up there).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.chaos import ScenarioResult
from benchmarks.chaos.surface import oversized as _probe


def run(workdir: Path, quick: bool = False) -> ScenarioResult:
    return _probe(workdir, quick)
