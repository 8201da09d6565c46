"""bitpredict.serving and the request log: start-up checks, sentiment inputs, the log across restarts."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bitpredict.dataset import Scaler
from bitpredict.indicators import MODEL_FEATURES, WARMUP
from bitpredict.merge import sentiment_columns
from bitpredict.request_log import RequestLog, read_log
from bitpredict.serving import ModelMismatch, ModelSpec, RequestError, feature_window, parse_request, sentiment_inputs


def _meta(columns: list[str], window: int = 10) -> dict:
    return {
        "feature_columns": columns,
        "window": window,
        "warmup": WARMUP,
        "scaler": Scaler(tuple(columns), (0.0,) * len(columns), (1.0,) * len(columns)).to_dict(),
        "quantiles": [0.1, 0.5, 0.9],
    }


COLUMNS = [*MODEL_FEATURES, "is_imputed", "is_outlier", *sentiment_columns("news"), "news_missing"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(warmup=WARMUP + 1), "warm-up"),
        (lambda m: m.update(feature_columns=[*m["feature_columns"], "close_to_sma_200"]), "close_to_sma_200"),
        (lambda m: m.update(window=100), "exceed 200"),
        (lambda m: m.pop("scaler"), "incomplete"),
        (lambda m: m.update(quantiles=[0.9, 0.1]), "increasing"),
    ],
)
def test_a_model_this_code_cannot_serve_is_refused_at_start_up(edit, message: str) -> None:
    meta = copy.deepcopy(_meta(COLUMNS))
    edit(meta)
    with pytest.raises(ModelMismatch, match=message):
        ModelSpec.from_metadata(meta, "1")
    with pytest.raises(ModelMismatch, match="below 365"):
        ModelSpec.from_metadata(_meta(COLUMNS), "1", max_rows=300)


def _inputs(bars: pd.DataFrame, **extra: np.ndarray) -> dict:
    stamps = bars["timestamp"].astype("int64").to_numpy() // 10**9
    out = {"timestamp": ("INT64", stamps)}
    out.update({c: ("FP64", bars[c].to_numpy()) for c in ("open", "high", "low", "close", "volume")})
    out.update({k: ("FP64", v) for k, v in extra.items()})
    return out


def test_sentiment_inputs_are_used_and_partial_ones_refused(clean_daily: pd.DataFrame) -> None:
    spec = ModelSpec.from_metadata(_meta(COLUMNS), "7")
    bars = clean_daily.tail(200).reset_index(drop=True)
    neutral = feature_window(parse_request(_inputs(bars), spec), spec)
    news = {f"sentiment_{c}": np.full(200, 0.4) for c in sentiment_columns("news")}
    with_news = feature_window(parse_request(_inputs(bars, **news), spec), spec)
    index = COLUMNS.index("news_vader_mean")
    assert neutral[0, -1, index] == 0.0 and with_news[0, -1, index] == pytest.approx(0.4)
    assert with_news[0, -1, COLUMNS.index("news_missing")] == 0.0 and neutral[0, -1, COLUMNS.index("news_missing")] == 1
    partial = dict(list(news.items())[:3])
    with pytest.raises(RequestError, match="partial"):
        parse_request(_inputs(bars, **partial), spec)
    assert all(name.startswith("sentiment_") for name in sentiment_inputs())


def test_the_request_log_survives_a_restart(tmp_path: Path) -> None:
    directory = str(tmp_path / "requests")
    first = RequestLog(directory, batch_size=2, flush_s=0.1)
    for i in range(3):
        first.append({"request_id": f"a{i}", "predicted_close": 100.0 + i, "bars": {"close": [1.0, 2.0]}})
    first.close()
    second = RequestLog(directory, batch_size=10, flush_s=0.1)  # "after a restart"
    second.append({"request_id": "b0", "predicted_close": 99.0, "bars": {"close": [3.0]}})
    second.close()
    logged = read_log(directory)
    assert sorted(logged["request_id"]) == ["a0", "a1", "a2", "b0"] and first.dropped == second.dropped == 0
    assert len(list((tmp_path / "requests").glob("part-*.parquet"))) == 3  # 2 + 1 batches, then 1
