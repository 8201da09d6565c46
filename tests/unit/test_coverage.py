"""The exceedance tests against hand-computed values: the arithmetic is written out here, not taken from the code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bitpredict.evaluation.coverage import (
    christoffersen,
    conditional_coverage,
    kupiec,
    tail_tests,
    transitions,
)
from bitpredict.forecast.quantiles import LEVELS

# 20 days, hits on days 2, 3, 7, 10, 11, 12, 18 (7 hits). Consecutive pairs counted by hand:
# 00 at (0,1) (4,5) (5,6) (8,9) (13,14) (14,15) (15,16) (16,17) → 8
# 01 at (1,2) (6,7) (9,10) (17,18)                                → 4
# 10 at (3,4) (7,8) (12,13) (18,19)                               → 4
# 11 at (2,3) (10,11) (11,12)                                     → 3
HITS = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0])


def chi2_1_sf(x: float) -> float:
    return math.erfc(math.sqrt(x / 2.0))  # P(χ²₁ > x) = P(|Z| > √x)


def test_kupiec_by_hand() -> None:
    hits = np.r_[np.ones(4), np.zeros(16)]  # n = 20, 4 hits, p = 0.1
    expected = -2.0 * math.log((0.9**16 * 0.1**4) / (0.8**16 * 0.2**4))
    result = kupiec(hits, 0.1)
    assert result.statistic == pytest.approx(expected, abs=1e-9)
    assert result.p_value == pytest.approx(chi2_1_sf(expected), abs=1e-12)
    assert (result.n, result.hits, result.expected_rate, result.observed_rate) == (20, 4, 0.1, 0.2)
    # the order of the hits does not matter to Kupiec; too few hits fail as well as too many
    assert kupiec(hits[::-1], 0.1).statistic == pytest.approx(expected, abs=1e-12)
    few = kupiec(np.r_[np.ones(1), np.zeros(99)], 0.2)
    assert few.statistic == pytest.approx(-2.0 * math.log(0.8**99 * 0.2 / (0.99**99 * 0.01)), abs=1e-9)
    assert few.p_value < 1e-6


def test_christoffersen_by_hand() -> None:
    assert transitions(HITS) == (8, 4, 4, 3)
    pi, pi01, pi11 = 7 / 19, 4 / 12, 3 / 7
    restricted = 7 * math.log(pi) + 12 * math.log(1 - pi)
    unrestricted = 8 * math.log(1 - pi01) + 4 * math.log(pi01) + 4 * math.log(1 - pi11) + 3 * math.log(pi11)
    expected = -2.0 * (restricted - unrestricted)
    result = christoffersen(HITS)
    assert result.statistic == pytest.approx(expected, abs=1e-9)
    assert result.p_value == pytest.approx(chi2_1_sf(expected), abs=1e-12)
    assert (result.n, result.hits, result.note) == (20, 7, "")
    assert math.isnan(result.expected_rate)


def test_clustered_hits_fail_independence_and_spread_ones_pass() -> None:
    clustered = np.zeros(200)
    clustered[50:60] = 1
    clustered[120:130] = 1  # 20 hits in two runs: π̂₁₁ = 18/20 against π̂₀₁ = 2/179
    spread = np.zeros(200)
    spread[::10] = 1  # 20 hits, never two in a row
    assert christoffersen(clustered).p_value < 1e-10
    assert kupiec(clustered, 0.1).p_value == pytest.approx(1.0)
    assert christoffersen(spread).p_value < 0.05  # never a hit after a hit is itself unlikely under independence
    # day 0's hit has no day before it: 19 hits follow a miss, all 20 are followed by a miss, 199 − 39 = 160 00-pairs
    assert transitions(spread) == (160, 19, 20, 0)
    restricted = 19 * math.log(19 / 199) + 180 * math.log(180 / 199)
    unrestricted = 19 * math.log(19 / 179) + 160 * math.log(160 / 179) + 20 * math.log(1.0)  # π̂₁₁ = 0: 0·ln 0 = 0
    assert christoffersen(spread).statistic == pytest.approx(-2 * (restricted - unrestricted), abs=1e-9)


def test_conditional_coverage_is_the_sum_with_two_degrees_of_freedom() -> None:
    uc, ind = kupiec(HITS, 0.2), christoffersen(HITS)
    cc = conditional_coverage(HITS, 0.2)
    assert cc.statistic == pytest.approx(uc.statistic + ind.statistic, abs=1e-12)
    assert cc.p_value == pytest.approx(math.exp(-cc.statistic / 2.0), abs=1e-12)  # P(χ²₂ > x) = e^(−x/2)


def test_no_hits_and_all_hits() -> None:
    none = np.zeros(50)
    assert kupiec(none, 0.05).statistic == pytest.approx(-2 * 50 * math.log(0.95), abs=1e-9)
    ind = christoffersen(none)
    assert (ind.statistic, ind.p_value) == (0.0, 1.0)
    assert "no evidence" in ind.note
    every = np.ones(50)
    assert kupiec(every, 0.05).statistic == pytest.approx(-2 * 50 * math.log(0.05), abs=1e-9)
    assert (christoffersen(every).statistic, christoffersen(every).p_value) == (0.0, 1.0)
    assert "every day" in christoffersen(every).note
    last_only = np.r_[np.zeros(49), 1.0]  # no day follows the only hit: π̂₁₁ undefined
    assert christoffersen(last_only).p_value == 1.0
    assert christoffersen(last_only).note


def test_bad_input_is_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="NaN"):
        kupiec(np.array([0.0, 1.0, np.nan]), 0.1)
    with pytest.raises(ValueError, match="0/1"):
        christoffersen(np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        kupiec(HITS, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        tail_tests(np.array([0.0, np.nan]), np.zeros((2, 3)), (0.1, 0.5, 0.9))
    with pytest.raises(ValueError, match="NaN"):
        tail_tests(np.array([0.0, 0.1]), np.array([[0, 0, 0], [0, np.nan, 0]]), (0.1, 0.5, 0.9))


def test_tail_tests_count_each_tail_and_interval() -> None:
    levels = (0.1, 0.5, 0.9)
    q = np.tile([-1.0, 0.0, 1.0], (6, 1))
    actual = np.array([-2.0, -1.0, 0.5, 1.5, 3.0, 0.0])  # below q10: 1 (−1 is not below); above q90: 2
    out = tail_tests(actual, q, levels)
    assert set(out) == {"lower_0.1", "upper_0.9", "interval_0.8"}
    assert (out["lower_0.1"]["hits"], out["upper_0.9"]["hits"], out["interval_0.8"]["hits"]) == (1, 2, 3)
    assert out["upper_0.9"]["expected_rate"] == 0.1
    assert out["interval_0.8"]["expected_rate"] == 0.2
    assert out["lower_0.1"]["kupiec_p"] == pytest.approx(kupiec(actual < -1.0, 0.1).p_value)
    assert out["interval_0.8"]["christoffersen_p"] == pytest.approx(christoffersen([1, 0, 0, 1, 1, 0]).p_value)
    with pytest.raises(ValueError, match="not among"):
        tail_tests(actual, q, levels, intervals=(0.9,))


def test_tail_tests_on_the_seven_levels_of_a_calibrated_forecast() -> None:
    """A calibrated normal forecast: every tail's observed rate near its expected one, both intervals present."""
    from scipy import stats

    rng = np.random.default_rng(3)
    actual = rng.normal(0, 0.02, 2000)
    q = np.tile(0.02 * stats.norm.ppf(LEVELS), (2000, 1))
    out = tail_tests(actual, q, LEVELS)
    assert set(out) == {
        "lower_0.05", "lower_0.1", "lower_0.25", "upper_0.75", "upper_0.9", "upper_0.95", "interval_0.8",
        "interval_0.9",
    }  # fmt: skip
    for row in out.values():
        se = math.sqrt(row["expected_rate"] * (1 - row["expected_rate"]) / 2000)
        assert abs(row["observed_rate"] - row["expected_rate"]) < 3 * se
