"""The features table's columns besides the indicators — the target, the data-quality flags and the daily
sentiment — and the one rule that turns a day's sentiment aggregates into model inputs (``request_sentiment``).

Why a module of its own: the merge stage (training's table), ``bitpredict.features.online`` (the model inputs of
any row, training's and a forecast request's alike) and ``bitpredict.forecast.dataset`` (the model's column
order) all need these definitions, and merge calls online; kept here, below all three, the dependency points one
way and there is one definition of every column.

Missing sentiment days: a day with no text gets the neutral value (0 for means, spreads and shares, 0 for the
count) and ``<prefix>_missing = 1`` so the model can tell "no news" from "neutral news". The transformer uses
the same neutral default when a client sends no sentiment.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

SENTIMENT_PREFIXES = ("news", "tweets")
SENTIMENT_STATS = (
    "vader_mean",
    "vader_std",
    "finbert_mean",
    "finbert_std",
    "count",
    "share_positive",
    "share_negative",
)
FLAG_COLUMNS = ("is_imputed", "is_outlier")

TARGET = "target_log_return"  # what every model forecasts: the log return from day t to t + 1 (merge writes it)


def sentiment_columns(prefix: str) -> list[str]:
    return [f"{prefix}_{stat}" for stat in SENTIMENT_STATS]


def neutral_sentiment(prefix: str) -> dict[str, float]:
    """The values a day without texts gets (also used by the transformer when a client sends none)."""
    return {**dict.fromkeys(sentiment_columns(prefix), 0.0), f"{prefix}_missing": 1.0}


def join_sentiment(features: pd.DataFrame, daily: pd.DataFrame | None) -> pd.DataFrame:
    """Left-join daily sentiment on the day; fill missing days with the neutral values and flag them."""
    out = features.reset_index(drop=True)
    columns = sentiment_arrays(out["timestamp"], daily)
    kept = out.drop(columns=[c for c in columns if c in out.columns])
    return pd.concat([kept, pd.DataFrame(columns, index=kept.index)], axis=1)


def sentiment_arrays(days: pd.Series, daily: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """Every sentiment model input for ``days``: the day's aggregates where it has texts, else the neutral values
    and ``<prefix>_missing = 1``. Arrays, not a frame: the serving transformer runs this on every request."""
    return resolve_sentiment(len(days), aligned_sentiment(days, daily))


def aligned_sentiment(days: pd.Series, daily: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """The raw daily aggregates of ``daily`` on ``days`` (NaN where a day is absent), one array per column."""
    if daily is None:
        return {}
    same_days = len(daily) == len(days) and np.array_equal(daily["timestamp"].to_numpy(), days.to_numpy())
    # A forecast request carries one sentiment row per bar: no join needed.
    lookup = daily.reset_index(drop=True) if same_days else _aligned(daily, days)
    wanted = {c for p in SENTIMENT_PREFIXES for c in sentiment_columns(p)}
    return {c: lookup[c].to_numpy(dtype="float64") for c in lookup.columns if c in wanted}


def resolve_sentiment(n: int, given: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The sentiment model inputs of ``n`` days from the aggregates ``given`` for them (aligned arrays, any
    subset of the columns): the day's values where it has texts, else the neutral values and
    ``<prefix>_missing = 1``. Arrays in, arrays out: the serving transformer runs this on every request."""
    columns: dict[str, np.ndarray] = {}
    for prefix in SENTIMENT_PREFIXES:
        count = given.get(f"{prefix}_count")
        has_day = count > 0 if count is not None else np.zeros(n, dtype=bool)  # NaN > 0 is False
        neutral = neutral_sentiment(prefix)
        stats = sentiment_columns(prefix)
        sent = [c for c in stats if c in given]
        resolved: dict[str, np.ndarray] = {}
        if sent:  # the columns a request sent, resolved in one pass (the serving hot path)
            raw = np.stack([given[c] for c in sent])
            resolved.update(
                zip(sent, np.where(has_day & ~np.isnan(raw), raw, [[neutral[c]] for c in sent]), strict=True)
            )
        for column in stats:
            columns[column] = resolved[column] if column in resolved else np.full(n, neutral[column])
        columns[f"{prefix}_missing"] = (~has_day).astype("float64")
    return columns


def request_sentiment(daily: pd.DataFrame | None, timestamps: pd.Series) -> pd.DataFrame:
    """The ``sentiment_<column>`` values a forecast request should carry for these days (without the prefix).

    Exactly what ``join_sentiment`` gives training for each day (a day without texts: the neutral values and a
    count of 0, which the transformer reads as missing), for each source that has any day in ``daily``; the
    others are left out and the transformer applies the same neutral default training did.
    """
    days = pd.DataFrame({"timestamp": pd.to_datetime(timestamps, utc=True).reset_index(drop=True)})
    joined = join_sentiment(days, daily)
    present = [
        p
        for p in SENTIMENT_PREFIXES
        if daily is not None and f"{p}_count" in daily.columns and (daily[f"{p}_count"].fillna(0) > 0).any()
    ]
    return joined[[c for p in present for c in sentiment_columns(p)]]


def _aligned(daily: pd.DataFrame, days: pd.Series) -> pd.DataFrame:
    """``daily`` reindexed to ``days`` (the last row wins for a day given twice); NaN where a day is absent."""
    lookup = daily.drop_duplicates("timestamp", keep="last").set_index("timestamp")
    return lookup.reindex(days).reset_index(drop=True)
