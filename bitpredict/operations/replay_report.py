"""The replay's report: ``summary.json``, the plot, and the manual's block (``docs/monitoring.md``) — all from the
replay's own tables.

Kept apart from the loop (``bitpredict.operations.replay``) so the figures can be regenerated from a finished replay
without replaying, and so the loop does one job.

Figures (on the days whose forecast has closed):

* ``live_mae`` / ``persistence_mae``: mean absolute error of the served median and of "tomorrow = today" in USD;
  ``live_skill`` = 1 − live / persistence (positive: better than persistence).
* ``pinball``: the mean pinball loss over the served quantiles (q10, median, q90) **on the next-day log return, in
  percent** — the evaluation's units, so the two are comparable; ``coverage``: the share of realised closes inside
  [lower, upper] (the served 80 % interval, at the live ACI levels when the monitor set them).
* ``monitor``: the forecast monitor's daily verdicts (days with calibration broken, with the pinball CUSUM alarmed),
  its last rolling coverage of the 80 % interval with and without ACI, and the ACI levels it ended on.
* ``drift_episodes``: runs of consecutive drifting checks; ``reruns``: every rerun with its ``trigger`` —
  ``drift`` (at most one per episode, the cooldown apart) or ``schedule`` (``--retrain-every``) — and the counts
  by trigger; ``champion_changes``: when a rerun's model was promoted, and the day it served from — a *switch*
  (a change of recipe, which the switching rule allowed: its test is in ``reason``) or a *refit* of the same recipe.

A rerun record without a ``trigger`` (a replay saved before the schedule existed) was a drift rerun.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bitpredict import storage
from bitpredict.docs_blocks import replace_block

if TYPE_CHECKING:
    from bitpredict.operations.replay_state import Replay, ReplayState

BLOCK = "replay"  # the manual's generated block (``docs/monitoring.md``)
PLOT = "replay.png"
ROLLING_DAYS = 30  # the plot's error lines: a month of days, long enough to read through day-to-day noise


def pinball(actual: np.ndarray, quantiles: dict[float, np.ndarray]) -> float:
    """Mean pinball loss over the levels and days (in the units of ``actual``)."""
    losses = []
    for level, predicted in quantiles.items():
        diff = actual - predicted
        losses.append(np.maximum(level * diff, (level - 1) * diff))
    return float(np.mean(losses))


def episodes(drift: pd.DataFrame) -> list[dict[str, Any]]:
    """Consecutive drifting checks as episodes: first and last day, length, whether it triggered a rerun."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for row in drift.sort_values("day").itertuples(index=False):
        if row.drifting:
            if current is None:
                reasons = str(getattr(row, "reasons", "") or "")
                current = {"start": row.day, "end": row.day, "days": 0, "triggered": False, "reasons": reasons}
                out.append(current)
            current["end"], current["days"] = row.day, current["days"] + 1
            current["triggered"] = current["triggered"] or bool(row.triggered)
        else:
            current = None
    return out


TRIGGERS = ("drift", "schedule")


def monitor_figures(drift: pd.DataFrame) -> dict[str, Any]:
    """The forecast monitor's daily verdicts over the replay (columns the daily check records)."""
    if drift.empty or "calibration_broken" not in drift.columns:
        return {}
    last = drift.sort_values("day").iloc[-1]

    def number(value: Any) -> float | None:
        return None if value is None or pd.isna(value) else float(value)

    return {
        "calibration_broken_days": int(drift["calibration_broken"].astype(bool).sum()),
        "pinball_worse_days": int(drift["pinball_worse"].astype(bool).sum()),
        "coverage_80": number(last.get("coverage_80")),
        "coverage_80_aci": number(last.get("coverage_80_aci")),
        "aci_levels": {"0.1": number(last.get("aci_lower")), "0.9": number(last.get("aci_upper"))},
        "horizons": {
            column.removeprefix("coverage_80_h"): {
                "coverage_80": number(last.get(column)),
                "closed": int(last.get(f"closed_h{column.removeprefix('coverage_80_h')}") or 0),
            }
            for column in drift.columns
            if column.startswith("coverage_80_h")
        },
    }


def trigger_of(run: dict[str, Any]) -> str:
    """Why a rerun happened; records saved before scheduled reruns existed were all drift's."""
    return str(run.get("trigger") or "drift")


def served_horizon_coverage(forecasts: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per longer horizon, the served forecasts closed on their day: how many, and the share whose 80 % interval
    held the close (``bitpredict.operations.replay.horizon_row``'s columns)."""
    out: dict[str, dict[str, Any]] = {}
    for column in [c for c in forecasts.columns if c.startswith("actual_close_h")]:
        h = column.removeprefix("actual_close_h")
        closed = forecasts.dropna(subset=[column])
        inside = (closed[f"lower_h{h}"] <= closed[column]) & (closed[column] <= closed[f"upper_h{h}"])
        out[h] = {"closed": len(closed), "coverage": float(inside.mean()) if len(closed) else None}
    return out


def summarise(replay: Replay, state: ReplayState, forecasts: pd.DataFrame, drift: pd.DataFrame) -> dict[str, Any]:
    closed = forecasts.dropna(subset=["actual_close"]) if not forecasts.empty else forecasts
    figures: dict[str, Any] = {"live_mae": None, "persistence_mae": None, "live_skill": None, "pinball": None,
                               "coverage": None}  # fmt: skip
    if not closed.empty:
        actual = closed["actual_close"].to_numpy(dtype="float64")
        live = float(np.mean(np.abs(closed["predicted_close"].to_numpy(dtype="float64") - actual)))
        naive = float(np.mean(np.abs(closed["last_close"].to_numpy(dtype="float64") - actual)))
        last = closed["last_close"].to_numpy(dtype="float64")
        quantiles = {0.1: np.log(closed["lower"].to_numpy(dtype="float64") / last),
                     0.5: np.log(closed["predicted_close"].to_numpy(dtype="float64") / last),
                     0.9: np.log(closed["upper"].to_numpy(dtype="float64") / last)}  # fmt: skip
        inside = (closed["lower"] <= closed["actual_close"]) & (closed["actual_close"] <= closed["upper"])
        figures = {"live_mae": live, "persistence_mae": naive, "live_skill": 1 - live / naive if naive else None,
                   "pinball": 100 * pinball(np.log(actual / last), quantiles),
                   "coverage": float(inside.mean())}  # fmt: skip
    figures["horizon_coverage"] = served_horizon_coverage(forecasts)
    found = episodes(drift) if not drift.empty else []
    return {
        "from": str(replay.start),
        "to": str(replay.end),
        "last_day": state.last_day,
        "data": str(replay.data),
        "days": len(drift),
        "forecasts": len(forecasts),
        "closed_forecasts": len(closed),
        **figures,
        "nominal_coverage": 0.8,
        "monitor": monitor_figures(drift),
        "drift_checks": len(drift),
        "drift_verdicts": int(drift["share"].notna().sum()) if not drift.empty else 0,
        "drift_episodes": {"count": len(found), "episodes": found},
        "reruns": {
            "count": len(state.reruns),
            "runs": [{**run, "trigger": trigger_of(run)} for run in state.reruns],
            "by_trigger": {t: sum(trigger_of(run) == t for run in state.reruns) for t in TRIGGERS},
        },
        "retrain_every_days": replay.retrain_every,
        "champion_changes": state.champion_changes,
        "initial_champion": state.initial,
        "recipe": replay.recipe.model(),
        "seconds": round(state.seconds, 1),
    }


def plot(forecasts: pd.DataFrame, drift: pd.DataFrame, state: ReplayState, share_threshold: float, path: Path) -> Path:
    """Live error vs persistence (rolling), the drift share per day, rerun and champion-change markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    closed = forecasts.dropna(subset=["actual_close"]) if not forecasts.empty else forecasts
    if not closed.empty:
        days = pd.to_datetime(closed["as_of"])
        live = (closed["predicted_close"] - closed["actual_close"]).abs()
        naive = (closed["last_close"] - closed["actual_close"]).abs()
        window = min(ROLLING_DAYS, max(1, len(closed) // 3))
        top.plot(days, live.rolling(window, min_periods=1).mean(), label="served forecast", color="tab:blue")
        top.plot(days, naive.rolling(window, min_periods=1).mean(), label="persistence", color="tab:gray", ls="--")
        top.set_ylabel(f"abs. error, USD ({window}-day mean)")
    if not drift.empty:
        bottom.plot(pd.to_datetime(drift["day"]), drift["share"].astype("float64"), color="tab:purple",
                    label="share of inputs drifted")  # fmt: skip
        if "share_cut" in drift.columns and drift["share_cut"].notna().any():
            bottom.plot(pd.to_datetime(drift["day"]), drift["share_cut"].astype("float64"), color="tab:red", lw=0.8,
                        ls=":", label="drift cut (calibrated)")  # fmt: skip
        else:
            bottom.axhline(share_threshold, color="tab:red", lw=0.8, ls=":", label="drift threshold")
        if "coverage_80" in drift.columns:
            stamps = pd.to_datetime(drift["day"])
            bottom.plot(stamps, drift["coverage_80"].astype("float64"), color="tab:blue", lw=1,
                        label="80 % coverage, last 60 d")  # fmt: skip
            bottom.plot(stamps, drift["coverage_80_aci"].astype("float64"), color="tab:green", lw=1,
                        label="… with ACI")  # fmt: skip
            bottom.axhline(0.8, color="tab:blue", lw=0.6, ls=":")
        bottom.set_ylim(0, 1)
        bottom.set_ylabel("share")
    styles = {"drift": ("tab:orange", "--", "drift rerun"), "schedule": ("tab:brown", ":", "scheduled rerun")}
    for axis in (top, bottom):
        labelled: set[str] = set()
        for rerun in state.reruns:
            color, style, label = styles[trigger_of(rerun)]
            axis.axvline(pd.Timestamp(rerun["day"]), color=color, ls=style, lw=1.2,
                         label=label if axis is top and label not in labelled else None)  # fmt: skip
            labelled.add(label)
        changes = [c for c in state.champion_changes if not c.get("initial")]
        for i, change in enumerate(changes):
            axis.axvline(pd.Timestamp(change["serves_from"]), color="tab:green", lw=1.5,
                         label="new champion serves" if i == 0 and axis is top else None)  # fmt: skip
    for axis in (top, bottom):
        if axis.get_legend_handles_labels()[1]:  # the first days have nothing labelled yet: no empty legend
            axis.legend(loc="upper left", fontsize=8)
    top.set_title("Replay: served forecasts closed day by day, drift checks and reruns")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(replay: Replay, state: ReplayState, forecasts: pd.DataFrame, drift: pd.DataFrame) -> dict[str, Any]:
    """``summary.json`` and the plot in the report folder; returns the summary."""
    summary = summarise(replay, state, forecasts, drift)
    storage.write_text(str(replay.report_dir / "summary.json"), json.dumps(summary, indent=2, default=str))
    threshold = replay.work_settings().drift.share_threshold
    plot(forecasts, drift, state, threshold, replay.report_dir / PLOT)
    return summary


def _usd(value: Any) -> str:
    return "n/a" if value is None else f"{value:,.0f} USD"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f} %"


def _levels(levels: dict[str, float | None] | None) -> str:
    if not levels:
        return "n/a"
    return ", ".join(f"{k} → {v:.3f}" if v is not None else f"{k} → n/a" for k, v in levels.items())


def _share(value: Any) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _every_text(days: int | None) -> str:
    return "off" if not days else f"every {days} d"


def _rerun_text(run: dict[str, Any]) -> str:
    verdict = "promoted" if run["promoted"] else "kept the champion"
    return f"{run['day']} (v{run['version']} {run['kind']}, {verdict})"


def _listed(count: int, items: list[str]) -> str:
    return f"{count}: " + ", ".join(items) if items else str(count)


def block_text(summary: dict[str, Any], image: str, command: str) -> str:
    """The manual's replay block, from the summary (generated, never typed)."""
    skill, coverage = summary["live_skill"], summary["coverage"]
    found = summary["drift_episodes"]["episodes"]
    reruns = summary["reruns"]["runs"]
    by_drift = [r for r in reruns if trigger_of(r) == "drift"]
    by_schedule = [r for r in reruns if trigger_of(r) == "schedule"]
    promoted = [c for c in summary["champion_changes"] if not c.get("initial")]
    changes = [c for c in promoted if c.get("switched", True)]  # older replays: every promotion was a change
    refits = [c for c in promoted if not c.get("switched", True)]
    initial = summary.get("initial_champion") or {}
    skill_text = "n/a" if skill is None else f"{skill:+.4f}"
    coverage_text = "n/a" if coverage is None else f"{coverage:.1%}"
    episode_items = [f"{e['start']} → {e['end']} ({e['days']} d: {e.get('reasons') or 'n/a'})" for e in found]
    monitor = summary.get("monitor") or {}
    change_items = [
        f"v{c['version']} {c['kind']} from {c['serves_from']} ({c.get('reason') or 'n/a'})" for c in changes
    ]
    done = summary.get("last_day") == summary["to"]
    span = f"{summary['from']} → {summary.get('last_day')}" + ("" if done else f" (of {summary['to']}: stopped early)")
    lines = [
        f"`{command}` — {span}: {summary['days']} days, {summary['forecasts']} forecasts "
        f"({summary['closed_forecasts']} closed), {summary['seconds'] / 60:.1f} min here.",
        "",
        f"![Replay {summary['from']} → {summary['to']}]({image})",
        "",
        "| figure | value |",
        "|---|---|",
        f"| live MAE (served median) | {_usd(summary['live_mae'])} |",
        f"| persistence MAE, same days | {_usd(summary['persistence_mae'])} |",
        f"| live skill vs persistence | {skill_text} |",
        f"| pinball loss (q10, median, q90; log return) | {_pct(summary['pinball'])} |",
        f"| coverage of [lower, upper] | {coverage_text} (nominal {summary['nominal_coverage']:.0%}) |",
        *[
            f"| served {h}-day forecasts closed on their day: coverage of their 80 % interval | "
            f"{_share(f['coverage'])} of {f['closed']} |"
            for h, f in (summary.get("horizon_coverage") or {}).items()
        ],
        f"| drift checks / with a verdict | {summary['drift_checks']} / {summary['drift_verdicts']} |",
        f"| monitor: days with calibration broken / pinball worse than naive | "
        f"{monitor.get('calibration_broken_days', 'n/a')} / {monitor.get('pinball_worse_days', 'n/a')} |",
        f"| monitor: 80 % coverage, last 60 days, without / with ACI | {_share(monitor.get('coverage_80'))} / "
        f"{_share(monitor.get('coverage_80_aci'))} (served levels {_levels(monitor.get('aci_levels'))}) |",
        *[
            f"| monitor: {h}-day forecasts closed on their day, 80 % coverage | {_share(f.get('coverage_80'))} of "
            f"{f.get('closed')} closed (ledger of the last check) |"
            for h, f in (monitor.get("horizons") or {}).items()
        ],
        f"| episodes (reasons) | {_listed(len(found), episode_items)} |",
        f"| reruns triggered by drift | {_listed(len(by_drift), [_rerun_text(r) for r in by_drift])} |",
        f"| scheduled reruns ({_every_text(summary.get('retrain_every_days'))}) | "
        f"{_listed(len(by_schedule), [_rerun_text(r) for r in by_schedule])} |",
        f"| champion changes (a new recipe, by the switching rule) | {_listed(len(changes), change_items)} |",
        f"| refits of the champion's recipe promoted | {len(refits)} |",
        f"| initial champion | v{initial.get('version')} {initial.get('kind')}, trained on the data visible at "
        f"{initial.get('visible_until')} |",
    ]
    return "\n".join(lines)


def write_block(page: Path, summary: dict[str, Any], plot_file: Path, command: str) -> Path:
    """Replace the replay block of the manual's page (``docs/monitoring.md``); the plot is copied beside the page
    (``docs/replay.png``), so the block links it by its name. A page without the block raises before any copy."""
    replace_block(page, BLOCK, block_text(summary, PLOT, command))
    image = page.parent / PLOT
    shutil.copyfile(plot_file, image)
    return image
