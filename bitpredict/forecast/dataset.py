"""From the features table to model inputs: which columns, how they are scaled, how rows become windows.

Shared by training, evaluation and the serving transformer, so the three can never disagree on the
column order, the scaling or which rows a window covers.

Only scale-free columns go into the model (``indicators.MODEL_FEATURES``, the data-quality flags and the
daily sentiment aggregates): price levels, averages in dollars and OBV always drift — a model fed them
learns the decade's price path, not tomorrow's return.

Errors: a table or settings that cannot give the model its inputs (a missing column, non-finite training
values, too little history) raise ``InputError`` — the user's data, one line from the CLI; a caller passing
impossible arguments (window ends outside the table, scaler metadata of unequal lengths) is a bug and stays a
``ValueError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bitpredict.errors import InputError
from bitpredict.features.columns import FLAG_COLUMNS, SENTIMENT_PREFIXES, TARGET, sentiment_columns
from bitpredict.features.indicators import MODEL_FEATURES


def sentiment_inputs() -> list[str]:
    return [c for p in SENTIMENT_PREFIXES for c in (*sentiment_columns(p), f"{p}_missing")]


def model_input_columns(available: Sequence[str], use_sentiment: bool = True, exclude: Sequence[str] = ()) -> list[str]:
    """The model's input columns in their fixed order (less ``exclude``); an error names any the table lacks."""
    wanted = [
        c for c in (*MODEL_FEATURES, *FLAG_COLUMNS, *(sentiment_inputs() if use_sentiment else [])) if c not in exclude
    ]
    missing = [c for c in wanted if c not in set(available)]
    if missing:
        raise InputError(f"the features table lacks model input column(s) {missing}: rerun `bitpredict merge`")
    return wanted


@dataclass(frozen=True)
class Scaler:
    """Per-column standardisation, fitted on training rows only and stored with the model."""

    columns: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: Sequence[str]) -> Scaler:
        values = frame[list(columns)].to_numpy(dtype="float64")
        if not np.isfinite(values).all():
            bad = [c for c, ok in zip(columns, np.isfinite(values).all(axis=0), strict=True) if not ok]
            raise InputError(f"cannot fit the scaler: non-finite values in {bad}")
        std = values.std(axis=0)
        # A constant column (a flag never set in training) scales by 1, so it stays 0 - mean, not inf.
        std = np.where(std > 1e-12, std, 1.0)
        return cls(tuple(columns), tuple(values.mean(axis=0).tolist()), tuple(std.tolist()))

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        values = frame[list(self.columns)].to_numpy(dtype="float64")
        return ((values - np.asarray(self.mean)) / np.asarray(self.std)).astype("float32")

    def transform_arrays(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """``transform`` for columns held as arrays (the serving hot path builds no DataFrame): [rows, F]."""
        values = np.stack([columns[c] for c in self.columns], axis=1)
        return ((values - np.asarray(self.mean)) / np.asarray(self.std)).astype("float32")

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        columns, mean, std = data["columns"], data["mean"], data["std"]
        if not len(columns) == len(mean) == len(std):
            raise ValueError("scaler metadata: columns, mean and std differ in length")
        return cls(tuple(columns), tuple(float(v) for v in mean), tuple(float(v) for v in std))


def windows(values: np.ndarray, window: int, ends: Sequence[int] | np.ndarray) -> np.ndarray:
    """Samples [N, W, F]: for each end row t, the rows t-W+1 … t (oldest first)."""
    ends = np.asarray(ends, dtype="int64")
    if len(ends) and (ends.min() < window - 1 or ends.max() >= len(values)):
        raise ValueError(f"window ends must lie in [{window - 1}, {len(values) - 1}]")
    index = ends[:, None] + np.arange(1 - window, 1)[None, :]
    return values[index]


@dataclass(frozen=True)
class Split:
    """Row ranges of the labelled features table: train [0, val_start), validation [val_start, end).

    The validation block comes after the training block in time; it drives early stopping only.
    """

    val_start: int
    end: int

    @classmethod
    def before(cls, end: int, validation_days: int, window: int) -> Split:
        val_start = end - validation_days
        if val_start - (window - 1) < max(validation_days, 100):
            raise InputError(
                f"{end} labelled rows are too few for a {validation_days}-day validation block and {window}-day "
                "windows: use a shorter model.validation_days or model.window, or more history"
            )
        return cls(val_start=val_start, end=end)


def label_rows(frame: pd.DataFrame, start: int, end: int) -> np.ndarray:
    """Row indices in ``[start, end)`` whose target is a label (not empty)."""
    rows = np.arange(max(start, 0), end)
    return rows[np.isfinite(frame[TARGET].to_numpy(dtype="float64")[rows])]
