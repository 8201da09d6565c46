"""What the UI shows, read from the published state (``bitpredict.operations.publish``: what the last successful run
published into the data dir, or the prefix its manifest names on GCS) and from the services. No Streamlit
here: every function returns data or a ``Missing`` that says, in plain words, what is absent and which
command fixes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd

from bitpredict import storage
from bitpredict.config import Settings
from bitpredict.features.sentiment import news_texts, tweet_texts
from bitpredict.operations.publish import published_path, read_manifest
from bitpredict.pipeline.stage_table import (
    CLEAN,
    EVALUATION,
    METRICS,
    PREDICTIONS,
    RAW,
    SENTIMENT_DAILY,
    SENTIMENT_SCORES,
    data_path,
)


@dataclass(frozen=True)
class Missing:
    """Something the page cannot show yet, and the command that fixes it."""

    what: str
    fix: str


def _read(uri: str) -> pd.DataFrame | None:
    return storage.read_parquet(uri) if storage.exists(uri) else None


def market(settings: Settings) -> pd.DataFrame | Missing:
    bars = _read(published_path(settings, CLEAN))
    if bars is None:
        return Missing("no market data yet", "make run   (or: bitpredict ingest && bitpredict clean)")
    return bars


def backtest(settings: Settings) -> pd.DataFrame | Missing:
    """The walk-forward forecasts with their intervals (the evaluation's predictions) of the best method:
    columns ``target_day``, ``forecast_close``, ``lower_close``, ``upper_close`` and ``method`` (its name)."""
    frame = _read(published_path(settings, PREDICTIONS))
    if frame is None:
        return Missing("no evaluated model yet", "make run   (or: bitpredict evaluate)")
    metrics = evaluation(settings)
    preferred = [metrics.get("best")] if isinstance(metrics, dict) else []
    method = next(
        (m for m in [*preferred, "lstm"] if m and {f"{m}_close", f"{m}_lower_close", f"{m}_upper_close"} <= set(frame)),
        None,
    )
    if method is None:
        return Missing("the evaluation has no forecast intervals to plot", "make run")
    out = pd.DataFrame(
        {
            "target_day": frame["timestamp"] + pd.Timedelta(days=1),
            "forecast_close": frame[f"{method}_close"],
            "lower_close": frame[f"{method}_lower_close"],
            "upper_close": frame[f"{method}_upper_close"],
            "method": method,
        }
    )
    return out


def served(settings: Settings) -> pd.DataFrame:
    """Forecasts the transformer served (the request log), possibly empty."""
    from bitpredict.operations.request_log import read_log

    try:
        logged = read_log(settings.path("requests"))
    except (OSError, ValueError):
        return pd.DataFrame()
    return logged


def evaluation(settings: Settings) -> dict[str, Any] | Missing:
    uri = published_path(settings, METRICS)
    if not storage.exists(uri):
        return Missing("no evaluation report yet", "make run   (or: bitpredict evaluate)")
    return json.loads(storage.read_text(uri))


def evaluation_plots(settings: Settings) -> dict[str, bytes]:
    """Every plot the evaluation published (whatever the evaluation chose to draw), by name."""
    from pathlib import Path

    directory = published_path(settings, EVALUATION)
    if storage.is_gcs(directory):
        names = [
            "actual_vs_predicted", "error_over_time", "pinball_over_time", "reliability", "attention"
        ]  # fmt: skip
        uris = [storage.join(directory, f"{n}.png") for n in names]
    else:
        uris = [str(p) for p in sorted(Path(directory).glob("*.png"))]
    return {Path(uri).stem: storage.read_bytes(uri)[0] for uri in uris if storage.exists(uri)}


def published(settings: Settings) -> dict[str, Any] | None:
    """The published manifest: which run, when, with which champion (None before the first run)."""
    return read_manifest(settings)


def registry(settings: Settings) -> dict[str, Any] | Missing:
    """The champion and every version with why it was or was not promoted (from MLflow)."""
    from mlflow.exceptions import MlflowException

    from bitpredict.pipeline import tracking

    try:
        client = tracking.client(settings)
        versions = client.search_model_versions(f"name = '{settings.registered_model_name}'")
    except Exception as exc:  # MlflowException, or a connection error from deep in requests when it is down
        return Missing(
            f"MLflow is unreachable at {settings.tracking_uri} ({type(exc).__name__})", "check MLFLOW_TRACKING_URI"
        )
    if not versions:
        return Missing("no registered model yet", "make run")

    def number(tags: dict[str, str], *keys: str) -> float | None:
        for key in keys:
            try:
                return float(tags[key])
            except (KeyError, ValueError):
                continue
        return None

    rows = [
        {
            "version": int(v.version),
            "kind": v.tags.get("kind", "lstm"),
            "promoted": v.tags.get("promoted") == "true",
            "why": v.tags.get("why") or v.tags.get("promotion_reason", ""),
            "pinball": number(v.tags, "pinball_mean"),
            "MAE": number(v.tags, "mae"),
            "skill": number(v.tags, "skill"),
            "window": v.tags.get("eval_window", ""),
            "run": v.run_id,
        }
        for v in versions
    ]
    table = pd.DataFrame(rows).sort_values("version", ascending=False).reset_index(drop=True)
    table = table.dropna(axis=1, how="all")  # scores an older or newer registry does not tag
    try:
        champion = client.get_model_version_by_alias(settings.registered_model_name, "champion").version
    except MlflowException:
        champion = None
    return {"versions": table, "champion": int(champion) if champion else None}


def sentiment(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame] | Missing:
    daily = _read(published_path(settings, SENTIMENT_DAILY))
    scores = _read(published_path(settings, SENTIMENT_SCORES))
    if daily is None or scores is None:
        return Missing("no sentiment scores yet", "make run   (or: bitpredict sentiment)")
    return daily, scores


def headlines(settings: Settings, scores: pd.DataFrame, count: int = 20) -> pd.DataFrame:
    """The latest scored items with their words. The scores table keeps only ``(table, text_id)`` and the scores,
    so the words come from the raw table each item was ingested into, keyed by the sentiment stage's own
    ``news_texts``/``tweet_texts`` (one definition of ``text_id``). Items whose raw row is gone keep their scores
    with an empty title rather than disappearing."""
    if "timestamp" in scores:
        latest = scores.sort_values("timestamp", ascending=False).head(count)
    else:
        latest = scores.tail(count)
    if not {"table", "kind", "text_id"} <= set(latest.columns):
        return latest
    parts = []
    for (table, kind), group in latest.groupby(["table", "kind"], sort=False):
        raw = _read(storage.join(data_path(settings, RAW), f"{table}.parquet"))
        if raw is None or raw.empty:
            parts.append(group)
            continue
        texts = news_texts(raw, table) if kind == "news" else tweet_texts(raw, table)
        lookup = pd.DataFrame({"text_id": texts["text_id"].to_numpy(), "text": texts["text"].to_numpy()})
        if "source" in raw.columns:
            lookup["source"] = raw["source"].to_numpy()
        parts.append(group.merge(lookup.drop_duplicates("text_id"), on="text_id", how="left"))
    joined = pd.concat(parts, ignore_index=True)
    return joined.sort_values("timestamp", ascending=False, ignore_index=True) if "timestamp" in joined else joined


def drift(settings: Settings) -> dict[str, Any] | Missing:
    directory = settings.path("reports", "drift")
    latest = storage.join(directory, "latest.json")
    if not storage.exists(latest):
        return Missing("no drift check yet", "make drift   (or: bitpredict drift --model-dir <model>)")
    summary = json.loads(storage.read_text(latest))
    history = []
    from pathlib import Path

    if not storage.is_gcs(directory):
        for path in sorted(Path(directory).glob("drift-*.json")):
            item = json.loads(path.read_text())
            history.append({"checked_at": pd.Timestamp(item["checked_at"]), "share": item.get("share")})
    html = summary.get("report_html")
    summary["html"] = storage.read_text(html) if html and storage.exists(html) else None
    summary["history"] = pd.DataFrame(history)
    summary["coverage"] = forecast_coverage(storage.join(directory, "ledger.parquet"))
    return summary


def forecast_coverage(ledger_uri: str, window: int = 60) -> pd.DataFrame | None:
    """Rolling coverage of the champion's 80 % interval on its closed forecasts (the monitor's ledger: the model
    on the ingested table, never a client's bars), by day."""
    if not storage.exists(ledger_uri):
        return None
    book = storage.read_parquet(ledger_uri)
    if not {"q10", "q90", "actual"} <= set(book.columns):
        return None
    closed = book[book["actual"].notna()]
    if closed.empty:
        return None
    inside = ((closed["actual"] >= closed["q10"]) & (closed["actual"] <= closed["q90"])).astype(float)
    rolling = inside.rolling(window, min_periods=min(window, 20)).mean()
    return pd.DataFrame({"day": pd.to_datetime(closed["timestamp"]), "coverage (rolling 60 days)": rolling,
                         "nominal": 0.8}).dropna()  # fmt: skip


def replay(settings: Settings) -> dict[str, Any] | Missing:
    """The last replay's summary and plot (``bitpredict replay``: ``<data dir>/reports/replay/``)."""
    directory = settings.path("reports", "replay")
    summary_uri = storage.join(directory, "summary.json")
    if not storage.exists(summary_uri):
        return Missing(
            "no replay yet", "make replay DATA=../shared/data FROM=2024-09-01 TO=2024-10-31   (a few minutes)"
        )
    summary = json.loads(storage.read_text(summary_uri))
    plot = storage.join(directory, "replay.png")
    summary["plot"] = storage.read_bytes(plot)[0] if storage.exists(plot) else None
    return summary


def health(settings: Settings) -> pd.DataFrame:
    """Ready or not, for the transformer, the predictor and MLflow (each asked with a short timeout)."""
    checks = [
        ("transformer", f"{settings.transformer_url}/v2/health/ready", "make serve"),
        ("predictor", f"{settings.predictor_url}/v2/health/ready", "make serve"),
    ]
    if settings.tracking_uri.startswith("http"):
        checks.append(("MLflow", f"{settings.tracking_uri.rstrip('/')}/health", "start the MLflow server"))
    rows = []
    for name, url, fix in checks:
        try:
            ok = httpx.get(url, timeout=2).status_code == 200
            state = "ready" if ok else "not ready"
        except httpx.HTTPError as exc:
            ok, state = False, f"down ({type(exc).__name__})"
        rows.append({"service": name, "url": url, "state": state, "fix": "" if ok else fix})
    if not settings.tracking_uri.startswith("http"):
        rows.append({"service": "MLflow", "url": settings.tracking_uri, "state": "local store", "fix": ""})
    return pd.DataFrame(rows)


def forecast_request(settings: Settings, bars: pd.DataFrame, rows: int = 200) -> dict[str, Any]:
    """The v2 body for the forecast after the last of ``bars``: the latest ``rows`` clean bars with their
    ``is_imputed`` flags and the published sentiment of those days — what the model was trained with for them
    (without the sentiment every served window would look like a day without news)."""
    from inference.client import v2_request, with_sentiment

    recent = bars.tail(rows).reset_index(drop=True)
    return v2_request(recent, with_sentiment(recent, _read(published_path(settings, SENTIMENT_DAILY))))


def forecast(settings: Settings, bars: pd.DataFrame, rows: int = 200) -> dict[str, Any] | Missing:
    """The forecast from the day after the latest stored bar, from the live v2 endpoint (``parse_forecast``)."""
    url = f"{settings.transformer_url}/v2/models/bitpredict/infer"
    try:
        response = httpx.post(url, json=forecast_request(settings, bars, rows), timeout=15)
    except httpx.HTTPError as exc:
        return Missing(f"the forecast service at {settings.transformer_url} is not answering ({type(exc).__name__})",
                       "make serve")  # fmt: skip
    if response.status_code != 200:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        return Missing(f"the forecast service answered {response.status_code}: {message}", "make serve")
    return parse_forecast(response.json())


# The transformer's per-horizon outputs (H horizons, Q quantile levels); every other output is the next day's scalar.
PER_HORIZON = (
    "horizons", "horizon_as_of", "quantile_levels", "horizon_quantiles", "horizon_close_quantiles",
    "value_at_risk_95", "expected_shortfall_95", "prob_rise_5pct", "prob_fall_5pct", "prob_rise_10pct",
    "prob_fall_10pct", "expected_range_low", "expected_range_high",
)  # fmt: skip
RISK_COLUMNS = {  # output -> the risk table's column
    "value_at_risk_95": "VaR 95 %",
    "expected_shortfall_95": "ES 95 %",
    "prob_rise_5pct": "P(rise ≥ 5 %)",
    "prob_fall_5pct": "P(fall ≥ 5 %)",
    "prob_rise_10pct": "P(rise ≥ 10 %)",
    "prob_fall_10pct": "P(fall ≥ 10 %)",
    "expected_range_low": "range low (68 %)",
    "expected_range_high": "range high (68 %)",
}


def parse_forecast(document: dict[str, Any]) -> dict[str, Any]:
    """A v2 response → the next day's scalars by output name (as before), ``parameters``, and ``horizons``: the
    per-horizon forecast (``levels`` [Q], ``horizons`` [H], ``as_of`` [H], ``quantiles`` [H, Q] of the log return,
    ``close_quantiles`` [H, Q] in USD or None, ``risk`` a table by horizon) — or None, with ``horizons_missing``
    saying why, when the server or its model predates them. Each output's flat ``data`` is reshaped by its ``shape``."""
    arrays: dict[str, np.ndarray] = {}
    for output in document.get("outputs", []):
        values = np.asarray(output["data"], dtype=object if output.get("datatype") == "BYTES" else None)
        arrays[output["name"]] = values.reshape(output.get("shape") or values.shape)
    out: dict[str, Any] = {}
    for name, values in arrays.items():
        if name in PER_HORIZON:
            continue
        first = values.reshape(-1)[0] if values.size == 1 else values
        out[name] = first.item() if isinstance(first, np.generic) else first
    out["parameters"] = document.get("parameters") or {}
    out["horizons"], out["horizons_missing"] = _horizons(arrays)
    return out


def _horizons(arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any] | None, str | None]:
    needed = [n for n in ("horizons", "quantile_levels", "horizon_quantiles") if n not in arrays]
    if needed:
        return None, (f"the forecast service answers the next day only (its response has no {', '.join(needed)}: "
                      "a server or model from before horizons)")  # fmt: skip
    horizons = arrays["horizons"].reshape(-1).astype(int)
    levels = arrays["quantile_levels"].reshape(-1).astype(float)
    count = (len(horizons), len(levels))

    def table(name: str) -> np.ndarray | None:
        if name not in arrays:
            return None
        values = arrays[name].astype(float)
        return values.reshape(count) if values.size == count[0] * count[1] else None

    quantiles = table("horizon_quantiles")
    if quantiles is None:
        return None, f"horizon_quantiles has shape {list(arrays['horizon_quantiles'].shape)}, not {list(count)}"
    as_of = [str(d.decode() if isinstance(d, bytes) else d) for d in arrays.get("horizon_as_of", np.array([]))]
    risk = pd.DataFrame({"horizon": horizons, "date": as_of if len(as_of) == len(horizons) else None})
    for name, column in RISK_COLUMNS.items():
        if name in arrays and arrays[name].size == len(horizons):
            risk[column] = arrays[name].reshape(-1).astype(float)
    found = {"horizons": horizons, "as_of": list(risk["date"]), "levels": levels, "quantiles": quantiles,
             "close_quantiles": table("horizon_close_quantiles"), "risk": risk}  # fmt: skip
    return found, None


def fan_frame(horizons: dict[str, Any], last_day: Any, last_close: float) -> pd.DataFrame:
    """The fan chart's data: one row per day 0..max horizon (day 0: the last close), its ``date`` and the close
    at each served quantile level (columns are the levels), interpolated between served horizons by
    ``bitpredict.forecast.risk.fan`` (q / √h linear in h: a random walk's band exactly)."""
    from bitpredict.forecast.risk import fan

    days = int(horizons["horizons"].max())
    quantiles = np.vstack([np.zeros(len(horizons["levels"])), fan(horizons["horizons"], horizons["quantiles"])])
    frame = pd.DataFrame(last_close * np.exp(quantiles), columns=[float(level) for level in horizons["levels"]])
    frame.insert(0, "day", np.arange(days + 1))
    frame.insert(1, "date", pd.Timestamp(last_day).tz_localize(None).normalize() + pd.to_timedelta(frame["day"], "D"))
    frame["served"] = frame["day"].isin(horizons["horizons"])
    return frame


def forecast_calibration(ledger_uri: str, nominal: float = 0.8) -> pd.DataFrame | None:
    """Calibration so far, per horizon, from a forecast ledger (``ledger_horizons.parquet``: one row per origin day
    and horizon; or the 1-day ``ledger.parquet``, which has no ``horizon`` column): the closed forecasts, the
    share whose realised log return fell inside the 10–90 % interval, below it and above it, and the open ones."""
    if not storage.exists(ledger_uri):
        return None
    book = storage.read_parquet(ledger_uri)
    if not {"q10", "q90", "actual"} <= set(book.columns):
        return None
    if "horizon" not in book.columns:
        book = book.assign(horizon=1)
    rows = []
    for horizon, group in book.groupby("horizon", sort=True):
        closed = group[group["actual"].notna()]
        below, above = (closed["actual"] < closed["q10"]).mean(), (closed["actual"] > closed["q90"]).mean()
        rows.append({"horizon": int(horizon), "closed": len(closed), "open": len(group) - len(closed),
                     "inside 10–90 %": 1 - below - above if len(closed) else np.nan,
                     "below q10": below if len(closed) else np.nan, "above q90": above if len(closed) else np.nan,
                     "nominal": nominal})  # fmt: skip
    return pd.DataFrame(rows)


def calibration(settings: Settings) -> dict[str, Any]:
    """The forecast's calibration so far: ``table`` per horizon (None before the first ledger), ``source``
    (``"horizons"``, or ``"next day"`` when only the 1-day ledger exists) and ``rolling``, the 1-day rolling
    coverage (``forecast_coverage``)."""
    directory = settings.path("reports", "drift")
    one_day = storage.join(directory, "ledger.parquet")
    table = forecast_calibration(storage.join(directory, "ledger_horizons.parquet"))
    source = "horizons"
    if table is None:
        table, source = forecast_calibration(one_day), "next day"
    return {"table": table, "source": source if table is not None else None, "rolling": forecast_coverage(one_day)}
