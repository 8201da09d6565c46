"""Two runs at once on one data dir: one waits and reuses, a third gives up naming the holder; nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.chaos import two_runs


@pytest.mark.slow  # three short runs on the embedded sample: a few minutes
@pytest.mark.timeout(1500)  # six minutes here, alone; more on a busy machine (the suite's bound: 600 s)
def test_two_runs_at_once_serialise_and_leave_one_version_per_recipe(tmp_path: Path) -> None:
    row = two_runs.run(tmp_path)
    assert row.lost == 0, row.notes
    assert row.errors == {"exit 3 (lock held)": 1}
    assert row.max_latency_s < 30  # the impatient run gave up soon after its 2 s timeout, it did not hang
