"""The horizon axis: what an h-day forecast forecasts, and which of those labels a fit may learn from.

Every model forecasts, for each horizon h of ``model.horizons`` (1, 7 and 30 days by default), the quantiles of
the *h-day log return* ``log(close[t + h] / close[t])`` from the day ``t`` the forecast is made. Log returns add
up, so an h-day quantile is directly comparable with h one-day ones (a random walk's spread grows like √h), and
the price quantile is ``close[t] · exp(q)``.

A label that would span a filled bar is left empty, as for the next-day target
(``bitpredict.features.merge.add_targets``): a filled bar copies the previous close, so an h-day return that
starts or ends on one would move a day of the move onto the wrong side of the gap. An imputed bar strictly
inside the h days does no harm (only the two ends count).

**No look-ahead in training.** A fit on rows ``[0, end)`` (the walk-forward refits before the forecast made at
row ``end``) knows the closes up to row ``end`` — the next-day label of row ``end − 1`` is ``close[end]``, the close
the first forecast is made from. An h-day label of row ``t`` needs ``close[t + h]``: it is usable only when
``t + h ≤ end`` (``labels_before``). For h = 30 the last 29 rows before a refit have a next-day label but no
monthly one yet.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bitpredict.features.columns import TARGET


def check_horizons(horizons: Sequence[int]) -> tuple[int, ...]:
    """The horizons as a tuple, or a ValueError: they start with 1 (the next-day forecast) and increase."""
    out = tuple(int(h) for h in horizons)
    if not out or out[0] != 1 or any(b <= a for a, b in itertools.pairwise(out)):
        raise ValueError(f"horizons must start with 1 and increase, not {tuple(horizons)}")
    return out


def horizon_returns(frame: pd.DataFrame, horizons: Sequence[int]) -> np.ndarray:
    """[rows, H]: the realised h-day log return of every row of the features table (NaN past the table's end
    or when either end is a filled bar). The 1-day column is the table's own target, exactly."""
    horizons = check_horizons(horizons)
    close = frame["close"].to_numpy(dtype="float64")
    n = len(close)
    imputed = (
        frame["is_imputed"].astype("float64").to_numpy() > 0 if "is_imputed" in frame.columns else np.zeros(n, bool)
    )
    out = np.full((n, len(horizons)), np.nan)
    for j, h in enumerate(horizons):
        if h == 1 and TARGET in frame.columns:
            out[:, j] = frame[TARGET].to_numpy(dtype="float64")
            continue
        if h >= n:
            continue
        ends_ok = ~(imputed[: n - h] | imputed[h:])
        values = np.log(close[h:] / close[: n - h])
        out[: n - h, j] = np.where(ends_ok, values, np.nan)
    return out


def labels_before(returns: np.ndarray, horizons: Sequence[int], end: int) -> np.ndarray:
    """``returns`` [rows, H] with every label a fit on rows ``[0, end)`` could not know set to NaN: row ``t``'s
    h-day label needs ``close[t + h]``, known only when ``t + h ≤ end``."""
    out = np.array(returns, dtype="float64", copy=True)
    rows = np.arange(len(out))[:, None]
    out[rows + np.asarray(horizons)[None, :] > end] = np.nan
    return out


def horizon_suffix(h: int) -> str:
    """The column suffix of horizon ``h`` in the evaluation's tables: "" for the next day (the columns every
    reader already knows), ``_h7`` for 7 days."""
    return "" if h == 1 else f"_h{h}"
