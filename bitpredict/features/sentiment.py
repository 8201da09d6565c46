"""The sentiment stage: score news and tweets with VADER and FinBERT, cache the scores, aggregate them per UTC day.

Two scorers, on purpose. VADER (a lexicon, microseconds per text) is always available and is tuned for social
media; FinBERT (ProsusAI/finbert, a BERT fine-tuned on financial news) reads headlines far better but needs a
model of ~440 MB and a forward pass per text. Settings decide how hard FinBERT is required
(``sentiment.finbert``): ``required`` fails the stage when the model cannot be loaded, ``optional`` falls back
to VADER alone and records why in ``sentiment_meta.json``, ``off`` never loads it.

The cache (``stage_table.SENTIMENT_CACHE``) makes a text cost one scoring, ever. Its key is
``(model, text_hash)``: ``text_hash`` is the SHA-256 of the exact UTF-8 text that was scored, ``model`` is the
FinBERT model id or directory *as configured* for FinBERT rows, and ``vader==<vaderSentiment version>`` for
VADER rows. One text therefore has one VADER row and one row per FinBERT model it was scored with; VADER rows
hold NaN in the ``finbert_*`` columns and FinBERT rows NaN in the ``vader_*`` columns. A different model id
(or a VADER upgrade) is a different key, so its scores are computed afresh and never mixed with the old ones.
FinBERT is loaded lazily, only when some text misses the cache, so a re-run over already-scored texts needs
neither the weights nor the network.

Daily aggregation keeps the merge stage's no-look-ahead contract: a text belongs to the UTC calendar day in
which it was published (the floor of its UTC timestamp), so day *t* sees only texts published before the end of
day *t*. Days with no text are absent here; the merge stage decides how to fill them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
from collections.abc import Sequence
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from bitpredict import storage
from bitpredict.config import Settings
from bitpredict.errors import BitPredictError
from bitpredict.pipeline.stage_table import (
    RAW,
    SENTIMENT_CACHE,
    SENTIMENT_DAILY,
    SENTIMENT_META,
    SENTIMENT_SCORES,
    data_path,
)

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

VADER_COLUMNS = ("vader_compound", "vader_pos", "vader_neg", "vader_neu")
FINBERT_COLUMNS = ("finbert_positive", "finbert_negative", "finbert_neutral", "finbert_score")
SCORE_COLUMNS = VADER_COLUMNS + FINBERT_COLUMNS
CACHE_KEY = ("model", "text_hash")
#: Texts scored between two cache writes (about a minute of FinBERT on a CPU, seconds on a GPU).
CHECKPOINT_TEXTS = 4096
#: The VADER convention (Hutto & Gilbert): compound >= 0.05 is positive, <= -0.05 negative, between is neutral.
VADER_POSITIVE = 0.05
VADER_NEGATIVE = -0.05
DAILY_STATS = ("vader_mean", "vader_std", "finbert_mean", "finbert_std", "count", "share_positive", "share_negative")
TEXT_KINDS = ("news", "tweets")
_FINBERT_LABELS = ("positive", "negative", "neutral")


class SentimentModelError(BitPredictError, RuntimeError):
    """FinBERT cannot be loaded; the message says how to provide it. ``reason`` is the short cause alone."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def _model_error(model: str, reason: str) -> SentimentModelError:
    """The error an operator can act on: what failed, and the three ways to make the stage run."""
    message = (
        f"FinBERT model {model!r} cannot be loaded: {reason}\n"
        "Provide it in one of these ways:\n"
        "  - download it once into a local directory (e.g. `hf download ProsusAI/finbert --local-dir models/finbert`)"
        " and set BITPREDICT_SENTIMENT__FINBERT_MODEL=<that directory> (or sentiment.finbert_model in params.yaml);\n"
        "  - for a hub id, allow network access to huggingface.co or pre-fill the Hugging Face cache (HF_HOME), "
        "and unset HF_HUB_OFFLINE;\n"
        "  - or set BITPREDICT_SENTIMENT__FINBERT=optional to score with VADER alone (recorded in sentiment_meta.json)."
    )
    return SentimentModelError(message, reason=reason)


def _vader_version() -> str:
    try:
        return version("vaderSentiment")
    except PackageNotFoundError:  # pragma: no cover - installed from a source tree
        return "unknown"


#: Cache key of VADER rows; versioned so a lexicon upgrade re-scores instead of mixing two lexicons.
VADER_MODEL = f"vader=={_vader_version()}"


def _as_text(value: Any) -> str:
    """A scorer's input: missing values score as the empty string (neutral), never crash a batch."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return str(value)


def text_hash(text: str) -> str:
    """SHA-256 of the exact text (no normalisation: a changed character is a different text)."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


# --------------------------------------------------------------------------------------------
# VADER
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _vader_analyzer() -> Any:
    # Building the analyzer parses the lexicon file; once per process is enough.
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_scores(texts: Sequence[str]) -> pd.DataFrame:
    """VADER polarity of each text: one row per text, same order, columns ``vader_compound/pos/neg/neu``."""
    analyzer = _vader_analyzer()
    rows = [analyzer.polarity_scores(_as_text(t)) for t in texts]
    return pd.DataFrame(
        {
            "vader_compound": [r["compound"] for r in rows],
            "vader_pos": [r["pos"] for r in rows],
            "vader_neg": [r["neg"] for r in rows],
            "vader_neu": [r["neu"] for r in rows],
        },
        dtype="float64",
    )


# --------------------------------------------------------------------------------------------
# FinBERT
# --------------------------------------------------------------------------------------------


def _resolve_device(device: str, model: str) -> str:
    """``auto`` = the GPU when torch sees one; an explicit ``cuda`` without one is an error, not a silent CPU run."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise _model_error(model, f"sentiment.device={device!r} but torch sees no CUDA device")
    return device


def _max_length(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> int:
    """Longest input the model accepts: the tokenizer's limit, capped by the position embeddings.

    A tokenizer saved without ``model_max_length`` reports a huge sentinel (1e30); BERT's position table is
    the real bound, and going past it fails with an index error deep inside the model.
    """
    limits = [
        n
        for n in (getattr(tokenizer, "model_max_length", None), getattr(model.config, "max_position_embeddings", None))
        if isinstance(n, int) and 0 < n < 1_000_000
    ]
    return min(limits) if limits else 512


class FinBertScorer:
    """A FinBERT-style three-class classifier, loaded once and run in batches.

    Any sequence-classification model whose ``id2label`` names ``positive``, ``negative`` and ``neutral``
    (in any case and order) works, so a fine-tuned successor or a tiny test model is a drop-in.
    """

    def __init__(self, model: str, batch_size: int = 32, device: str = "auto", revision: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_id = model
        self.batch_size = batch_size
        try:
            import torch  # noqa: F401  (transformers' BERT runs on torch; fail here with a clear message)
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise _model_error(model, f"transformers/torch are not importable ({exc})") from exc
        self.device = _resolve_device(device, model)
        source = str(Path(model).expanduser()) if model.startswith("~") else model
        if _looks_local(source) and not Path(source).is_dir():
            raise _model_error(model, f"no such directory {source!r}")
        try:
            self.tokenizer, self.model = _from_pretrained(
                source, AutoTokenizer, AutoModelForSequenceClassification, revision=revision
            )
        except Exception as exc:  # OSError, ValueError, HF hub errors…: all mean "cannot load", say which
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _model_error(model, f"{type(exc).__name__}: {first_line}") from exc
        self.model.to(self.device)
        self.model.eval()  # no dropout: scores must be deterministic
        labels = {str(name).lower(): int(idx) for idx, name in self.model.config.id2label.items()}
        missing = [name for name in _FINBERT_LABELS if name not in labels]
        if missing:
            raise _model_error(
                model, f"its labels {sorted(labels)} lack {missing} (a positive/negative/neutral classifier is needed)"
            )
        self._columns = [labels[name] for name in _FINBERT_LABELS]
        self.max_length = _max_length(self.tokenizer, self.model)
        log.info(
            "finbert loaded",
            extra={"model": model, "device": self.device, "batch_size": batch_size, "max_length": self.max_length},
        )

    def score(self, texts: Sequence[str]) -> pd.DataFrame:
        """Class probabilities per text (same order); ``finbert_score`` = P(positive) − P(negative) in [−1, 1].

        Texts are batched by length (longest first) so a batch pads little; the attention mask makes the
        padding invisible to the model, so a text scores the same alone or in any batch.
        """
        import torch

        items = [_as_text(t) for t in texts]
        probs = np.zeros((len(items), len(_FINBERT_LABELS)), dtype="float64")
        order = sorted(range(len(items)), key=lambda i: len(items[i]), reverse=True)
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                encoded = self.tokenizer(
                    [items[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                encoded = {k: v.to(self.device) for k, v in encoded.items()}
                logits = self.model(**encoded).logits.float()
                batch = torch.softmax(logits, dim=-1).cpu().numpy().astype("float64")
                probs[idx] = batch[:, self._columns]
        out = pd.DataFrame(probs, columns=["finbert_positive", "finbert_negative", "finbert_neutral"])
        out["finbert_score"] = out["finbert_positive"] - out["finbert_negative"]
        return out


def _from_pretrained(source: str, tokenizer_cls: Any, model_cls: Any, revision: str | None = None) -> tuple[Any, Any]:
    """Load from a directory or the local Hugging Face cache; go to the hub only when it answers.

    Without the probe, an unreachable hub costs about 50 s of retries before the helpful error. A hub id is loaded
    at ``revision`` (a commit of the model's repository, ``sentiment.finbert_revision``): the weights that score
    the news do not change under a run because someone pushed to the model's ``main``.
    """
    if _looks_local(source):
        return tokenizer_cls.from_pretrained(source), model_cls.from_pretrained(source)
    pinned = {"revision": revision} if revision else {}
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return tokenizer_cls.from_pretrained(source, **pinned), model_cls.from_pretrained(source, **pinned)
    try:
        return (
            tokenizer_cls.from_pretrained(source, local_files_only=True, **pinned),
            model_cls.from_pretrained(source, local_files_only=True, **pinned),
        )
    except OSError:
        pass  # not cached yet: download it
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname or "", endpoint.port or 443), timeout=5).close()
    except OSError as exc:
        raise OSError(f"not in the local cache and {endpoint.hostname} is unreachable ({exc})") from exc
    return tokenizer_cls.from_pretrained(source, **pinned), model_cls.from_pretrained(source, **pinned)


def _looks_local(model: str) -> bool:
    """A path rather than a hub id (``org/name``): absolute, relative with a dot, or more than one slash."""
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1


@lru_cache(maxsize=1)
def _load_scorer(model: str, batch_size: int, device: str, revision: str | None = None) -> FinBertScorer:
    # One load per process even when several stages (or tests) score; a failed load is not cached.
    return FinBertScorer(model, batch_size=batch_size, device=device, revision=revision)


# --------------------------------------------------------------------------------------------
# scoring with the cache
# --------------------------------------------------------------------------------------------


def cache_uri(settings: Settings) -> str:
    return data_path(settings, SENTIMENT_CACHE)


def _read_cache(uri: str, models: Sequence[str], hashes: set[str]) -> pd.DataFrame:
    """Cached rows of these models for these texts (the cache only grows, so read once per call)."""
    if not hashes or not storage.exists(uri):
        return pd.DataFrame(columns=[*CACHE_KEY, *SCORE_COLUMNS])
    cache = storage.read_parquet(uri)
    return cache[cache["model"].isin(list(models)) & cache["text_hash"].isin(hashes)]


def _store(uri: str, rows: pd.DataFrame) -> None:
    rows = rows.reindex(columns=[*CACHE_KEY, *SCORE_COLUMNS]).astype(dict.fromkeys(SCORE_COLUMNS, "float64"))
    result = storage.upsert(uri, rows, key=list(CACHE_KEY))
    log.info("sentiment cache updated", extra={"path": uri, "new": result.new, "total": result.total})


def score_texts(texts: pd.DataFrame, settings: Settings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Scores of ``texts`` (columns ``text_id``, ``text``), same rows and order, through the cache.

    Returns ``text_id`` + ``vader_*`` + ``finbert_*`` columns (``finbert_*`` NaN when FinBERT is off or
    unavailable-optional) and metadata: ``finbert`` ("used" | "off" | "unavailable: <reason>"), ``model``,
    ``cached`` (distinct texts whose scores all came from the cache) and ``scored`` (distinct texts that at
    least one scorer in use had to score; a FinBERT that could not load is not in use), ``device``.
    Raises SentimentModelError when FinBERT is required and cannot be loaded.
    """
    cfg = settings.sentiment
    strings = [_as_text(t) for t in texts["text"]] if len(texts) else []
    hashes = [text_hash(t) for t in strings]
    first_text = dict(zip(hashes, strings, strict=True))  # distinct texts: duplicates score once
    unique = set(first_text)
    use_finbert = cfg.finbert != "off"
    models = [VADER_MODEL, cfg.finbert_model] if use_finbert else [VADER_MODEL]
    uri = cache_uri(settings)
    cached = _read_cache(uri, models, unique)

    status = "used" if use_finbert else "off"
    device: str | None = None
    per_model: dict[str, pd.DataFrame] = {}
    missed: set[str] = set()
    for model in models:
        have = cached[cached["model"] == model].set_index("text_hash").drop(columns="model")
        misses = sorted(unique - set(have.index))
        parts = [have] if len(have) else []
        if misses and model != VADER_MODEL:
            try:
                scorer = _load_scorer(model, cfg.batch_size, cfg.device, cfg.finbert_revision)
            except SentimentModelError as exc:
                if cfg.finbert == "required":
                    raise
                status = f"unavailable: {exc.reason}"
                log.warning("finbert unavailable, scoring with VADER alone", extra={"reason": exc.reason})
                continue
            device = scorer.device
        # Checkpoint into the cache every CHECKPOINT_TEXTS texts: a backfill that dies after hours of FinBERT
        # resumes where it stopped instead of starting over.
        for start in range(0, len(misses), CHECKPOINT_TEXTS):
            chunk = misses[start : start + CHECKPOINT_TEXTS]
            batch = [first_text[h] for h in chunk]
            fresh = vader_scores(batch) if model == VADER_MODEL else scorer.score(batch)
            fresh.index = pd.Index(chunk, name="text_hash")
            _store(uri, fresh.reset_index().assign(model=model))
            parts.append(fresh)
            missed.update(chunk)
        per_model[model] = pd.concat(parts) if len(parts) > 1 else (parts[0] if parts else have)

    out = pd.DataFrame({"text_id": texts["text_id"].to_numpy() if len(texts) else []})
    for model, columns in ((VADER_MODEL, VADER_COLUMNS), (cfg.finbert_model, FINBERT_COLUMNS)):
        table = per_model.get(model) if (model == VADER_MODEL or status == "used") else None
        for column in columns:
            values = table[column].reindex(hashes).to_numpy(dtype="float64") if table is not None else np.nan
            out[column] = values if len(out) else pd.Series(dtype="float64")
    meta: dict[str, Any] = {
        "finbert": status,
        "model": cfg.finbert_model if use_finbert else None,
        "vader": VADER_MODEL,
        "device": device,
        "texts": len(strings),
        "unique_texts": len(unique),
        "cached": len(unique) - len(missed),
        "scored": len(missed),
    }
    log.info("texts scored", extra=meta)
    return out, meta


# --------------------------------------------------------------------------------------------
# daily aggregation
# --------------------------------------------------------------------------------------------


def _as_utc(stamps: pd.Series) -> pd.Series:
    """Timestamps in UTC (naive ones are taken as UTC, the convention of every raw table)."""
    if not pd.api.types.is_datetime64_any_dtype(stamps):
        stamps = pd.to_datetime(stamps, utc=True, errors="coerce")
    elif stamps.dt.tz is None:
        stamps = stamps.dt.tz_localize("UTC")
    else:
        stamps = stamps.dt.tz_convert("UTC")
    return stamps.astype("datetime64[ns, UTC]")


def daily_columns(prefix: str) -> list[str]:
    return [f"{prefix}_{stat}" for stat in DAILY_STATS]


def aggregate_daily(scored: pd.DataFrame, time_column: str, prefix: str) -> pd.DataFrame:
    """One row per UTC day that has texts: ``timestamp`` (midnight UTC) and the ``{prefix}_*`` statistics.

    Day *t* holds the texts published in [t 00:00, t+1 00:00) UTC, i.e. before the end of day *t*: 23:59:59.999
    is day *t*, 00:00:00 of the next day is day *t+1*. Statistics: mean and population std (ddof=0, so a
    single-text day has spread 0 rather than NaN) of ``vader_compound`` and ``finbert_score`` (NaN scores
    skipped; all-NaN → NaN), ``count``, and the shares of texts with ``vader_compound`` >= 0.05 / <= −0.05
    (VADER's own positive/negative thresholds). Every statistic is float64 so the schema survives outer joins.
    """
    columns = daily_columns(prefix)
    day = _as_utc(scored[time_column]).dt.floor("D") if len(scored) else pd.Series(dtype="datetime64[ns, UTC]")
    vader = scored["vader_compound"].astype("float64") if len(scored) else pd.Series(dtype="float64")
    finbert = (
        scored["finbert_score"].astype("float64")
        if "finbert_score" in scored.columns
        else pd.Series(np.nan, index=scored.index, dtype="float64")
    )
    frame = pd.DataFrame({"day": day, "vader": vader, "finbert": finbert}).dropna(subset=["day"])
    if frame.empty:
        empty = {c: pd.Series(dtype="float64") for c in columns}
        return pd.DataFrame({"timestamp": pd.Series(dtype="datetime64[ns, UTC]"), **empty})
    groups = frame.groupby("day", sort=True)
    out = pd.DataFrame(
        {
            f"{prefix}_vader_mean": groups["vader"].mean(),
            f"{prefix}_vader_std": groups["vader"].std(ddof=0),
            f"{prefix}_finbert_mean": groups["finbert"].mean(),
            f"{prefix}_finbert_std": groups["finbert"].std(ddof=0),
            f"{prefix}_count": groups.size(),
            f"{prefix}_share_positive": (frame["vader"] >= VADER_POSITIVE).groupby(frame["day"]).mean(),
            f"{prefix}_share_negative": (frame["vader"] <= VADER_NEGATIVE).groupby(frame["day"]).mean(),
        }
    ).astype("float64")
    out.index.name = "timestamp"
    out = out.reset_index()
    out["timestamp"] = out["timestamp"].astype("datetime64[ns, UTC]")
    return out[["timestamp", *columns]]


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------


def _news_table_uris(settings: Settings) -> list[str]:
    """Every ``raw/news_*.parquet`` (news_rss, news_files, any future feed), local or on GCS."""
    raw = data_path(settings, RAW)
    if storage.is_gcs(raw):
        bucket, _, prefix = raw[len(storage.GCS_SCHEME) :].partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        blobs = storage.gcs_client().list_blobs(bucket, prefix=prefix + "news_")
        names = [b.name for b in blobs if b.name.endswith(".parquet") and "/" not in b.name[len(prefix) :]]
        return sorted(f"{storage.GCS_SCHEME}{bucket}/{name}" for name in names)
    directory = Path(raw)
    return sorted(str(p) for p in directory.glob("news_*.parquet")) if directory.is_dir() else []


def _table_name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1].removesuffix(".parquet")


def news_texts(news: pd.DataFrame, table: str) -> pd.DataFrame:
    """Scorable rows of a news table: text = title + ". " + summary (the title alone when there is none)."""
    title = news["title"].map(_as_text)
    summary = news["summary"].map(_as_text) if "summary" in news.columns else pd.Series("", index=news.index)
    text = [f"{t}. {s}" if s else t for t, s in zip(title, summary, strict=True)]
    return pd.DataFrame(
        {
            "table": table,
            "kind": "news",
            "text_id": [f"{table}:{src}:{i}" for src, i in zip(news["source"], news["id"], strict=True)],
            "timestamp": _as_utc(news["published_at"]) if len(news) else pd.Series(dtype="datetime64[ns, UTC]"),
            "text": text,
        }
    )


def tweet_texts(tweets: pd.DataFrame, table: str = "tweets") -> pd.DataFrame:
    """Scorable rows of the tweets table: text = the tweet's text."""
    return pd.DataFrame(
        {
            "table": table,
            "kind": "tweets",
            "text_id": [f"{table}:{i}" for i in tweets["id"]],
            "timestamp": _as_utc(tweets["created_at"]) if len(tweets) else pd.Series(dtype="datetime64[ns, UTC]"),
            "text": tweets["text"].map(_as_text),
        }
    )


def load_texts(settings: Settings) -> tuple[pd.DataFrame, list[str]]:
    """All news and tweets in raw/ as (table, kind, text_id, timestamp, text), and the tables read."""
    frames: list[pd.DataFrame] = []
    tables: list[str] = []
    for uri in _news_table_uris(settings):
        table = _table_name(uri)
        frames.append(news_texts(storage.read_parquet(uri), table))
        tables.append(table)
    tweets_uri = storage.join(data_path(settings, RAW), "tweets.parquet")
    if storage.exists(tweets_uri):
        frames.append(tweet_texts(storage.read_parquet(tweets_uri)))
        tables.append("tweets")
    columns = ["table", "kind", "text_id", "timestamp", "text"]
    frames = [f for f in frames if len(f)]
    if not frames:
        empty = pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
        empty["timestamp"] = pd.Series(dtype="datetime64[ns, UTC]")
        return empty, tables
    texts = pd.concat(frames, ignore_index=True)[columns]
    undated = texts["timestamp"].isna()
    if undated.any():  # cannot be assigned to a day; raw validation should have quarantined them
        log.warning("texts without a timestamp skipped", extra={"rows": int(undated.sum())})
        texts = texts[~undated].reset_index(drop=True)
    return texts, tables


def run_sentiment(settings: Settings) -> dict[str, Any]:
    """Score every raw news and tweet text, write scores, daily aggregates and metadata; return the metadata.

    Writes the scores (``stage_table.SENTIMENT_SCORES``, one row per text), the daily aggregates
    (``SENTIMENT_DAILY``: ``news_*`` and ``tweets_*`` outer-joined on ``timestamp``) and ``SENTIMENT_META``.
    With no raw text at all the outputs are written empty (so the merge stage still runs, with the neutral
    default) and the metadata says so.
    """
    texts, tables = load_texts(settings)
    if texts.empty:
        log.warning(
            "no news or tweets to score: writing empty sentiment outputs",
            extra={"raw_dir": data_path(settings, RAW), "expected": "raw/news_*.parquet, raw/tweets.parquet"},
        )
    scores, meta = score_texts(texts[["text_id", "text"]], settings)
    table = pd.concat(
        [texts[["table", "kind", "text_id", "timestamp"]].reset_index(drop=True), scores.drop(columns="text_id")],
        axis=1,
    )
    table["timestamp"] = table["timestamp"].astype("datetime64[ns, UTC]")
    table = table.sort_values(["timestamp", "table", "text_id"], kind="mergesort").reset_index(drop=True)

    daily = None
    for kind in TEXT_KINDS:
        part = aggregate_daily(table[table["kind"] == kind], "timestamp", kind)
        daily = part if daily is None else daily.merge(part, on="timestamp", how="outer")
    assert daily is not None
    daily = daily.sort_values("timestamp").reset_index(drop=True)

    storage.write_parquet(table, data_path(settings, SENTIMENT_SCORES))
    storage.write_parquet(daily, data_path(settings, SENTIMENT_DAILY))
    if not storage.exists(cache_uri(settings)):  # the cache is a declared output (DVC) even before any text
        _store(cache_uri(settings), pd.DataFrame(columns=[*CACHE_KEY, *SCORE_COLUMNS]))
    counts = table["kind"].value_counts()
    meta.update(
        {
            "tables": tables,
            "news": int(counts.get("news", 0)),
            "tweets": int(counts.get("tweets", 0)),
            "days": len(daily),
            "first": table["timestamp"].min().isoformat() if len(table) else None,
            "last": table["timestamp"].max().isoformat() if len(table) else None,
            "note": None if len(table) else "no raw news or tweets found: outputs are empty",
        }
    )
    storage.write_text(data_path(settings, SENTIMENT_META), json.dumps(meta, indent=2) + "\n")
    log.info("sentiment done", extra=meta)
    return meta
