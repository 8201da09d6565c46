"""What people read of an evaluation: the markdown results tables, the plots, the manual's results block
(``docs/forecasting.md``), and the flat ``{method}_{metric}`` numbers MLflow and KFP's Metrics artifact show.

Kept apart from the backtest (``bitpredict.evaluation.backtest``) so the numbers are computed in one place and shown
in another; everything here is a pure function of the metrics and the per-day predictions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bitpredict.docs_blocks import replace_block
from bitpredict.evaluation.scores import PRIMARY
from bitpredict.pipeline.stage_table import (
    PLOT_ACTUAL_VS_PREDICTED,
    PLOT_ATTENTION,
    PLOT_ERROR_OVER_TIME,
    PLOT_PINBALL_OVER_TIME,
    PLOT_RELIABILITY,
)

if TYPE_CHECKING:
    from bitpredict.evaluation.backtest import Backtest


def _pct(value: float) -> str:
    """A log-return loss in percent (0.0068 → 0.680)."""
    return f"{value * 100:.3f}"


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _cover(m: dict[str, Any], tag: str) -> str:
    if f"interval_{tag}_coverage" not in m:
        return "— | — | —"
    return (
        f"{m[f'interval_{tag}_coverage']:.1%} | {_p(m.get(f'interval_{tag}_kupiec_p'))} | "
        f"{_p(m.get(f'interval_{tag}_christoffersen_p'))}"
    )


def _versus(m: dict[str, Any], label: str) -> str:
    if f"pinball_dm_vs_{label}" not in m:
        return "—"
    return f"{m[f'pinball_skill_vs_{label}']:+.2%}, p {_p(m[f'pinball_dm_pvalue_vs_{label}'])}"


def probabilistic_table(metrics: dict[str, Any]) -> list[str]:
    """One row per method: pinball, CRPS, both intervals with their tests, the volatility scores, the DM tests."""
    best = metrics.get("best_baseline") or "best"
    lines = [
        "| method | mean pinball (%) | CRPS (%) | 80 % cover | Kupiec p | Christoffersen p | 90 % cover | Kupiec p "
        f"| Christoffersen p | vol. R² | QLIKE | vs EWMA (skill, p) | vs {best} (skill, p) |",
        "|---" * 13 + "|",
    ]
    ranked = sorted(metrics["probabilistic"], key=lambda m: metrics["methods"][m][PRIMARY])
    for method in ranked:
        m = metrics["methods"][method]
        vol = f"{m['volatility_r2']:.2f} | {m['volatility_qlike']:.3f}" if "volatility_r2" in m else "— | —"
        lines.append(
            f"| {method} | {_pct(m[PRIMARY])} | {_pct(m['crps'])} | {_cover(m, '80')} | {_cover(m, '90')} | {vol} "
            f"| {_versus(m, 'naive')} | {_versus(m, 'best')} |"
        )
    return lines


def tail_table(metrics: dict[str, Any], method: str) -> list[str]:
    """Every tail and interval of one method: hits, observed vs expected rate, Kupiec and Christoffersen p."""
    tests = metrics["methods"][method].get("tail_tests") or {}
    lines = [
        "| tail | days | exceedances | observed | expected | Kupiec p | Christoffersen p |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in tests.items():
        lines.append(
            f"| {name.replace('_', ' ')} | {t['n']} | {t['hits']} | {t['observed_rate']:.1%} | "
            f"{t['expected_rate']:.0%} | {_p(t['kupiec_p'])} | {_p(t['christoffersen_p'])} |"
        )
    return lines


def decision_lines(metrics: dict[str, Any], decision: dict[str, Any]) -> list[str]:
    """The switching rule at work: the challenger, the test, its p-value and its days, in words."""
    selection = metrics.get("selection") or {}
    lines = [
        f"**Champion: {decision['best']}** — {decision['why']}.",
        "",
        "Switching rule: the challenger is the best method on the selection days "
        f"({selection.get('first_day')} → {selection.get('last_day')}, {selection.get('days', 0)} days); it replaces "
        "the champion only if its mean pinball is lower on the evaluation window above — days not used to choose "
        "it — by a one-sided HAC Diebold–Mariano test at the stated size. A p-value is the probability of a gap at "
        "least this large if the two were equally good, not the probability that one is better.",
    ]
    test = decision.get("test")
    if test:
        lines += [
            "",
            f"Test: {test['challenger']} vs {test['against']} on {test['days']} days: mean pinball "
            f"{_pct(test['challenger_score'])} vs {_pct(test['incumbent_score'])} %, DM statistic "
            f"{test['statistic']:+.2f}, one-sided p = {test['p_value']:.3f} (size {test['size']}, "
            f"{'switched' if decision['switched'] else 'not switched'}).",
        ]
    scores = selection.get("scores") or {}
    if scores:
        ranked = sorted(scores, key=scores.get)
        lines += ["", "Selection days, mean pinball (%): " + ", ".join(f"{m} {_pct(scores[m])}" for m in ranked) + "."]
    return lines


def point_table(metrics: dict[str, Any]) -> list[str]:
    lines = [
        "| method | MAE ($) | RMSE ($) | MAPE (%) | direction acc. | skill vs persistence | HAC-DM p (better) |",
        "|---|---|---|---|---|---|---|",
    ]
    baselines = set(metrics["probabilistic"]) - {"lstm"} - {m for m in metrics["probabilistic"] if "champion" in m}
    for method, m in metrics["methods"].items():
        if method in baselines:  # their median is persistence's: the same row again
            continue
        p = "—" if method == "persistence" else _p(m["dm_pvalue"])
        direction = m["directional_accuracy"]
        never = direction is None or direction != direction  # None/NaN: the method never forecasts a move
        shown = "— (no call)" if never else f"{direction:.1%}"
        lines.append(
            f"| {method} | {m['mae']:.2f} | {m['rmse']:.2f} | {m['mape']:.3f} | {shown} | {m['skill']:+.4f} | {p} |"
        )
    return lines


def horizon_tables(horizons: dict[str, dict[str, Any]]) -> list[str]:
    """One table per horizon (``bitpredict.evaluation.horizon_metrics``): pinball on h-day log returns, the
    one-sided HAC-DM test against EWMA × √h with its lags, the 80 % interval's coverage and its tests on
    non-overlapping forecasts."""
    lines: list[str] = []
    for h, figures in horizons.items():
        table = figures["methods"]
        if not table:
            continue
        lines += [
            f"**{h}-day horizon** — {figures['days']} forecasts ({figures['first_day']} → {figures['last_day']}), "
            f"each closed {h} day{'s' if h != '1' else ''} later:",
            "",
            "| method | mean pinball (%) | vs EWMA × √h (skill, p) | HAC lags | 80 % cover | independent | Kupiec p "
            "| Christoffersen p |",
            "|---" * 8 + "|",
        ]
        for method in sorted(table, key=lambda m: table[m]["pinball"]):
            m = table[method]
            versus = f"{m['skill_vs_naive']:+.2%}, p {_p(m['dm_vs_naive_p'])}" if "dm_vs_naive_p" in m else "—"
            lines.append(
                f"| {method} | {_pct(m['pinball'])} | {versus} | {m.get('dm_lags', '—')} | "
                f"{m['interval_80_coverage']:.1%} | {m['independent_days']} | {_p(m.get('interval_80_kupiec_p'))} | "
                f"{_p(m.get('interval_80_christoffersen_p'))} |"
            )
        lines.append("")
    return lines


HORIZON_NOTE = (
    "**Per horizon** (the h-day log return log(close[t+h] / close[t]); every method forecasts every horizon from "
    "the same day t). vs EWMA × √h: the naive h-day forecast (persistence, EWMA volatility scaled by √h), one-sided "
    "HAC-DM with at least h − 1 lags (overlapping h-day errors are autocorrelated by construction). The interval "
    "tests use non-overlapping forecasts only (every h-th day: *independent*); the coverage is over all days."
)


def markdown_table(metrics: dict[str, Any], decision: dict[str, Any]) -> str:
    """The results: probabilistic table (the primary score first), the champion's tails, the point table, the
    switching decision and the network's verdict."""
    network = decision.get("network_vs_best_baseline") or {}
    lines = [
        f"Walk-forward over {metrics['days']} days ({metrics['first_day']} → {metrics['last_day']}), one step "
        "ahead; each block refitted on all earlier days. Losses on the next-day log return, in percent.",
        "",
        "**Probabilistic** (primary score: mean pinball loss over the levels "
        f"{', '.join(f'{q:g}' for q in metrics['levels'])}; lower is better. CRPS: {metrics['crps_method']}. "
        "Coverage of the 80 % (q10–q90) and 90 % (q05–q95) intervals with the Kupiec (rate) and Christoffersen "
        "(independence) tests' p-values. Volatility: each model's σ = (q90 − q10) / 2.563 against "
        "the next day's Garman–Klass variance (R² of log on log; QLIKE, lower is better). vs: relative pinball "
        "skill and the one-sided HAC-DM p-value that the method's loss is lower):",
        "",
        *probabilistic_table(metrics),
        "",
        f"**Tails of the champion ({decision['best']})** — exceedances of each quantile (below a lower one, above an "
        "upper one) and of each interval:",
        "",
        *tail_table(
            metrics, decision["best"] if decision["best"] in metrics["methods"] else metrics["probabilistic"][0]
        ),
        "",
        "**Point** (the median as the forecast of the close; the probabilistic baselines' median is persistence. "
        f"Point skill = {metrics['point_skill']}; HAC-DM on that absolute error vs persistence):",
        "",
        *point_table(metrics),
        "",
        f"Direction: zero-return days left out ({metrics['zero_return_days']}); baselines 50 % (coin) and "
        f"{metrics['majority_class_accuracy']:.1%} (always the majority class; {metrics['share_up_days']:.1%} of "
        "the days with a move were up).",
        "",
        *decision_lines(metrics, decision),
        "",
        f"**The network {'beats' if decision['beats_baselines'] else 'does NOT beat'} the best single baseline** "
        f"({network.get('against')}; one-sided HAC-DM p = {_p(network.get('p_value'))}).",
        *_membership_lines(decision.get("network_membership")),
        *(["", HORIZON_NOTE, "", *horizon_tables(metrics["horizons"])] if metrics.get("horizons") else []),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _membership_lines(membership: dict[str, Any] | None) -> list[str]:
    if not membership:
        return []
    verdict = "improves" if membership["improves"] else "does not improve"
    return [
        "",
        f"The network as one more member {verdict} the combination: mean pinball "
        f"{_pct(membership['score_with_network'])} vs {_pct(membership['score_without'])} %, one-sided HAC-DM "
        f"p = {membership['p_value']:.3f}"
        + (
            "." if not membership["improves"] else " — the served combination does not include it yet (baselines only)."
        ),
    ]


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """``{method}_{metric}`` numbers plus the verdict as 0/1: the shape KFP's Metrics artifact and MLflow take."""
    flat = {
        f"{m}_{k}": float(v)
        for m, values in result["methods"].items()
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }
    flat["beats_baselines"] = float(result["decision"]["beats_baselines"])
    flat["days"] = float(result["days"])
    flat["switched"] = float(bool(result["decision"].get("switched")))
    test = result["decision"].get("test") or {}
    if test.get("p_value") is not None:
        flat["switch_pvalue"] = float(test["p_value"])
    return flat


def write_results(page: Path, table: str) -> None:
    """The generated results block of the manual's page (``docs/forecasting.md``): the table between its markers."""
    replace_block(page, "results", table)


def plot_reports(backtest: Backtest, metrics: dict[str, Any], decision: dict[str, Any], directory: Path) -> list[Path]:
    """actual_vs_predicted, error_over_time, pinball_over_time, reliability and attention PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = backtest.test
    best = decision["best"] if decision["best"] in backtest.probabilistic else "lstm"
    shown = list(dict.fromkeys(["lstm", best]))
    paths = []

    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.plot(p["timestamp"], p["actual_close"], color="black", lw=1.2, label="actual close (t+1)")
    for method, colour in zip(shown, ("tab:blue", "tab:green"), strict=False):
        ax.fill_between(
            p["timestamp"], p[f"{method}_lower_close"], p[f"{method}_upper_close"], color=colour, alpha=0.18,
            label=f"{method} interval",
        )  # fmt: skip
        ax.plot(p["timestamp"], p[f"{method}_close"], color=colour, lw=0.8, label=f"{method} median")
    ax.set(title="Next-day close: actual vs forecast (walk-forward)", ylabel="USD")
    ax.legend(loc="upper left")
    paths.append(_save(fig, directory / Path(PLOT_ACTUAL_VS_PREDICTED).name))

    fig, ax = plt.subplots(figsize=(11, 4))
    for method in ("lstm", "persistence", "arima", "gbm"):
        error = (p[f"{method}_close"] - p["actual_close"]).abs().rolling(30, min_periods=1).mean()
        ax.plot(p["timestamp"], error, lw=1, label=method)
    ax.set(title="Absolute error of the next-day close, 30-day rolling mean", ylabel="USD")
    ax.legend()
    paths.append(_save(fig, directory / Path(PLOT_ERROR_OVER_TIME).name))

    fig, ax = plt.subplots(figsize=(11, 4))
    for method in backtest.probabilistic:
        loss = backtest.daily_pinball(method) * 100
        ax.plot(p["timestamp"], _rolling(loss, 30), lw=1.2 if method in shown else 0.8, label=method)
    ax.set(title="Mean pinball loss, 30-day rolling mean (lower is better)", ylabel="% log return")
    ax.legend()
    paths.append(_save(fig, directory / Path(PLOT_PINBALL_OVER_TIME).name))

    fig, ax = plt.subplots(figsize=(5.5, 5))
    levels = backtest.levels
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    for method in backtest.probabilistic:
        observed = [metrics["methods"][method][f"coverage_q{round(q * 100):02d}"] for q in levels]
        ax.plot(levels, observed, marker="o", lw=1, label=method)
    ax.set(
        title="Reliability: share of outcomes below each quantile",
        xlabel="nominal quantile level",
        ylabel="observed share",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left", fontsize=8)
    paths.append(_save(fig, directory / Path(PLOT_RELIABILITY).name))

    last = backtest.attention[-60:]
    fig, ax = plt.subplots(figsize=(9, 5))
    image = ax.imshow(last, aspect="auto", cmap="viridis")
    window = last.shape[1]
    ax.set(
        title="Network attention over the window, last 60 forecasts",
        xlabel=f"day in window (0 = {window - 1} days before, {window - 1} = the forecast day)",
        ylabel="forecast (oldest at top)",
    )
    fig.colorbar(image, ax=ax, label="weight")
    paths.append(_save(fig, directory / Path(PLOT_ATTENTION).name))
    return paths


def _save(fig: Any, path: Path) -> Path:
    """Lay out, write and close one figure (closing frees it: a run draws several)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _rolling(values: Any, window: int) -> Any:
    import pandas as pd

    return pd.Series(values).rolling(window, min_periods=1).mean().to_numpy()
