"""The switching rule on synthetic backtests: a noise edge does not switch (at the stated size), a real one does."""

from __future__ import annotations

import numpy as np

from bitpredict.evaluation.switching import switching_rule

DAYS = 365


def _losses(rng: np.random.Generator, edge: float, days: int = DAYS) -> dict[str, np.ndarray]:
    """Daily pinball-like losses of three methods sharing the market's noise (volatility clusters: AR(1) in
    log scale); ``challenger`` is ``edge`` (a share) better than the others on average."""
    log_scale = np.zeros(days)
    for t in range(1, days):
        log_scale[t] = 0.9 * log_scale[t - 1] + rng.normal(0, 0.3)
    common = np.exp(log_scale) * rng.exponential(1.0, days)
    noise = {m: 0.3 * np.exp(log_scale) * rng.exponential(1.0, days) for m in ("champion", "challenger", "other")}
    return {
        "champion": common + noise["champion"],
        "challenger": (common + noise["challenger"]) * (1 - edge),
        "other": common + noise["other"],
    }


def _decide(rng: np.random.Generator, edge: float, days: int = DAYS) -> dict:
    return switching_rule(
        _losses(rng, edge, days), _losses(rng, edge, days), "champion", "champion", pvalue=0.05, min_days=365
    )


def test_a_noise_edge_switches_at_most_at_the_stated_size() -> None:
    rng = np.random.default_rng(7)
    decisions = [_decide(rng, edge=0.0) for _ in range(300)]
    switched = np.mean([d["switched"] for d in decisions])
    # three equal methods: the argmin of the selection year is a noise winner; the confirmation test keeps it out
    # at about its size. 300 checks: 0.05 + 2 standard errors.
    assert switched <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 300)
    assert all(d["champion"] in ("champion", "challenger", "other") for d in decisions)


def test_a_real_edge_switches() -> None:
    rng = np.random.default_rng(11)
    decisions = [_decide(rng, edge=0.10) for _ in range(50)]
    assert np.mean([d["switched"] and d["champion"] == "challenger" for d in decisions]) >= 0.9
    one = decisions[0]
    assert one["test"]["days"] == DAYS and one["test"]["p_value"] < 0.05 and "p = " in one["why"]


def test_the_challenger_is_chosen_on_the_selection_days_only() -> None:
    rng = np.random.default_rng(3)
    selection, confirmation = _losses(rng, 0.0), _losses(rng, 0.0)
    selection["other"] = selection["other"] * 0.5  # best on the selection days ...
    confirmation["other"] = confirmation["other"] * 2.0  # ... and clearly worse afterwards
    decision = switching_rule(selection, confirmation, "champion", "champion", 0.05, 365)
    assert decision["challenger"] == "other" and not decision["switched"] and decision["champion"] == "champion"


def test_an_empty_registry_starts_from_the_default_not_the_argmin() -> None:
    rng = np.random.default_rng(5)
    selection, confirmation = _losses(rng, 0.0), _losses(rng, 0.0)
    selection["other"] = selection["other"] * 0.9
    decision = switching_rule(selection, confirmation, None, "champion", 0.05, 365)
    assert decision["first_champion"] and decision["champion"] == "champion" and decision["challenger"] == "other"


def test_too_short_a_confirmation_never_switches() -> None:
    rng = np.random.default_rng(9)
    decision = switching_rule(_losses(rng, 0.3, 90), _losses(rng, 0.3, 90), "champion", "champion", 0.05, 365)
    assert decision["test"]["p_value"] < 0.05 and not decision["switched"] and "needs 365" in decision["why"]


def test_the_incumbent_staying_best_is_a_refit_without_a_test() -> None:
    rng = np.random.default_rng(2)
    selection, confirmation = _losses(rng, 0.0), _losses(rng, 0.0)
    selection["champion"] = selection["champion"] * 0.5
    decision = switching_rule(selection, confirmation, "champion", "champion", 0.05, 365)
    assert decision["test"] is None and decision["champion"] == "champion" and "kept" in decision["why"]
