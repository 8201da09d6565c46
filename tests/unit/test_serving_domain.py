"""bitpredict.forecast.serving and the request log: start-up checks, sentiment inputs, the log across restarts."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bitpredict.features.columns import sentiment_columns
from bitpredict.features.indicators import MODEL_FEATURES, WARMUP, compute_indicators
from bitpredict.features.online import DailyBars
from bitpredict.forecast.dataset import Scaler
from bitpredict.forecast.serving import (
    ModelMismatch,
    ModelSpec,
    RequestError,
    feature_window,
    forecast,
    parse_bars,
    parse_request,
    sentiment_inputs,
    sentiment_source,
)
from bitpredict.operations.request_log import RequestLog, read_log


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


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("sentiment_news_vader_mean", 1e30, "sentiment_range"),  # the review's 1e30 reached the model
        ("sentiment_news_share_positive", 1.5, "sentiment_range"),
        ("sentiment_news_count", -1.0, "sentiment_range"),
        ("sentiment_news_finbert_std", -0.1, "sentiment_range"),
        ("volume", 1e300, "volume"),
        ("high", 2e9, "price"),  # a high above the bound (open and close stay inside [low, high])
    ],
)
def test_values_outside_their_columns_bounds_are_refused(
    clean_daily: pd.DataFrame, column: str, value: float, reason: str
) -> None:
    spec = ModelSpec.from_metadata(_meta(COLUMNS), "7")
    bars = clean_daily.tail(200).reset_index(drop=True)
    news = {f"sentiment_{c}": np.full(200, 0.4) for c in sentiment_columns("news")}
    news["sentiment_news_count"] = np.full(200, 12.0)
    parse_request(_inputs(bars, **news), spec)  # in bounds: accepted
    inputs = _inputs(bars, **news)
    datatype, values = inputs[column]
    values = values.astype("float64").copy()
    values[-1] = value
    inputs[column] = (datatype, values)
    with pytest.raises(RequestError) as refused:
        parse_request(inputs, spec)
    assert refused.value.reason == reason and column.removeprefix("sentiment_") in str(refused.value)


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
    assert len(list((tmp_path / "requests").glob("date=*/part-*.parquet"))) == 3  # 2 + 1 batches, then 1


def _bars_record(rows: int, request_id: str = "r") -> dict:
    return {"request_id": request_id, "rows": rows, "bars": {c: [1.0] * rows for c in ("open", "close", "volume")}}


def test_the_request_log_is_bounded_by_bytes_and_drops_with_a_count_instead_of_blocking(tmp_path: Path) -> None:
    """A queue bounded by count held 10,000 records whatever their size (GBs of bars); it is bounded by bytes now."""
    from bitpredict.operations.request_log import record_bytes

    dropped: list[int] = []
    big = _bars_record(1_000)
    cap = 3 * record_bytes(big) + 10
    log = RequestLog(str(tmp_path / "requests"), batch_size=1_000, flush_s=30, max_bytes=cap, on_drop=dropped.append)
    try:
        started = time.monotonic()
        accepted = [log.append(_bars_record(1_000, f"r{i}")) for i in range(50)]
        assert time.monotonic() - started < 0.5  # never blocks the response it belongs to
        assert accepted.count(True) == 3 and log.dropped == 47 and sum(dropped) == 47
        assert log.queued_bytes <= cap
    finally:
        log.close()
    assert log.queued_bytes == 0 and log.written == 3  # written at close, the bytes freed


def test_the_request_log_is_partitioned_by_day_and_read_by_window(tmp_path: Path) -> None:
    directory = tmp_path / "requests"
    for day, ids in (("2026-01-01", ["a", "b"]), ("2026-01-02", ["c"]), ("2026-01-03", ["d"])):
        (directory / f"date={day}").mkdir(parents=True)
        frame = pd.DataFrame({"request_id": ids, "logged_at": [f"{day}T12:00:00+00:00"] * len(ids)})
        frame.to_parquet(directory / f"date={day}" / "part-x.parquet")
    flat = pd.DataFrame({"request_id": ["old"], "logged_at": ["2025-12-31T08:00:00+00:00"]})
    flat.to_parquet(directory / "part-old.parquet")  # what the flat layout wrote: still read
    assert sorted(read_log(str(directory))["request_id"]) == ["a", "b", "c", "d", "old"]
    window = read_log(str(directory), since="2026-01-02", until=pd.Timestamp("2026-01-03", tz="UTC"))
    assert list(window["request_id"]) == ["c"]
    assert sorted(read_log(str(directory), since="2025-12-31")["request_id"]) == ["a", "b", "c", "d", "old"]
    assert read_log(str(directory), until="2025-12-31").empty
    (directory / "date=2026-01-01" / "part-x.parquet").write_bytes(b"not parquet")  # outside the window: not read
    assert list(read_log(str(directory), since="2026-01-03")["request_id"]) == ["d"]


def _body_inputs(body: dict) -> dict:
    return {t["name"]: (t["datatype"], np.asarray(t["data"])) for t in body["inputs"]}


def test_the_ui_request_carries_the_days_sentiment_and_filled_bars(clean_daily: pd.DataFrame, tmp_path: Path) -> None:
    """The UI (through inference.client) sends the published sentiment of each day and the clean table's
    is_imputed flags; the transformer's code reads both, so the window is the one the features table holds."""
    from bitpredict import storage
    from bitpredict.config import load_settings
    from bitpredict.features.merge import build_features
    from ui.data import forecast_request

    settings = load_settings(data_dir=str(tmp_path / "data"))
    bars = clean_daily.tail(400).reset_index(drop=True)
    bars.loc[390, "is_imputed"] = True  # a day the clean stage filled
    news_days = bars["timestamp"].iloc[[385, 395, 399]]
    daily = pd.DataFrame({"timestamp": news_days, **{c: 0.0 for c in sentiment_columns("news")}})
    daily = daily.assign(news_vader_mean=[0.2, -0.4, 0.6], news_count=[4.0, 2.0, 7.0])
    storage.write_parquet(daily, settings.path("interim", "sentiment_daily.parquet"))

    body = forecast_request(settings, bars, rows=200)
    names = {t["name"] for t in body["inputs"]}
    assert {"is_imputed", "sentiment_news_vader_mean", "sentiment_news_count"} <= names
    assert not any(n.startswith("sentiment_tweets") for n in names)  # no tweets published: training's default
    spec = ModelSpec.from_metadata(_meta(COLUMNS, window=30), "7")
    served = feature_window(parse_request(_body_inputs(body), spec), spec)[0]
    table = build_features(compute_indicators(bars), daily, WARMUP).set_index("timestamp")
    expected = spec.scaler.transform(table.loc[bars["timestamp"].iloc[-30:]])
    np.testing.assert_allclose(served, expected, atol=1e-5)
    column = {c: i for i, c in enumerate(COLUMNS)}
    assert served[-1, column["news_vader_mean"]] == pytest.approx(0.6) and served[-1, column["news_missing"]] == 0
    assert served[-10, column["is_imputed"]] == 1.0 and served[-2, column["news_missing"]] == 1.0


@pytest.mark.parametrize("values", [[0.5], [2.0], [-1.0]])
def test_is_imputed_must_be_a_flag(clean_daily: pd.DataFrame, values: list[float]) -> None:
    spec = ModelSpec.from_metadata(_meta(COLUMNS), "7")
    bars = clean_daily.tail(200).reset_index(drop=True)
    flags = np.zeros(200)
    flags[-1] = values[0]
    with pytest.raises(RequestError, match="is_imputed"):
        parse_request(_inputs(bars, is_imputed=flags), spec)


def test_the_hot_path_is_arrays_and_gives_the_frames_window(clean_daily: pd.DataFrame) -> None:
    """parse_bars → DailyBars (NumPy), feature_window on it: the same window, forecast and log record as the
    DataFrame path the transformer used before (parse_request)."""
    spec = ModelSpec.from_metadata(_meta(COLUMNS, window=30), "7")
    bars = clean_daily.tail(250).reset_index(drop=True)
    news = {f"sentiment_{c}": np.linspace(0.0, 1.0, 250) for c in sentiment_columns("news")}  # within every scale
    inputs = _inputs(bars, is_imputed=np.zeros(250), **news)
    arrays, frame = parse_bars(inputs, spec), parse_request(inputs, spec)
    assert isinstance(arrays, DailyBars) and isinstance(arrays.is_imputed, np.ndarray)
    assert all(isinstance(v, np.ndarray) for v in (arrays.timestamp, arrays.close, *arrays.sentiment.values()))
    window = feature_window(arrays, spec)
    assert window.shape == (1, 30, len(COLUMNS)) and window.dtype == np.float32
    np.testing.assert_array_equal(window, feature_window(frame, spec))
    quantiles = np.array([-0.02, 0.001, 0.03])
    assert forecast(quantiles, arrays, spec) == forecast(quantiles, frame, spec)
    assert sentiment_source(arrays) == sentiment_source(frame) == "client: news"
    logged = frame.assign(timestamp=frame["timestamp"].astype("int64") // 10**9).to_dict("list")
    assert arrays.as_lists() == logged  # the request log's record, built without pandas


def test_only_the_models_columns_are_computed_and_they_are_the_full_ones(clean_daily: pd.DataFrame) -> None:
    bars = parse_bars(
        _inputs(clean_daily.tail(200).reset_index(drop=True)), ModelSpec.from_metadata(_meta(COLUMNS), "7")
    )
    subset = ["rsi_14", "ewma_vol", "is_outlier"]
    full = feature_window(bars, ModelSpec.from_metadata(_meta(COLUMNS), "7"))[0]
    small = feature_window(bars, ModelSpec.from_metadata(_meta(subset), "7"))[0]
    np.testing.assert_array_equal(small, full[:, [COLUMNS.index(c) for c in subset]])


def test_too_few_rows_and_impossible_timestamps_are_clear_errors(clean_daily: pd.DataFrame) -> None:
    spec = ModelSpec.from_metadata(_meta(COLUMNS, window=30), "7")
    with pytest.raises(RequestError, match="needs at least 180") as short:
        feature_window(clean_daily.tail(170).reset_index(drop=True), spec)  # a frame that skipped parse_request
    assert short.value.reason == "too_few_rows"
    inputs = _inputs(clean_daily.tail(200).reset_index(drop=True))
    inputs["timestamp"] = ("INT64", inputs["timestamp"][1] * 10**9)  # nanoseconds sent as seconds
    with pytest.raises(RequestError, match="'timestamp': not unix seconds") as stamps:
        parse_bars(inputs, spec)
    assert stamps.value.reason == "bad_timestamp"


# --------------------------------------------------------------------------------------------
# where the model lives (bitpredict.forecast.artifact.locate)
# --------------------------------------------------------------------------------------------


def _model_folder(root: Path, meta: dict, nested: bool) -> Path:
    from bitpredict.forecast.artifact import SAVED_MODEL_DIR, SAVED_MODEL_PB, write_metadata

    saved = root / SAVED_MODEL_DIR if nested else root
    saved.mkdir(parents=True)
    (saved / SAVED_MODEL_PB).write_bytes(b"graph")
    write_metadata(root, meta)
    return root


def test_locate_finds_the_newest_version_a_version_folder_and_a_candidate(tmp_path: Path) -> None:
    from bitpredict.forecast.artifact import FORMAT_VERSION, locate, read_metadata

    meta = {"format_version": FORMAT_VERSION, "mlflow_run_id": "0123456789abcdef", "window": 30}
    store = tmp_path / "store" / "bitpredict-lstm"
    for version in ("2", "10", "9"):
        _model_folder(store / version, {**meta, "v": version}, nested=False)
    (store / "latest").mkdir()  # not a version folder: ignored
    newest = locate(store)
    assert (newest.version, newest.metadata["v"], newest.saved_model_dir) == ("10", "10", str(store / "10"))
    assert locate(store / "9").version == "9"
    candidate = locate(_model_folder(tmp_path / "candidate", meta, nested=True), require_saved_model=True)
    assert candidate.version == "0123456789ab" and candidate.saved_model_dir.endswith("candidate/saved_model")
    assert read_metadata(candidate.directory) == meta


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda d: None, "no numbered version folders"),
        (lambda d: (d / "bitpredict_model.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "bitpredict_model.json").write_text("[1, 2]"), "JSON object"),
    ],
)
def test_locate_says_what_is_missing(tmp_path: Path, prepare, message: str) -> None:
    from bitpredict.forecast.artifact import ArtifactError, locate

    folder = tmp_path / "model"
    folder.mkdir()
    prepare(folder)
    with pytest.raises(ArtifactError, match=message):
        locate(folder)


def test_locate_requires_the_graph_only_when_asked_and_metadata_format_is_checked(tmp_path: Path) -> None:
    from bitpredict.forecast.artifact import ArtifactError, locate, read_metadata, write_metadata

    folder = tmp_path / "meta-only"
    folder.mkdir()
    write_metadata(folder, {"format_version": 99})
    assert locate(folder).saved_model_dir == str(folder)  # the drift job reads the metadata alone
    with pytest.raises(ArtifactError, match=r"no saved_model\.pb"):
        locate(folder, require_saved_model=True)
    with pytest.raises(ArtifactError, match="format 99"):
        read_metadata(folder)
