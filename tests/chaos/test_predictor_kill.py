"""A predictor killed under load (issue 21): quick 503s, no crash, readiness false and back, serving again soon."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.chaos import predictor_kill

RECOVERY_S = 5.0  # the predictor's ready → the transformer's first forecast (gRPC reconnects within 1 s)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc-v2", "v2"])
def test_a_killed_predictor_costs_503s_and_nothing_else(tmp_path: Path, protocol: str) -> None:
    result = predictor_kill.run(tmp_path, quick=True, protocol=protocol)

    assert result.outage_answers["503"] > 0, result  # the clients did meet the outage
    assert set(result.outage_answers) <= {"200", "503"}, result  # a 503, never a 500 or a hang
    assert result.max_latency_s < predictor_kill.CLIENT_TIMEOUT_S, result  # quickly: no request waited it out
    assert result.lost == 0 and result.transformer_alive, result
    assert result.readiness_went_false and result.readiness_came_back, result
    assert result.recovery_s is not None and result.recovery_s < RECOVERY_S, result
    assert result.passed
