"""The clean stage: raw bars from several sources become one gap-free UTC series per interval.

Rules, in order (each counted in the cleaning report):

1. **Candidates.** Each source in the configured priority contributes bars of the interval: its own
   table (``market_<source>_<interval>``), or — for daily bars — its hourly (or 4-hour) bars aggregated
   per UTC day (open first, high max, low min, close last, volumes summed), but only for days with at
   least ``MIN_HOURS_PER_DAY`` of 24 hours *and* the day's last bar (23:00 for hourly bars): a day is
   never built from a fragment, and a day still in progress (or one whose close would come hours early)
   never becomes a daily bar.
2. **Volume.** ``volume`` is base-currency (BTC) volume. A source that only knows the quote (USD)
   volume (Yahoo) gets ``volume = quote_volume / close``. Sources count volume differently (Yahoo sums
   every exchange, CryptoCompare its own aggregate), so each later source is rescaled to the most
   trusted one by the median volume ratio over the last ``VOLUME_OVERLAP_DAYS`` of their overlap — the
   scale where they meet — and the report lists every splice with its factor and overlap.
3. **Consistency.** A bar with a non-positive price or volume, or with low above open/close or high
   below them, is rejected from that source (the next source may fill the day).
4. **Priority.** Each timestamp takes the bar of the most trusted source that has a valid one; where
   two sources overlap, the report gives how far their closes disagree.
5. **Outliers.** A log return whose distance from the median of the ``OUTLIER_WINDOW`` returns before
   it is above ``outlier_mad_threshold`` MADs of those returns (scaled to σ; past only — no look-ahead)
   is flagged ``is_outlier``; with ``drop_outliers`` the bar is removed and then imputed like a gap.
   The window is shorter than the serving warm-up on purpose: the model's ``is_outlier`` input is this
   rule run on the bars a forecast request carries (``bitpredict.features.online``), so a flag may depend only on
   history every request has.
6. **Gaps.** A run of up to ``max_fill_gap`` missing bars is filled with flat bars at the previous
   close and the previous volume, flagged ``is_imputed``. A longer gap cannot be filled honestly: the
   series restarts after it (the older part is dropped and reported), since indicators need a
   contiguous series.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bitpredict import storage
from bitpredict.config import CleanSettings, Settings
from bitpredict.data.schemas import INTERVAL_SECONDS
from bitpredict.errors import InputError
from bitpredict.pipeline.stage_table import RAW, clean_file, data_path

log = logging.getLogger(__name__)

MIN_HOURS_PER_DAY = 20
# Returns an outlier is judged against; with the return itself the rule reads OUTLIER_WINDOW + 2 closes, which
# must fit in the history every forecast request has before its window (the 150-bar warm-up; a test checks it).
OUTLIER_WINDOW = 120
MAD_TO_SIGMA = 1.4826
# The volume scale of two sources is compared where they meet: their ratio drifts over years (exchanges come
# and go), so the last quarter of the overlap, not all of it, says how to continue one series with the other.
VOLUME_OVERLAP_DAYS = 90
BAR_COLUMNS = ["timestamp", "open", "high", "low", "close", "volume", "quote_volume"]
OUTPUT_COLUMNS = [*BAR_COLUMNS, "source", "is_imputed", "is_outlier"]


@dataclass
class CleanResult:
    bars: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# candidates
# --------------------------------------------------------------------------------------------


def aggregate_to_daily(bars: pd.DataFrame, bar_seconds: int) -> tuple[pd.DataFrame, int]:
    """Intraday bars to UTC daily bars; returns the daily bars and how many incomplete days were left out.

    A day counts only when most of it is there *and* its last bar is: the daily close is the close at
    midnight, so a day whose last hours are missing (or have not happened yet) would carry an early close.
    Ingest stores closed bars only, so a stored last bar also means the day has ended.
    """
    per_day = 86_400 // bar_seconds
    needed = int(np.ceil(per_day * MIN_HOURS_PER_DAY / 24))
    last_slot = pd.Timedelta(seconds=86_400 - bar_seconds)
    frame = bars.sort_values("timestamp")
    day = frame["timestamp"].dt.floor("D")
    frame = frame.assign(_last=(frame["timestamp"] - day) == last_slot)
    grouped = frame.groupby(day, sort=True)
    daily = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", lambda s: s.sum(min_count=1)),
        quote_volume=("quote_volume", lambda s: s.sum(min_count=1)),
        n=("close", "size"),
        has_last=("_last", "any"),
    )
    complete = (daily["n"] >= needed) & daily["has_last"]
    daily = daily[complete].drop(columns=["n", "has_last"]).rename_axis("timestamp").reset_index()
    return daily, int((~complete).sum())


def _read(uri: str) -> pd.DataFrame | None:
    try:
        return storage.read_parquet(uri)
    except FileNotFoundError:
        return None


def load_candidates(settings: Settings, interval: str) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Bars of ``interval`` per source, in priority order, from the raw tables that exist."""
    priority = settings.clean.daily_priority if interval == "1d" else settings.clean.hourly_priority
    candidates: dict[str, pd.DataFrame] = {}
    notes: dict[str, Any] = {}
    for source in priority:
        own = _read(storage.join(data_path(settings, RAW), f"market_{source}_{interval}.parquet"))
        if own is not None and len(own):
            candidates[source] = own
            notes[source] = {"table": f"market_{source}_{interval}", "bars": len(own)}
            continue
        if interval != "1d":
            continue
        for finer in ("1h", "4h"):
            intraday = _read(storage.join(data_path(settings, RAW), f"market_{source}_{finer}.parquet"))
            if intraday is None or intraday.empty:
                continue
            intraday = _with_chart_volume(settings, source, intraday)
            daily, incomplete = aggregate_to_daily(intraday, INTERVAL_SECONDS[finer])
            candidates[source] = daily
            notes[source] = {
                "table": f"market_{source}_{finer}",
                "bars": len(daily),
                "incomplete_days_skipped": incomplete,
            }
            break
    return candidates, notes


def _with_chart_volume(settings: Settings, source: str, bars: pd.DataFrame) -> pd.DataFrame:
    """CoinGecko candles carry no volume; its market chart has the daily USD volume, spread over the day."""
    if source != "coingecko" or bars["volume"].notna().any():
        return bars
    chart = _read(storage.join(data_path(settings, RAW), "market_chart_coingecko_1d.parquet"))
    if chart is None:
        return bars
    # The chart's 24h volume at midnight of day D+1 covers day D.
    per_day = chart.assign(timestamp=chart["timestamp"] - pd.Timedelta(days=1)).set_index("timestamp")["total_volume"]
    day = bars["timestamp"].dt.floor("D")
    counts = day.map(day.value_counts())
    return bars.assign(quote_volume=day.map(per_day) / counts)


# --------------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------------


def _normalise(bars: pd.DataFrame, source: str, step: pd.Timedelta, counts: dict[str, int]) -> pd.DataFrame:
    frame = bars.reindex(columns=BAR_COLUMNS).copy()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    for col in BAR_COLUMNS[1:]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    aligned = frame["timestamp"].dt.floor(step)
    counts["timestamps_realigned"] += int((aligned != frame["timestamp"]).sum())
    frame["timestamp"] = aligned
    derived = frame["volume"].isna() & frame["quote_volume"].notna()
    frame.loc[derived, "volume"] = frame.loc[derived, "quote_volume"] / frame.loc[derived, "close"]
    counts["volume_derived_from_quote"] += int(derived.sum())

    before = len(frame)
    frame = frame.drop_duplicates("timestamp", keep="last")
    counts["duplicate_timestamps"] += before - len(frame)

    prices = frame[["open", "high", "low", "close"]]
    bad_price = (prices <= 0).any(axis=1) | prices.isna().any(axis=1)
    bad_volume = ~(frame["volume"] > 0)
    inconsistent = (frame["low"] > frame[["open", "close"]].min(axis=1)) | (
        frame["high"] < frame[["open", "close"]].max(axis=1)
    )
    counts["rejected_non_positive_price"] += int(bad_price.sum())
    counts["rejected_non_positive_volume"] += int((bad_volume & ~bad_price).sum())
    counts["rejected_ohlc_inconsistent"] += int((inconsistent & ~bad_price & ~bad_volume).sum())
    frame = frame[~(bad_price | bad_volume | inconsistent)]
    return frame.assign(source=source).sort_values("timestamp")


def combine_by_priority(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One bar per timestamp, from the first source (in dict order) that has it."""
    stacked = pd.concat([f.assign(_rank=i) for i, f in enumerate(frames.values())], ignore_index=True)
    stacked = stacked.sort_values(["timestamp", "_rank"], kind="mergesort")
    return stacked.drop_duplicates("timestamp", keep="first").drop(columns="_rank").reset_index(drop=True)


def source_disagreement(frames: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """For each pair of sources, how far their closes differ on the timestamps both have."""
    names = list(frames)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            joined = frames[a][["timestamp", "close"]].merge(frames[b][["timestamp", "close"]], on="timestamp")
            if joined.empty:
                continue
            rel = (joined["close_x"] / joined["close_y"] - 1).abs()
            out.append(
                {
                    "sources": [a, b],
                    "overlap_bars": len(joined),
                    "first": joined["timestamp"].min().isoformat(),
                    "last": joined["timestamp"].max().isoformat(),
                    "close_rel_diff_median": float(rel.median()),
                    "close_rel_diff_p95": float(rel.quantile(0.95)),
                    "close_rel_diff_max": float(rel.max()),
                }
            )
    return out


def reconcile_volume(
    frames: dict[str, pd.DataFrame], step: pd.Timedelta
) -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]]]:
    """Put every source's volume on the scale of the most trusted one (the first in ``frames``).

    Why: the combined series switches source where the better one ends, and a volume measured differently
    (one exchange vs all of them) would show up as a cliff — in the volume z-score, OBV and the charts — that
    no market ever had. Each later source is compared with the first already-reconciled source it overlaps
    and multiplied by their median volume ratio over the last ``VOLUME_OVERLAP_DAYS`` of that overlap; a
    source that overlaps none keeps its volume, and the report says so.
    """
    recent_bars = max(1, int(pd.Timedelta(days=VOLUME_OVERLAP_DAYS) / step))
    names = list(frames)
    out = {names[0]: frames[names[0]]}
    notes: list[dict[str, Any]] = []
    for name in names[1:]:
        frame = frames[name]
        note: dict[str, Any] = {"source": name, "scaled_to": None, "factor": 1.0, "overlap_bars": 0}
        for anchor, reconciled in out.items():
            joined = reconciled[["timestamp", "volume"]].merge(frame[["timestamp", "volume"]], on="timestamp")
            if joined.empty:
                continue
            recent = joined.tail(recent_bars)
            note.update(
                scaled_to=anchor,
                factor=float(np.median(recent["volume_x"] / recent["volume_y"])),
                overlap_bars=len(joined),
                overlap_first=joined["timestamp"].iloc[0].isoformat(),
                overlap_last=joined["timestamp"].iloc[-1].isoformat(),
                factor_from=recent["timestamp"].iloc[0].isoformat(),
            )
            break
        factor = note["factor"]
        out[name] = frame.assign(volume=frame["volume"] * factor, quote_volume=frame["quote_volume"] * factor)
        notes.append(note)
    return out, notes


def splices(combined: pd.DataFrame, reconciliation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where the combined series changes source, with the volume factor the incoming source got."""
    factors = {n["source"]: n["factor"] for n in reconciliation}
    changed = combined["source"].ne(combined["source"].shift()).to_numpy()
    changed[:1] = False
    return [
        {
            "at": combined["timestamp"].iloc[i].isoformat(),
            "from": combined["source"].iloc[i - 1],
            "to": combined["source"].iloc[i],
            "volume_factor": factors.get(combined["source"].iloc[i], 1.0),
        }
        for i in np.flatnonzero(changed)
    ]


def flag_outliers(close: pd.Series | np.ndarray, threshold: float) -> pd.Series:
    """Robust z-score of each log return against the ``OUTLIER_WINDOW`` returns before it (past only).

    Row *i* reads closes *i − OUTLIER_WINDOW − 1 … i* and nothing else, so any history that holds them gives
    the same flag — the full series in training, a forecast request's few hundred rows at serving. Rows
    without a full window are not flagged (they lie in the warm-up the features table drops).
    """
    values = np.asarray(close, dtype="float64")
    index = close.index if isinstance(close, pd.Series) else None
    flags = np.zeros(len(values), dtype=bool)
    if len(values) > OUTLIER_WINDOW + 1:
        returns = np.diff(np.log(values))  # returns[j] is the return of row j + 1
        history = np.lib.stride_tricks.sliding_window_view(returns[:-1], OUTLIER_WINDOW)
        median = np.median(history, axis=1)
        mad = np.median(np.abs(history - median[:, None]), axis=1)
        judged = returns[OUTLIER_WINDOW:]  # the returns of rows OUTLIER_WINDOW + 1 … n − 1
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.abs(judged - median) / (MAD_TO_SIGMA * mad)
        flags[OUTLIER_WINDOW + 1 :] = np.nan_to_num(z, nan=0.0) > threshold
    return pd.Series(flags, index=index)


def fill_gaps(bars: pd.DataFrame, step: pd.Timedelta, max_fill: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Reindex to every timestamp; fill short gaps with flat bars, restart the series after a long one."""
    full = pd.date_range(bars["timestamp"].iloc[0], bars["timestamp"].iloc[-1], freq=step)
    frame = bars.set_index("timestamp").reindex(full)
    missing = frame["close"].isna()
    run_id = (~missing).cumsum()
    run_length = missing.groupby(run_id).transform("sum").where(missing, 0)
    gaps = _gap_list(missing, full)
    long_gaps = [g for g in gaps if g["bars"] > max_fill]
    dropped = 0
    if long_gaps:
        restart = pd.Timestamp(long_gaps[-1]["last"]) + step
        dropped = int((~missing[full < restart]).sum())
        frame = frame[full >= restart]
        missing, run_length = missing[full >= restart], run_length[full >= restart]
    fill = missing & (run_length <= max_fill)
    previous_close = frame["close"].ffill()
    for col in ("open", "high", "low", "close"):
        frame.loc[fill, col] = previous_close[fill]
    frame["volume"] = frame["volume"].where(~fill, frame["volume"].ffill())
    frame["quote_volume"] = frame["quote_volume"].where(~fill, frame["volume"] * frame["close"])
    frame["source"] = frame["source"].where(~fill, "imputed")
    frame["is_imputed"] = fill
    frame["is_outlier"] = frame["is_outlier"].astype("boolean").fillna(False).astype(bool)
    report = {
        "gaps": gaps,
        "bars_imputed": int(fill.sum()),
        "long_gaps": long_gaps,
        "bars_dropped_before_long_gap": dropped,
    }
    return frame.rename_axis("timestamp").reset_index(), report


def _gap_list(missing: pd.Series, index: pd.DatetimeIndex) -> list[dict[str, Any]]:
    if not missing.any():
        return []
    starts = missing & ~missing.shift(1, fill_value=False)
    ends = missing & ~missing.shift(-1, fill_value=False)
    return [
        {"first": a.isoformat(), "last": b.isoformat(), "bars": int(missing[a:b].sum())}
        for a, b in zip(index[starts.to_numpy()], index[ends.to_numpy()], strict=True)
    ]


def clean_bars(candidates: dict[str, pd.DataFrame], interval: str, config: CleanSettings) -> CleanResult:
    """The pure clean function: candidate bars per source (priority order) → one series + report."""
    if not candidates:
        raise InputError(f"no raw {interval} market data to clean: run `bitpredict ingest` first")
    step = pd.Timedelta(seconds=INTERVAL_SECONDS[interval])
    counts = dict.fromkeys(
        (
            "timestamps_realigned",
            "volume_derived_from_quote",
            "duplicate_timestamps",
            "rejected_non_positive_price",
            "rejected_non_positive_volume",
            "rejected_ohlc_inconsistent",
        ),
        0,
    )
    frames = {name: _normalise(df, name, step, counts) for name, df in candidates.items()}
    frames = {name: f for name, f in frames.items() if len(f)}
    if not frames:
        raise InputError(f"every raw {interval} bar was rejected; see the cleaning report rules")
    frames, reconciliation = reconcile_volume(frames, step)
    combined = combine_by_priority(frames)
    spliced = splices(combined, reconciliation)
    combined["is_outlier"] = flag_outliers(combined["close"], config.outlier_mad_threshold).to_numpy()
    outliers = combined.loc[combined["is_outlier"], "timestamp"]
    if config.drop_outliers:
        combined = combined[~combined["is_outlier"]]
    filled, gap_report = fill_gaps(combined, step, config.max_fill_gap)
    if config.drop_outliers:  # a dropped outlier came back as an imputed bar: keep saying why
        filled.loc[filled["timestamp"].isin(outliers), "is_outlier"] = True
    bars = filled[OUTPUT_COLUMNS].reset_index(drop=True)
    report = {
        "interval": interval,
        "rows": len(bars),
        "first": bars["timestamp"].iloc[0].isoformat(),
        "last": bars["timestamp"].iloc[-1].isoformat(),
        "rules": counts,
        "bars_per_source": {k: int(v) for k, v in bars["source"].value_counts().sort_index().items()},
        "outliers": {
            "threshold_mads": config.outlier_mad_threshold,
            "flagged": len(outliers),
            "dropped": bool(config.drop_outliers),
            "timestamps": [t.isoformat() for t in outliers],
        },
        "source_disagreement": source_disagreement(frames),
        "volume_reconciliation": reconciliation,
        "splices": spliced,
        **gap_report,
    }
    return CleanResult(bars, report)


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------


def clean_path(settings: Settings, interval: str) -> str:
    return data_path(settings, clean_file(interval))


def run_clean(settings: Settings, interval: str = "1d") -> dict[str, Any]:
    """Read the raw tables, clean, write ``interim/clean_<interval>.parquet`` and its report (JSON + Markdown)."""
    candidates, notes = load_candidates(settings, interval)
    result = clean_bars(candidates, interval, settings.clean)
    result.report["inputs"] = notes
    storage.write_parquet(result.bars, clean_path(settings, interval))
    storage.write_text(data_path(settings, clean_file(interval, "_report.json")), json.dumps(result.report, indent=2))
    storage.write_text(data_path(settings, clean_file(interval, "_report.md")), report_markdown(result.report))
    log.info("cleaned", extra={"interval": interval, "rows": result.report["rows"], "first": result.report["first"]})
    return result.report


def report_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Cleaning report — {report['interval']} bars",
        "",
        f"{report['rows']} bars from {report['first']} to {report['last']}.",
        "",
        "## Bars per source",
        "",
        "| source | bars |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in report["bars_per_source"].items()),
        "",
        "## Rules",
        "",
        "| rule | count |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in report["rules"].items()),
        f"| bars imputed (gaps ≤ max_fill_gap) | {report['bars_imputed']} |",
        f"| outliers flagged (> {report['outliers']['threshold_mads']} MADs) | {report['outliers']['flagged']} |",
        f"| bars dropped before a long gap | {report['bars_dropped_before_long_gap']} |",
        "",
        "## Where sources overlap",
        "",
        "| sources | overlap | median rel. diff (close) | p95 | max |",
        "|---|---|---|---|---|",
        *(
            f"| {' vs '.join(d['sources'])} | {d['overlap_bars']} ({d['first'][:10]} → {d['last'][:10]}) | "
            f"{d['close_rel_diff_median']:.4%} | {d['close_rel_diff_p95']:.4%} | {d['close_rel_diff_max']:.4%} |"
            for d in report["source_disagreement"]
        ),
        "",
        "## Splices (where the series changes source; the incoming source's volume rescaled)",
        "",
        "| at | from → to | volume factor | factor from the overlap |",
        "|---|---|---|---|",
        *_splice_lines(report),
        "",
        "## Gaps",
        "",
        *(f"- {g['first']} → {g['last']}: {g['bars']} bars" for g in report["gaps"]),
        *([] if report["gaps"] else ["none"]),
        "",
    ]
    return "\n".join(lines)


SPLICES_SHOWN = 20


def _splice_lines(report: dict[str, Any]) -> list[str]:
    spliced = report.get("splices", [])
    lines = [_splice_line(s, report.get("volume_reconciliation", [])) for s in spliced[:SPLICES_SHOWN]]
    if len(spliced) > SPLICES_SHOWN:
        lines.append(f"| … | {len(spliced) - SPLICES_SHOWN} more in the JSON report | | |")
    return lines or ["| none | | | |"]


def _splice_line(splice: dict[str, Any], reconciliation: list[dict[str, Any]]) -> str:
    note = next((n for n in reconciliation if n["source"] == splice["to"]), None)
    if note is None:
        basis = "reference scale"
    elif note["scaled_to"] is None:
        basis = "no overlap: volume as reported"
    else:
        basis = (
            f"median ratio to {note['scaled_to']}, {note['factor_from'][:10]} → {note['overlap_last'][:10]} "
            f"(overlap {note['overlap_bars']} bars from {note['overlap_first'][:10]})"
        )
    return f"| {splice['at'][:10]} | {splice['from']} → {splice['to']} | ×{splice['volume_factor']:.4g} | {basis} |"
