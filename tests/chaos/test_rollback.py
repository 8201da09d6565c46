"""A rollback on the GCS emulator, run by the CLI in a real process while a reader polls what would be served."""

from __future__ import annotations

from pathlib import Path

from benchmarks.chaos import rollback


def test_a_rollback_moves_every_reader_to_the_previous_champion_and_none_sees_half_a_model(tmp_path: Path) -> None:
    row = rollback.run(tmp_path, quick=True)
    assert row.passed, row.notes
    assert row.errors["exit 2 (no --reason)"] == 1 and row.recovery_s is not None, row.notes
