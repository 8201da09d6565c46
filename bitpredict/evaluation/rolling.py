"""Rolling-origin evaluation over every year the data allow: is the champion's edge real, year after year?

One walk-forward (``bitpredict.evaluation.backtest.walk_forward``) from ``since`` to the last labelled day,
refitting every method at the start of each ``model.refit_every_days`` block on all earlier days, exactly as the
evaluate stage does over its one year — reported per calendar year and overall:

* every probabilistic method's mean pinball, the 80 % interval's coverage with Kupiec's p-value, the 90 %'s;
* the combination with adaptive conformal inference (``bitpredict.evaluation.calibration``, γ = ``drift.aci_gamma``)
  — what the monitor serves — next to it without;
* one-sided HAC-DM tests over the whole span: every method against EWMA (the naive forecast) and against the best
  single baseline of the span (chosen after the fact: a conservative reference for the test of the combination);
* the network with ``seeds`` seeds: each seed's overall score and their spread (max − min), the run-to-run noise
  a single network figure carries;
* per horizon (``model.horizons``): every method's h-day pinball, its one-sided HAC-DM test against EWMA × √h
  with h − 1 lags at least, and the 80 % interval's coverage (``bitpredict.evaluation.horizon_metrics``).

Opt-in (``bitpredict backtest --since …``, minutes to an hour with the network): not part of ``make run``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bitpredict.config import Settings
from bitpredict.docs_blocks import replace_block
from bitpredict.evaluation import scores
from bitpredict.evaluation.backtest import (
    COMBO,
    MODEL,
    NAIVE,
    TEST,
    pinball_series,
    quantiles_of,
    single_baselines,
    walk_forward,
)
from bitpredict.evaluation.calibration import run_aci
from bitpredict.evaluation.coverage import kupiec
from bitpredict.evaluation.horizon_metrics import horizon_metrics
from bitpredict.evaluation.report import HORIZON_NOTE, _pct, horizon_tables
from bitpredict.features.merge import labelled
from bitpredict.forecast.dataset import model_input_columns
from bitpredict.forecast.train import load_features

log = logging.getLogger(__name__)

BLOCK = "rolling"  # the manual's generated block (docs/forecasting.md)


def seed_name(seed: int, first: int) -> str:
    return MODEL if seed == first else f"{MODEL}_seed{seed}"


def interval_figures(actual: np.ndarray, quantiles: np.ndarray, levels: tuple[float, ...], coverage: float) -> dict:
    """Coverage of a central interval and Kupiec's p-value for it."""
    lo, hi = {0.8: (0.1, 0.9), 0.9: (0.05, 0.95)}[coverage]
    outside = (actual < quantiles[:, levels.index(lo)]) | (actual > quantiles[:, levels.index(hi)])
    return {"coverage": float(1 - outside.mean()), "kupiec_p": kupiec(outside, round(1 - coverage, 12)).p_value}


def span_figures(frame: pd.DataFrame, methods: list[str], levels: tuple[float, ...], aci: np.ndarray | None) -> dict:
    """Per method: mean pinball, the 80 % and 90 % intervals; the combination with ACI too."""
    actual = frame["actual_return"].to_numpy(dtype="float64")
    out: dict[str, Any] = {"days": len(frame)}
    for method in methods:
        q = quantiles_of(frame, method, levels)
        out[method] = {
            "pinball": float(scores.pinball(actual, q, levels).mean()),
            "interval_80": interval_figures(actual, q, levels, 0.8),
            "interval_90": interval_figures(actual, q, levels, 0.9),
        }
    if aci is not None:
        out[f"{COMBO}+aci"] = {
            "pinball": float(scores.pinball(actual, aci, levels).mean()),
            "interval_80": interval_figures(actual, aci, levels, 0.8),
            "interval_90": interval_figures(actual, aci, levels, 0.9),
        }
    return out


def run_rolling(
    settings: Settings, since: str, seeds: int = 3, network: bool = True, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The rolling-origin evaluation from ``since`` (see the module docstring)."""
    config = settings.model
    frame = labelled(load_features(settings))
    first = int((frame["timestamp"] < pd.Timestamp(since, tz="UTC")).sum())
    test_days = len(frame) - first
    if test_days < 30:
        raise ValueError(f"only {test_days} labelled days after {since}")
    span = config.model_copy(update={"test_days": test_days})
    columns = model_input_columns(frame.columns, config.use_sentiment, config.exclude_features)
    extra = (
        {
            seed_name(config.seed + i, config.seed): config.model_copy(update={"seed": config.seed + i})
            for i in range(1, seeds)
        }
        if network
        else {}
    )
    backtest = walk_forward(frame, columns, span, progress, extra, selection_days=0, with_network=network)
    test = backtest.predictions[backtest.predictions["period"] == TEST].reset_index(drop=True)
    levels = backtest.levels
    methods = [m for m in backtest.probabilistic if network or not m.startswith(MODEL)]
    aci = None
    if COMBO in methods:
        _, aci, _ = run_aci(
            test["actual_return"].to_numpy(dtype="float64"), quantiles_of(test, COMBO, levels), levels,
            settings.drift.aci_gamma,
        )  # fmt: skip
    years = test["timestamp"].dt.year.to_numpy()
    per_year = {
        int(year): span_figures(test[years == year], methods, levels, aci[years == year] if aci is not None else None)
        for year in np.unique(years)
    }
    overall = span_figures(test, methods, levels, aci)
    singles = [m for m in single_baselines(tuple(methods)) if not m.startswith(MODEL)]
    best = min(singles, key=lambda m: overall[m]["pinball"])
    tests = {}
    for method in methods:
        for label, reference in (("naive", NAIVE), ("best", best)):
            if method != reference:
                stat, p = scores.diebold_mariano(
                    pinball_series(test, method, levels), pinball_series(test, reference, levels)
                )
                tests.setdefault(method, {})[label] = {"against": reference, "statistic": stat, "p_value": p}
    seeds_figures = {m: overall[m]["pinball"] for m in methods if m.startswith(MODEL)}
    return {
        "since": str(test["timestamp"].iloc[0].date()),
        "until": str(test["timestamp"].iloc[-1].date()),
        "refit_every_days": config.refit_every_days,
        "levels": list(levels),
        "methods": methods,
        "best_single": best,
        "per_year": per_year,
        "overall": overall,
        "tests": tests,
        "network_seeds": seeds_figures,
        "network_spread": (max(seeds_figures.values()) - min(seeds_figures.values()))
        if len(seeds_figures) > 1
        else None,
        "garch": [b.get("garch") for b in backtest.blocks],
        "aci_gamma": settings.drift.aci_gamma,
        "horizons": horizon_metrics(test, methods, levels, backtest.horizons),
    }


def markdown(result: dict[str, Any]) -> str:
    """The per-year table, the overall table with the tests, the network's seed spread."""
    methods = [*result["methods"], *([f"{COMBO}+aci"] if f"{COMBO}+aci" in result["overall"] else [])]
    head = "| year | days | " + " | ".join(methods) + " |"
    lines = [
        f"Rolling origin: {result['since']} → {result['until']}, every method refitted every "
        f"{result['refit_every_days']} days on all earlier days. Mean pinball (%, lower is better) and the 80 % "
        "interval's coverage per calendar year; `combo+aci` is the combination served at the adaptive conformal "
        f"levels (γ = {result['aci_gamma']}).",
        "",
        head,
        "|---" * (len(methods) + 2) + "|",
    ]
    for year, figures in result["per_year"].items():
        cells = [f"{_pct(figures[m]['pinball'])} ({figures[m]['interval_80']['coverage']:.0%})" for m in methods]
        lines.append(f"| {year} | {figures['days']} | " + " | ".join(cells) + " |")
    overall = result["overall"]
    lines += [
        "",
        f"Overall ({overall['days']} days); one-sided HAC-DM p-values that the method's mean pinball is lower than "
        f"EWMA's and than the best single baseline's ({result['best_single']}):",
        "",
        "| method | mean pinball (%) | 80 % coverage | Kupiec p | 90 % coverage | Kupiec p | vs EWMA p | vs best p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        f = overall[method]
        test = result["tests"].get(method, {})
        vs = [f"{test[k]['p_value']:.3f}" if k in test else "—" for k in ("naive", "best")]
        lines.append(
            f"| {method} | {_pct(f['pinball'])} | {f['interval_80']['coverage']:.1%} | "
            f"{f['interval_80']['kupiec_p']:.3f} | {f['interval_90']['coverage']:.1%} | "
            f"{f['interval_90']['kupiec_p']:.3f} | {vs[0]} | {vs[1]} |"
        )
    if result["network_spread"] is not None:
        seeds = ", ".join(f"{m} {_pct(v)}" for m, v in result["network_seeds"].items())
        lines += ["", f"Network run-to-run: {seeds} — spread {_pct(result['network_spread'])} pp of mean pinball."]
    if result.get("horizons"):
        lines += ["", HORIZON_NOTE, "", *horizon_tables(result["horizons"])]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_block(page: str, text: str) -> None:
    replace_block(Path(page), BLOCK, text)
