"""evaluate + registry: point baselines use only the past, metrics, the switching decision, how register applies it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitpredict.config import PromotionSettings
from bitpredict.errors import InputError
from bitpredict.evaluation.backtest import (
    POINT_BASELINES,
    Backtest,
    arima_forecast,
    compute_metrics,
    decide,
    drift_forecast,
    quantile_column,
    regression_forecast,
    sma_forecast,
)
from bitpredict.evaluation.report import markdown_table, plot_reports, write_results
from bitpredict.evaluation.scores import PRIMARY
from bitpredict.features.columns import TARGET
from bitpredict.operations.registry import promotion_decision


def _frame(n: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.001, 0.03, n)
    close = 100 * np.exp(np.cumsum(returns))
    frame = pd.DataFrame({"close": close, "log_return_1": returns})
    frame["sma_7"] = frame["close"].rolling(7, min_periods=1).mean()
    frame[TARGET] = np.log(frame["close"].shift(-1) / frame["close"])
    return frame.iloc[:-1].reset_index(drop=True)


@settings(max_examples=10, deadline=None)
@given(scale=st.floats(min_value=0.2, max_value=5.0), offset=st.integers(min_value=0, max_value=39))
def test_baseline_forecasts_for_a_day_never_use_later_days(scale: float, offset: int) -> None:
    frame = _frame()
    start, end = 300, 340
    t = start + offset
    changed = frame.copy()
    changed.loc[t + 1 :, ["close", "sma_7"]] *= scale
    changed.loc[t + 1 :, ["log_return_1"]] *= scale
    changed.loc[t:, TARGET] *= scale  # the target of day t is day t+1's return: unknown on day t
    values = frame[["log_return_1"]].to_numpy()
    changed_values = changed[["log_return_1"]].to_numpy()
    for forecast in (drift_forecast, sma_forecast, arima_forecast):
        a, b = forecast(frame, start, end), forecast(changed, start, end)
        np.testing.assert_allclose(a[: offset + 1], b[: offset + 1], rtol=1e-9, err_msg=forecast.__name__)
    for kind in ("ridge", "gbm"):
        a = regression_forecast(kind, values, frame[TARGET].to_numpy(), start, end, seed=0)
        b = regression_forecast(kind, changed_values, changed[TARGET].to_numpy(), start, end, seed=0)
        np.testing.assert_allclose(a[: offset + 1], b[: offset + 1], rtol=1e-9, err_msg=kind)


LEVELS = (0.1, 0.5, 0.9)
PROBABILISTIC = ("lstm", "ewma", "garch")


def _backtest(lstm_skill: float, n: int = 300) -> Backtest:
    """Days whose return has a predictable part ``signal``; the network knows ``lstm_skill`` of it."""
    rng = np.random.default_rng(1)
    signal = rng.normal(0, 0.02, n)
    actual = signal + rng.normal(0, 0.01, n)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, tz="UTC"), "close": close})
    frame["actual_return"] = actual
    frame["actual_close"] = close * np.exp(actual)
    frame["period"] = np.where(np.arange(n) < n // 3, "selection", "test")
    spread = {"lstm": 0.015, "ewma": 0.03, "garch": 0.028}
    for method in PROBABILISTIC:
        centre = signal * lstm_skill if method == "lstm" else np.zeros(n)
        for q, z in zip(LEVELS, (-1.2816, 0.0, 1.2816), strict=True):
            frame[quantile_column(method, q)] = centre + z * spread[method]
        frame[f"{method}_return"] = frame[quantile_column(method, 0.5)]
        for side, q in (("lower", 0.1), ("upper", 0.9)):
            frame[f"{method}_{side}_return"] = frame[quantile_column(method, q)]
            frame[f"{method}_{side}_close"] = close * np.exp(frame[f"{method}_{side}_return"])
    for method in POINT_BASELINES:
        frame[f"{method}_return"] = 0.0 if method == "persistence" else signal * 0.1
    for method in (*PROBABILISTIC, *POINT_BASELINES):
        frame[f"{method}_close"] = close * np.exp(frame[f"{method}_return"])
    return Backtest(frame, np.zeros((n, 5)), [], PROBABILISTIC, LEVELS)


POLICY = PromotionSettings(default_champion="ewma", min_confirmation_days=100)


def test_metrics_and_the_decision_follow_the_errors() -> None:
    import scoringrules

    backtest = _backtest(lstm_skill=1.0)
    good = compute_metrics(backtest)
    m = good["methods"]
    assert good["days"] == 200 and good["selection"]["days"] == 100  # figures are the test span's only
    assert good["best_baseline"] == "garch" and m["garch"][PRIMARY] < m["ewma"][PRIMARY]
    assert m["lstm"][PRIMARY] < m["garch"][PRIMARY] and m["lstm"]["pinball_dm_pvalue_vs_best"] < 1e-6
    assert m["lstm"]["pinball_dm_vs_best"] == "garch" and m["garch"]["pinball_dm_vs_naive"] == "ewma"
    assert m["persistence"]["skill"] == 0.0 and m["lstm"]["skill"] > 0.3 and m["lstm"]["dm_pvalue"] < 1e-6
    # CRPS of the implied distribution, not 2 x the pinball of three levels: for EWMA's normal quantiles it is
    # the closed-form normal CRPS
    actual = backtest.test["actual_return"].to_numpy()
    normal = scoringrules.crps_normal(actual, 0.0, 0.03).mean()
    assert m["ewma"]["crps"] == pytest.approx(normal, rel=0.02)
    assert m["ewma"]["crps"] != pytest.approx(2 * m["ewma"][PRIMARY], rel=0.02)
    assert 0.5 < m["ewma"]["interval_coverage"] < 1 and 0 <= m["ewma"]["interval_80_kupiec_p"] <= 1
    assert m["ewma"]["coverage_q50"] == pytest.approx(float((actual <= 0).mean()))
    verdict = decide(backtest, good, None, POLICY)  # empty registry: the default starts, the test is reported
    assert verdict["first_champion"] and verdict["challenger"] == "lstm" and verdict["beats_baselines"]
    assert verdict["switched"] and verdict["best"] == "lstm" and verdict["test"]["p_value"] < 1e-6
    assert decide(backtest, good, "ewma", POLICY)["best"] == "lstm"  # a real edge switches from a champion

    bad_backtest = _backtest(lstm_skill=-1.0)  # the network's centre points the wrong way
    bad = compute_metrics(bad_backtest)
    verdict = decide(bad_backtest, bad, "ewma", POLICY)
    assert not verdict["beats_baselines"] and verdict["challenger"] == "garch"
    table = markdown_table(bad, verdict)
    assert "**Champion: " in table and "| lstm |" in table and "Kupiec" in table and "HAC-DM" in table


def test_the_network_joins_the_combination_only_when_it_improves_it() -> None:
    from dataclasses import replace

    from bitpredict.evaluation.backtest import network_membership

    for skill, joins in ((1.0, True), (-1.0, False)):
        backtest = _backtest(lstm_skill=skill)
        frame = backtest.predictions
        for q in LEVELS:  # a combination of two members: the average of EWMA's and GARCH's quantiles
            frame[quantile_column("combo", q)] = (
                frame[quantile_column("ewma", q)] + frame[quantile_column("garch", q)]
            ) / 2
        membership = network_membership(replace(backtest, combination=("ewma", "garch"),
                                                probabilistic=(*PROBABILISTIC, "combo")), 0.05)  # fmt: skip
        assert membership["improves"] is joins and membership["members"] == ["ewma", "garch", "lstm"]
    assert network_membership(_backtest(1.0), 0.05) is None  # no combination: nothing to join


def test_too_few_confirmation_days_never_switch() -> None:
    backtest = _backtest(lstm_skill=1.0)
    metrics = compute_metrics(backtest)
    verdict = decide(backtest, metrics, "ewma", PromotionSettings(min_confirmation_days=365))
    assert verdict["best"] == "ewma" and not verdict["switched"] and "needs 365" in verdict["why"]


def test_register_applies_the_decision_only_against_the_champion_it_was_made_for() -> None:
    def evaluation(**decision: object) -> dict:
        return {"decision": {"why": "w", "incumbent_version": "3", **decision}}

    assert promotion_decision(evaluation(switched=True), "3").reason.startswith("switch")
    assert promotion_decision(evaluation(switched=False), "3").reason.startswith("refit")
    first = promotion_decision({"decision": {"why": "w", "incumbent_version": None, "first_champion": True}}, None)
    assert first.promote and first.reason.startswith("first champion")
    raced = promotion_decision(evaluation(switched=True), "4")  # another run promoted since evaluate read the registry
    assert not raced.promote and "rerun `bitpredict evaluate`" in raced.reason


def test_the_results_table_goes_between_the_page_markers(tmp_path: Path) -> None:
    page = tmp_path / "forecasting.md"
    page.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\nrest\n")
    write_results(page, "| new |\n")
    assert page.read_text() == "intro\n<!-- results:start -->\n| new |\n<!-- results:end -->\nrest\n"
    page.write_text(
        "intro\n<!-- results:start -->\n<!-- results:end -->\n<!-- results:start -->\n<!-- results:end -->\n"
    )
    with pytest.raises(InputError, match="expected one"):
        write_results(page, "x")  # two blocks: which one is ambiguous, so neither is written
    page.write_text("no markers")
    with pytest.raises(InputError, match="markers"):
        write_results(page, "x")
    assert page.read_text() == "no markers"


def test_the_plots_are_written_under_the_stage_tables_names(tmp_path: Path) -> None:
    """The file names DVC tracks (``stage_table.PLOTS``) are the ones drawn: one definition, no silent miss."""
    from bitpredict.pipeline.stage_table import PLOTS

    backtest = _backtest(lstm_skill=1.0)
    metrics = compute_metrics(backtest)
    paths = plot_reports(backtest, metrics, decide(backtest, metrics, None, POLICY), tmp_path)
    assert sorted(p.name for p in paths) == sorted(Path(plot).name for plot in PLOTS)
    assert all(p.stat().st_size > 0 for p in paths)


def test_the_ablation_scores_a_variant_against_the_best_baseline() -> None:
    from bitpredict.evaluation.ablation import markdown, score_row

    rng = np.random.default_rng(5)
    actual = rng.normal(0, 0.02, 200)
    z = np.array([-1.2816, 0.0, 1.2816])
    wide = np.tile(z * 0.04, (200, 1))
    right = np.tile(z * 0.02, (200, 1))
    row = score_row(actual, right, wide, LEVELS)
    assert row["vs_best_baseline"] < 0 and row["dm_pvalue"] < 0.01 and row["point_skill"] == 0.0
    assert 0.7 < row["interval_coverage"] < 0.9
    same = score_row(actual, wide, wide, LEVELS)
    assert same["vs_best_baseline"] == 0.0 and same["dm_pvalue"] == 0.5
    text = markdown(
        {"recipe": {"rows": {"v": row, "best baseline (ewma)": same}, "days": 200, "first_day": "a", "last_day": "b"}}
    )
    assert "| v |" in text and "| best baseline (ewma) |" in text and "200 days" in text
    earlier = {"rows": {"v": same}, "days": 150, "first_day": "c", "last_day": "d"}
    both = markdown(
        {"recipe": {"rows": {"v": row}, "days": 200, "first_day": "a", "last_day": "b"}, "year_before": earlier}
    )
    assert both.index("200 days") < both.index("150 days before (c → d)")


def test_an_unknown_ablation_section_is_refused() -> None:
    from bitpredict.config import load_settings
    from bitpredict.evaluation.ablation import run_ablation

    with pytest.raises(ValueError, match="unknown ablation section"):
        run_ablation(load_settings(), sections=("recipe", "tuning"))


def test_a_network_champion_with_another_recipe_is_rescored_on_this_window(tmp_path: Path) -> None:
    """evaluate reads the champion from a real (sqlite) registry: a baseline champion or the same recipe needs
    nothing extra; a network trained with other hyperparameters is re-run here as ``champion_v<N>``."""
    import json

    from bitpredict.config import load_settings
    from bitpredict.evaluation.evaluate import champion_recipe, current_champion
    from bitpredict.pipeline import tracking
    from bitpredict.pipeline.tracking import CHAMPION

    settings = load_settings(data_dir=str(tmp_path / "data"))
    assert current_champion(settings) is None  # no registry content yet
    client = tracking.client(settings)
    name = settings.registered_model_name
    client.create_registered_model(name)
    current = settings.model.model_dump(mode="json")

    def champion(tags: dict[str, str]) -> None:
        version = client.create_model_version(name, str(tmp_path / "model"), tags=tags)
        client.set_registered_model_alias(name, CHAMPION, version.version)

    champion({"kind": "har", "recipe": json.dumps({"kind": "har", "window": 30})})
    assert champion_recipe(settings, current_champion(settings)) == {}
    champion({"kind": "lstm", "recipe": json.dumps(current)})
    assert champion_recipe(settings, current_champion(settings)) == {}
    champion({"kind": "lstm", "recipe": json.dumps({**current, "window": 14, "lstm_units": [16]})})
    extra = champion_recipe(settings, current_champion(settings))
    assert list(extra) == ["champion_v3"] and extra["champion_v3"].window == 14
    assert extra["champion_v3"].lstm_units == [16] and extra["champion_v3"].epochs == settings.model.epochs
