"""sentiment: VADER and FinBERT scores through the real transformers path, the cache, and no look-ahead by day.

FinBERT is a tiny random BERT with FinBERT's label layout, built here (nothing is downloaded); its scores are
meaningless, so tests check the mechanics (probabilities, batching, truncation, labels, caching), not opinions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from bitpredict import storage
from bitpredict.config import SentimentSettings, load_settings
from bitpredict.features.sentiment import (
    VADER_MODEL,
    FinBertScorer,
    SentimentModelError,
    _load_scorer,
    aggregate_daily,
    daily_columns,
    run_sentiment,
    score_texts,
    vader_scores,
)
from tests.tiny_bert import build_tiny_bert

SENTENCES = [
    "Bitcoin price surges to a record high as ETF approval fuels the rally",
    "Bitcoin crash: exchange hack and fraud lawsuit spark fear and losses",
    "Bitcoin is flat this week, analysts say the market is steady",
    "Ethereum gains after the Fed update on inflation and rates",
    "",
]
MAX_POSITIONS = 64


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-label BERT (hidden 32, 2 layers, 2 heads) with a real vocab.txt, saved like a hub checkpoint."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_finbert"), SENTENCES, max_position_embeddings=MAX_POSITIONS)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may reach the hub; each starts without a remembered FinBERT load."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import: an import earlier in the session would miss it.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    _load_scorer.cache_clear()
    yield
    _load_scorer.cache_clear()


@pytest.fixture
def scorer(tiny_model: Path) -> FinBertScorer:
    return FinBertScorer(str(tiny_model), batch_size=2, device="cpu")


def _settings(tmp_path: Path, model: str | Path, finbert: str = "required", batch_size: int = 4):
    sentiment = SentimentSettings(finbert_model=str(model), finbert=finbert, batch_size=batch_size, device="cpu")
    return load_settings(data_dir=str(tmp_path / "data"), sentiment=sentiment)


def _count_finbert_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many texts each FinBertScorer.score call receives (the real method still runs)."""
    calls: list[int] = []
    real = FinBertScorer.score

    def counting(self: FinBertScorer, texts: list[str]) -> pd.DataFrame:
        calls.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(FinBertScorer, "score", counting)
    return calls


# --------------------------------------------------------------------------------------------
# scorers
# --------------------------------------------------------------------------------------------


def test_vader_sign_on_obvious_texts_and_row_order() -> None:
    texts = ["Great news, bitcoin is amazing and I love it!", "Terrible crash, horrible losses, awful fraud.", "", None]
    scores = vader_scores(texts)  # type: ignore[arg-type]  # None scores as the empty text
    assert list(scores.columns) == ["vader_compound", "vader_pos", "vader_neg", "vader_neu"]
    assert len(scores) == 4 and (scores.dtypes == "float64").all()
    assert scores.loc[0, "vader_compound"] > 0.5 and scores.loc[1, "vader_compound"] < -0.5
    assert scores.loc[2, "vader_compound"] == 0.0 and scores.loc[3, "vader_compound"] == 0.0
    assert vader_scores([]).empty


def test_finbert_probabilities_sum_to_one_and_batching_does_not_change_scores(scorer: FinBertScorer) -> None:
    texts = [*SENTENCES, "Bitcoin", "the rally the rally the rally " * 5]
    batched = scorer.score(texts)
    assert list(batched.columns) == ["finbert_positive", "finbert_negative", "finbert_neutral", "finbert_score"]
    probs = batched[["finbert_positive", "finbert_negative", "finbert_neutral"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert ((probs > 0) & (probs < 1)).all()
    np.testing.assert_allclose(batched["finbert_score"], batched["finbert_positive"] - batched["finbert_negative"])
    one_by_one = pd.concat([scorer.score([t]) for t in texts], ignore_index=True)
    np.testing.assert_allclose(batched.to_numpy(), one_by_one.to_numpy(), atol=1e-5, rtol=0)
    assert batched["finbert_score"].nunique() > 1  # the inputs really reach the model
    assert scorer.score([]).empty


def test_finbert_truncates_texts_longer_than_the_model(scorer: FinBertScorer) -> None:
    assert scorer.max_length == MAX_POSITIONS
    long_text = " ".join(["bitcoin price rally"] * 200)  # ~600 tokens against 64 positions
    scores = scorer.score([long_text, "bitcoin"])
    assert np.isfinite(scores.to_numpy()).all()
    # Truncation keeps the head: the same first 62 tokens score the same however long the tail.
    head_only = scorer.score([" ".join(["bitcoin price rally"] * 30)])
    np.testing.assert_allclose(scores.iloc[[0]].to_numpy(), head_only.to_numpy(), atol=1e-5)


def test_finbert_labels_follow_id2label_not_position(tmp_path: Path, scorer: FinBertScorer) -> None:
    """A model with another label order (and case) maps to the same named columns."""
    from transformers import AutoModelForSequenceClassification

    reordered = tmp_path / "reordered"
    model = AutoModelForSequenceClassification.from_pretrained(scorer.model_id)
    with __import__("torch").no_grad():  # swap the positive and neutral rows of the classifier head
        weight, bias = model.classifier.weight, model.classifier.bias
        weight[[0, 2]] = weight[[2, 0]].clone()
        bias[[0, 2]] = bias[[2, 0]].clone()
    model.config.id2label = {0: "NEUTRAL", 1: "Negative", 2: "Positive"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(reordered)
    scorer.tokenizer.save_pretrained(reordered)
    other = FinBertScorer(str(reordered), device="cpu")
    np.testing.assert_allclose(other.score(SENTENCES).to_numpy(), scorer.score(SENTENCES).to_numpy(), atol=1e-5)


# --------------------------------------------------------------------------------------------
# score_texts: cache and FinBERT modes
# --------------------------------------------------------------------------------------------


def test_cache_scores_each_text_once_and_a_new_model_rescores(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_finbert_calls(monkeypatch)
    settings = _settings(tmp_path, tiny_model)
    texts = pd.DataFrame({"text_id": ["a", "b", "c", "d"], "text": [SENTENCES[0], SENTENCES[1], SENTENCES[0], "x"]})

    first, meta = score_texts(texts, settings)
    assert calls == [3]  # the duplicate text is scored once
    assert meta == meta | {"finbert": "used", "model": str(tiny_model), "scored": 3, "cached": 0, "texts": 4}
    assert list(first["text_id"]) == ["a", "b", "c", "d"]
    assert (
        first.iloc[0, 1:].equals(first.iloc[2, 1:]) and first[["vader_compound", "finbert_score"]].notna().all().all()
    )

    again, meta2 = score_texts(texts.iloc[::-1].reset_index(drop=True), settings)
    assert calls == [3] and meta2["scored"] == 0 and meta2["cached"] == 3
    pd.testing.assert_frame_equal(again.iloc[::-1].reset_index(drop=True), first)

    # One new text: only it is scored; the cache holds one VADER row and one FinBERT row per text.
    more = pd.concat([texts, pd.DataFrame({"text_id": ["e"], "text": ["Bitcoin rally"]})], ignore_index=True)
    _, meta3 = score_texts(more, settings)
    assert calls == [3, 1] and meta3["scored"] == 1 and meta3["cached"] == 3
    cache = storage.read_parquet(settings.path("interim", "sentiment_cache.parquet"))
    assert cache.groupby("model").size().to_dict() == {VADER_MODEL: 4, str(tiny_model): 4}

    # Another model id: FinBERT runs again for every text, VADER comes from the cache.
    copy = tmp_path / "same-weights-other-id"
    copy.mkdir()
    for f in tiny_model.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    _, meta4 = score_texts(more, _settings(tmp_path, copy))
    assert calls == [3, 1, 4] and meta4["scored"] == 4 and meta4["cached"] == 0


def test_an_interrupted_run_keeps_the_scored_chunks(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache is written every CHECKPOINT_TEXTS texts, so a crash mid-backfill loses one chunk at most."""
    monkeypatch.setattr("bitpredict.features.sentiment.CHECKPOINT_TEXTS", 2)
    settings = _settings(tmp_path, tiny_model)
    texts = pd.DataFrame({"text_id": list("abcde"), "text": [f"bitcoin rally {i}" for i in range(5)]})
    real = FinBertScorer.score
    calls: list[int] = []

    def dies_on_second_chunk(self: FinBertScorer, batch: list[str]) -> pd.DataFrame:
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt  # a pre-empted pod
        return real(self, batch)

    monkeypatch.setattr(FinBertScorer, "score", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        score_texts(texts, settings)
    monkeypatch.setattr(FinBertScorer, "score", real)
    _, meta = score_texts(texts, settings)
    assert meta["scored"] == 3 and meta["cached"] == 2  # the first chunk survived


def test_required_optional_off_with_a_missing_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_finbert_calls(monkeypatch)
    missing = tmp_path / "no-such-finbert"
    texts = pd.DataFrame({"text_id": ["a", "b"], "text": ["Bitcoin surges, great gains", "Bitcoin crash, awful"]})

    with pytest.raises(SentimentModelError) as info:
        score_texts(texts, _settings(tmp_path, missing, "required"))
    message = str(info.value)
    assert "BITPREDICT_SENTIMENT__FINBERT_MODEL" in message and "BITPREDICT_SENTIMENT__FINBERT=optional" in message
    assert str(missing) in message

    with pytest.raises(SentimentModelError, match="cannot be loaded"):  # a hub id while offline
        score_texts(texts, _settings(tmp_path, "ProsusAI/finbert-not-here", "required"))

    scores, meta = score_texts(texts, _settings(tmp_path, missing, "optional"))
    assert meta["finbert"].startswith("unavailable: ") and "no such directory" in meta["finbert"]
    assert scores[["finbert_positive", "finbert_negative", "finbert_neutral", "finbert_score"]].isna().all().all()
    assert scores["vader_compound"].iloc[0] > 0 > scores["vader_compound"].iloc[1]

    scores, meta = score_texts(texts, _settings(tmp_path, missing, "off"))
    assert meta["finbert"] == "off" and meta["model"] is None and meta["scored"] == 0  # VADER rows were cached
    assert scores["finbert_score"].isna().all() and scores["vader_compound"].notna().all()
    assert calls == []


def test_a_fully_cached_run_needs_no_model(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FinBERT loads lazily: re-running over scored texts works offline without the weights."""
    settings = _settings(tmp_path, tiny_model)
    texts = pd.DataFrame({"text_id": ["a"], "text": [SENTENCES[0]]})
    first, _ = score_texts(texts, settings)

    def no_load(*args: object, **kwargs: object) -> FinBertScorer:
        raise AssertionError("the model must not be loaded when every text is cached")

    monkeypatch.setattr("bitpredict.features.sentiment._load_scorer", no_load)
    again, meta = score_texts(texts, settings)
    assert meta["finbert"] == "used" and meta["scored"] == 0
    pd.testing.assert_frame_equal(again, first)


# --------------------------------------------------------------------------------------------
# daily aggregation
# --------------------------------------------------------------------------------------------


def _scored(stamps: list[str], vader: list[float], finbert: list[float] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "published_at": pd.to_datetime(stamps, utc=True, format="ISO8601"),
            "vader_compound": vader,
            "finbert_score": finbert if finbert is not None else [np.nan] * len(vader),
        }
    )


def test_aggregate_daily_midnight_boundary_counts_and_shares() -> None:
    scored = _scored(
        [
            "2024-03-01 00:00:00",
            "2024-03-01 12:00:00",
            "2024-03-01 23:59:59.999",
            "2024-03-02 00:00:00",  # the next day, not the last instant of March 1
            "2024-03-04 09:00:00",
        ],
        [0.5, -0.5, 0.04, -0.05, 0.05],
        [0.2, 0.4, np.nan, -0.1, 0.3],
    )
    daily = aggregate_daily(scored, "published_at", "news")
    assert list(daily.columns) == ["timestamp", *daily_columns("news")]
    assert str(daily["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert list(daily["timestamp"]) == list(pd.to_datetime(["2024-03-01", "2024-03-02", "2024-03-04"], utc=True))
    day1, day2, day4 = (daily.iloc[i] for i in range(3))
    assert day1["news_count"] == 3 and day2["news_count"] == 1 and day4["news_count"] == 1
    assert day1["news_vader_mean"] == pytest.approx(0.04 / 3)
    assert day1["news_vader_std"] == pytest.approx(np.std([0.5, -0.5, 0.04]))
    assert day1["news_finbert_mean"] == pytest.approx(0.3) and day1["news_finbert_std"] == pytest.approx(0.1)
    assert day1["news_share_positive"] == pytest.approx(1 / 3) and day1["news_share_negative"] == pytest.approx(1 / 3)
    assert day2["news_share_negative"] == 1.0 and day2["news_vader_std"] == 0.0  # -0.05 is negative (inclusive)
    assert day4["news_share_positive"] == 1.0  # 0.05 is positive (inclusive)


def test_aggregate_daily_converts_other_time_zones_and_handles_no_texts() -> None:
    paris = pd.DataFrame(
        {"t": pd.to_datetime(["2024-03-02 00:30"]).tz_localize("Europe/Paris"), "vader_compound": [0.1]}
    )
    daily = aggregate_daily(paris, "t", "tweets")  # 23:30 UTC on March 1
    assert daily["timestamp"].iloc[0] == pd.Timestamp("2024-03-01", tz="UTC")
    assert daily["tweets_finbert_mean"].isna().all()  # no FinBERT column: NaN, not an error
    empty = aggregate_daily(_scored([], []), "published_at", "news")
    assert empty.empty and list(empty.columns) == ["timestamp", *daily_columns("news")]


MIDNIGHTS = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")


@st.composite
def _texts_around_midnights(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Texts within a second (down to the nanosecond) of a midnight, or anywhere in the 4 days."""
    n = draw(st.integers(0, 25))
    offsets = []
    for _ in range(n):
        midnight = draw(st.sampled_from(list(MIDNIGHTS[1:])))
        near = draw(st.integers(-1_000_000_000, 1_000_000_000))  # ns around a midnight
        anywhere = draw(st.integers(0, 4 * 86_400 * 10**9 - 1))
        offsets.append(
            (midnight + pd.Timedelta(near, "ns"))
            if draw(st.booleans())
            else MIDNIGHTS[0] + pd.Timedelta(anywhere, "ns")
        )
    vader = draw(st.lists(st.floats(-1, 1), min_size=n, max_size=n))
    finbert = draw(st.lists(st.one_of(st.none(), st.floats(-1, 1)), min_size=n, max_size=n))
    frame = pd.DataFrame(
        {
            "published_at": pd.Series(offsets, dtype="datetime64[ns, UTC]"),
            "vader_compound": pd.Series(vader, dtype="float64"),
            "finbert_score": pd.Series([np.nan if f is None else f for f in finbert], dtype="float64"),
        }
    )
    return frame, draw(st.sampled_from(list(MIDNIGHTS)))


@hyp_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_texts_around_midnights())
def test_daily_aggregates_have_no_look_ahead(case: tuple[pd.DataFrame, pd.Timestamp]) -> None:
    """Days ≤ t computed from every text equal those computed from only texts published before the end of t."""
    texts, day = case
    end_of_day = day + pd.Timedelta(days=1)
    everything = aggregate_daily(texts, "published_at", "news")
    known_then = aggregate_daily(texts[texts["published_at"] < end_of_day], "published_at", "news")
    past = everything[everything["timestamp"] <= day].reset_index(drop=True)
    pd.testing.assert_frame_equal(past, known_then.reset_index(drop=True), check_exact=False, atol=1e-12)
    assert (known_then["timestamp"] <= day).all()
    assert everything["news_count"].sum() == len(texts)


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------


def _write_raw(data_dir: Path) -> None:
    raw = data_dir / "raw"
    news = pd.DataFrame(
        {
            "source": ["CoinDesk", "CoinDesk", "CryptoNews"],
            "id": ["n1", "n2", "n3"],
            "published_at": pd.to_datetime(
                ["2024-05-01 08:00:00", "2024-05-01 23:59:59", "2024-05-02 00:00:00"], utc=True
            ),
            "title": ["Bitcoin surges to a record high", "Exchange hack sparks fear", "Bitcoin is flat"],
            "summary": ["Great gains for investors.", None, "Analysts say the market is steady."],
            "url": ["https://x/1", "https://x/2", "https://x/3"],
            "feed": ["rss", "rss", "files"],
        }
    )
    storage.write_parquet(news.iloc[:2], str(raw / "news_rss.parquet"))
    storage.write_parquet(news.iloc[2:].assign(subject=["bitcoin"]), str(raw / "news_files.parquet"))
    tweets = pd.DataFrame(
        {
            "id": ["t1", "t2"],
            "created_at": pd.to_datetime(["2024-05-02 10:00", "2024-05-03 11:00"], utc=True),
            "text": ["I love bitcoin, amazing rally!", "bitcoin crash, terrible"],
            "author_id": ["u1", "u2"],
            "lang": ["en", "en"],
            "retweet_count": [1, 2],
            "reply_count": [0, 0],
            "like_count": [5, 1],
            "quote_count": [0, 0],
            "author_followers": [10, 20],
        }
    )
    storage.write_parquet(tweets, str(raw / "tweets.parquet"))


def test_run_sentiment_end_to_end(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_finbert_calls(monkeypatch)
    settings = _settings(tmp_path, tiny_model)
    _write_raw(Path(settings.data_dir))

    meta = run_sentiment(settings)
    assert meta["finbert"] == "used" and meta["model"] == str(tiny_model)
    assert meta["news"] == 3 and meta["tweets"] == 2 and meta["scored"] == 5 and meta["cached"] == 0
    assert meta["tables"] == ["news_files", "news_rss", "tweets"] and meta["days"] == 3
    assert meta["first"] == "2024-05-01T08:00:00+00:00" and meta["last"] == "2024-05-03T11:00:00+00:00"
    assert json.loads(Path(settings.path("interim", "sentiment_meta.json")).read_text()) == meta

    scores = storage.read_parquet(settings.path("interim", "sentiment_scores.parquet"))
    assert len(scores) == 5 and scores["text_id"].is_unique
    assert {"table", "kind", "text_id", "timestamp", "vader_compound", "finbert_score"} <= set(scores.columns)
    assert scores[["vader_compound", "finbert_score"]].notna().all().all()
    assert set(scores.loc[scores["kind"] == "news", "table"]) == {"news_rss", "news_files"}

    daily = storage.read_parquet(settings.path("interim", "sentiment_daily.parquet"))
    assert list(daily.columns) == ["timestamp", *daily_columns("news"), *daily_columns("tweets")]
    assert list(daily["timestamp"]) == list(pd.to_datetime(["2024-05-01", "2024-05-02", "2024-05-03"], utc=True))
    assert daily["news_count"].tolist()[:2] == [2.0, 1.0] and np.isnan(daily["news_count"].iloc[2])
    assert np.isnan(daily["tweets_count"].iloc[0]) and daily["tweets_count"].tolist()[1:] == [1.0, 1.0]

    # A second run scores nothing: every text comes from the cache, outputs are unchanged.
    again = run_sentiment(settings)
    assert calls == [5] and again["scored"] == 0 and again["cached"] == 5
    pd.testing.assert_frame_equal(storage.read_parquet(settings.path("interim", "sentiment_daily.parquet")), daily)


def test_run_sentiment_without_raw_texts_writes_empty_outputs(tmp_path: Path) -> None:
    settings = _settings(tmp_path, tmp_path / "never-loaded", "required")
    meta = run_sentiment(settings)  # nothing to score: the model is not even needed
    assert meta["news"] == meta["tweets"] == meta["days"] == 0 and "no raw news or tweets" in meta["note"]
    daily = storage.read_parquet(settings.path("interim", "sentiment_daily.parquet"))
    assert daily.empty and "news_vader_mean" in daily.columns and "tweets_count" in daily.columns
    cache = storage.read_parquet(settings.path("interim", "sentiment_cache.parquet"))  # DVC declares it
    assert cache.empty and "text_hash" in cache.columns


def test_run_sentiment_required_model_missing_raises(tmp_path: Path) -> None:
    settings = _settings(tmp_path, tmp_path / "missing-model", "required")
    _write_raw(Path(settings.data_dir))
    with pytest.raises(SentimentModelError, match="BITPREDICT_SENTIMENT__FINBERT_MODEL"):
        run_sentiment(settings)
    assert not storage.exists(settings.path("interim", "sentiment_daily.parquet"))
    meta = run_sentiment(_settings(tmp_path, tmp_path / "missing-model", "optional"))
    assert meta["finbert"].startswith("unavailable:") and meta["news"] == 3


def test_a_hub_id_is_loaded_at_the_pinned_revision_not_at_main(
    scorer: FinBertScorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two commits of one hub repository in the local Hugging Face cache; ``main`` moved to the newer one. The
    scorer loads the pinned commit (its labels differ), and follows ``main`` only when no revision is given."""
    import huggingface_hub
    from transformers import AutoModelForSequenceClassification

    cache = tmp_path / "hub"
    repo = cache / "models--bitpredict--finbert-test"
    pinned, moved = "1" * 40, "2" * 40
    for revision, labels in ((pinned, {0: "positive", 1: "negative", 2: "neutral"}),
                             (moved, {0: "positive", 1: "negative", 2: "bearish"})):  # fmt: skip
        model = AutoModelForSequenceClassification.from_pretrained(scorer.model_id)
        model.config.id2label, model.config.label2id = labels, {v: k for k, v in labels.items()}
        model.save_pretrained(repo / "snapshots" / revision)
        scorer.tokenizer.save_pretrained(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(moved)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    loaded = FinBertScorer("bitpredict/finbert-test", device="cpu", revision=pinned)
    assert loaded.score(SENTENCES).shape == (len(SENTENCES), 4)
    with pytest.raises(SentimentModelError, match="neutral"):  # main's labels lack 'neutral'
        FinBertScorer("bitpredict/finbert-test", device="cpu")
