"""Two drift checks racing on one data dir: exactly one rerun per episode (real checks, each its own process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.chaos import drift_race


@pytest.mark.slow  # five real checks in their own processes, two races: a minute or more
def test_racing_drift_checks_trigger_one_rerun_per_episode(tmp_path: Path) -> None:
    row = drift_race.run(tmp_path, quick=True)
    assert row.lost == 0, row.notes
    assert not row.errors, row.errors  # every check completed: the one that lost the race reported, not failed
    assert row.requests == 5 and row.passed
