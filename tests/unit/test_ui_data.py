"""The UI's headlines: the scores table keeps only ids and scores, so the words come from the raw tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bitpredict import storage
from bitpredict.config import get_settings
from bitpredict.features.sentiment import news_texts
from bitpredict.pipeline.stage_table import RAW, data_path
from ui import data


def test_headlines_carry_the_words_of_their_raw_rows_newest_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BITPREDICT_DATA_DIR", str(tmp_path / "data"))
    settings = get_settings()
    news = pd.DataFrame(
        {
            "source": ["Wire", "Wire", "Desk"],
            "id": ["a", "b", "c"],
            "published_at": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 09:00", "2024-01-03 08:00"], utc=True),
            "title": ["Old news", "Middle news", "Gone later"],
            "summary": ["", "with a summary", ""],
        }
    )
    texts = news_texts(news, "news_rss")
    scores = texts[["table", "kind", "text_id", "timestamp"]].assign(vader_compound=[0.1, 0.2, 0.3])
    # the newest item's raw row is gone (e.g. a raw table rebuilt): it keeps its score, with no words
    storage.write_parquet(news.iloc[:2], storage.join(data_path(settings, RAW), "news_rss.parquet"))

    shown = data.headlines(settings, scores, count=3)

    assert list(shown["vader_compound"]) == [0.3, 0.2, 0.1]
    assert pd.isna(shown.loc[0, "text"])
    assert shown.loc[1, "text"] == "Middle news. with a summary" and shown.loc[1, "source"] == "Wire"
    assert shown.loc[2, "text"] == "Old news"
    assert len(data.headlines(settings, scores, count=2)) == 2


def test_headlines_without_raw_tables_are_the_scores_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BITPREDICT_DATA_DIR", str(tmp_path / "data"))
    scores = pd.DataFrame(
        {"table": ["tweets"], "kind": ["tweets"], "text_id": ["tweets:1"],
         "timestamp": pd.to_datetime(["2024-01-01"], utc=True), "vader_compound": [0.5]}
    )  # fmt: skip
    shown = data.headlines(get_settings(), scores)
    assert list(shown.columns) == list(scores.columns) and shown["vader_compound"].tolist() == [0.5]
