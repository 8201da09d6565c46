"""Issue 29 against the real servers (the ``make chaos`` rows, quick size): each finding of the review refused."""

from __future__ import annotations

from pathlib import Path

from benchmarks.chaos import surface


def test_the_repository_api_is_refused_on_both_servers_and_nothing_is_unloaded(tmp_path: Path) -> None:
    row = surface.repository(tmp_path, quick=True)
    assert row.errors == {"403": 8, "grpc:PERMISSION_DENIED": 8}, row.errors  # REST 2 servers x 2 rounds x 2
    assert row.lost == 0 and row.client_input_5xx == 0, row.notes


def test_slow_bodies_get_408_and_hold_no_slot_a_normal_client_is_still_served(tmp_path: Path) -> None:
    row = surface.slow_bodies(tmp_path, quick=True)
    assert row.errors == {"slow:408": surface.SLOW}, row.errors  # before: the normal client got 503 overloaded
    assert row.lost == 0 and row.requests > surface.SLOW + 10, row.notes
    assert row.client_input_5xx == 0


def test_oversized_bodies_get_413_at_once_without_stalling_others(tmp_path: Path) -> None:
    row = surface.oversized(tmp_path, quick=True)
    assert set(row.errors) == {"413"} and row.lost == 0 and row.client_input_5xx == 0, (row.errors, row.notes)
    assert row.max_latency_s < 1.0, row.notes  # a 32 MB body parsed in the loop stalled it 1.4 s before


def test_the_v1_routes_are_closed_on_both_servers(tmp_path: Path) -> None:
    row = surface.v1_routes(tmp_path, quick=True)
    assert row.errors == {"404": 10} and row.lost == 0 and row.client_input_5xx == 0, (row.errors, row.notes)
