"""The combination model ``combo``: the equal-weight average of fixed members' quantiles, as one SavedModel.

Why a combination and not the best single baseline: the differences between the baselines are noise on any
year of daily BTC (best minus worst is inside one HAC standard error), so picking the last window's winner
chases noise, while averaging the members' quantiles is better than each of them out of sample — the old and
robust forecast-combination result (Bates & Granger 1969; Timmermann 2006; the M4/M5 competitions).

Weights are equal, by design: fitted weights add estimation noise that, on series this noisy, usually costs
more than it gains (the "forecast combination puzzle", Smith & Wallis 2009); the rolling-origin backtest
(``bitpredict backtest``) reports the combination against each member so the choice stays checked.

Members are fixed *before* any window the combination is scored on: the setting ``model.combination``
(default: every probabilistic baseline). The exported graph slices each member's columns from the union of
their inputs and calls the member's own forecast graph (``bitpredict.forecast.baselines.graph``), so the
served combination is, by construction, the evaluated one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bitpredict.forecast import baselines
from bitpredict.forecast.dataset import Scaler

KIND = "combo"


@dataclass(frozen=True)
class CombinationFit:
    """Fitted members, averaged quantile by quantile. Has the fields of ``BaselineFit`` the export reads."""

    members: tuple[baselines.BaselineFit, ...]
    kind: str = KIND

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a combination needs at least one member")
        if len({(m.window, m.levels, m.horizons) for m in self.members}) != 1:
            raise ValueError("combination members must share the window, the quantile levels and the horizons")

    @property
    def levels(self) -> tuple[float, ...]:
        return self.members[0].levels

    @property
    def window(self) -> int:
        return self.members[0].window

    @property
    def horizons(self) -> tuple[int, ...]:
        return self.members[0].horizons

    @property
    def columns(self) -> tuple[str, ...]:
        """The union of the members' inputs, in the order they first appear."""
        return tuple(dict.fromkeys(c for m in self.members for c in m.columns))

    @property
    def train_span(self) -> tuple[str, str]:
        return self.members[0].train_span

    @property
    def params(self) -> dict[str, Any]:
        return {
            "members": [m.kind for m in self.members],
            "weights": "equal",
            **{m.kind: m.params for m in self.members},
        }

    def scaler(self) -> Scaler:
        n = len(self.columns)
        return Scaler(self.columns, (0.0,) * n, (1.0,) * n)

    def forecast_graph(self, x: Any) -> tuple[Any, Any]:
        """The mean of the members' (sorted) quantiles [B, H, Q], horizon by horizon, and of their attention, from
        the union window ``x``."""
        import tensorflow as tf

        quantiles, attention = [], []
        for member in self.members:
            index = [self.columns.index(c) for c in member.columns]
            q, a = member.forecast_graph(tf.gather(x, index, axis=2))
            quantiles.append(tf.sort(q, axis=-1))
            attention.append(a)
        return tf.add_n(quantiles) / len(quantiles), tf.add_n(attention) / len(attention)


def combine(
    members: Sequence[str],
    frame: pd.DataFrame,
    end: int,
    levels: tuple[float, ...],
    window: int,
    fitted: Mapping[str, baselines.BaselineFit] | None = None,
    horizons: tuple[int, ...] = (1,),
) -> CombinationFit:
    """The combination of ``members`` fitted on rows ``[0, end)``; members already in ``fitted`` are reused."""
    fitted = fitted or {}
    return CombinationFit(
        tuple(
            fitted.get(kind) or baselines.fit_baseline(kind, frame, end, levels, window, horizons) for kind in members
        )
    )
