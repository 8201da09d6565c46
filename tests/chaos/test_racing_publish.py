"""Two real processes publish to one gs:// store at once; publishes are SIGKILLed mid-write (GCS emulator)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.chaos import racing_publish


def test_racing_publishes_leave_one_whole_state_and_kills_leave_the_previous_one(tmp_path: Path) -> None:
    row = racing_publish.run(tmp_path, quick=True)
    assert row.passed, row.notes
    assert row.errors["exit 4 (lost the race)"] == 1, row.notes
    assert "0 mixed" in row.notes and "state unchanged" in row.notes, row.notes
