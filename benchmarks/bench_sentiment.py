"""Throughput of the sentiment scorers (texts/second) on real crypto headlines.

Why: the sentiment stage scores every new headline and tweet; this says how long a backfill takes and which
batch size to set (``sentiment.batch_size``). It times the code the pipeline runs (``vader_scores`` and
``FinBertScorer.score``), on headlines from ``crypto_news_2021_2022.csv`` in the shared data folder
(``../shared/data`` beside the repo, or ``BITPREDICT_SHARED_DATA``).

FinBERT: without ``--model`` a randomly initialised model is built locally, the same way the tests build theirs
(``tests/tiny_bert.py``): ``--arch tiny`` (default) measures the pipeline's overhead (tokenising, batching,
padding) with a negligible network; ``--arch base`` has ProsusAI/finbert's exact shape (BERT-base, 110M
parameters, 512 positions), so its speed is FinBERT's speed on this machine, whatever the weights. With
``--model`` (a local directory or a cached hub id) the real model is timed. Nothing is downloaded.

    .venv/bin/python benchmarks/bench_sentiment.py
    .venv/bin/python benchmarks/bench_sentiment.py --arch base --limit 512 --batch-sizes 8,32
    .venv/bin/python benchmarks/bench_sentiment.py --model models/finbert --text news
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: a benchmark never downloads

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # bitpredict from the source tree, and the tests' model builder

import pandas as pd  # noqa: E402

from bitpredict.features.sentiment import FinBertScorer, vader_scores  # noqa: E402
from tests.tiny_bert import build_tiny_bert  # noqa: E402

NEWS_FILE = "crypto_news_2021_2022.csv"


def shared_data_dir() -> Path:
    return Path(os.environ.get("BITPREDICT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def load_texts(kind: str, limit: int | None) -> list[str]:
    """Headlines (``title``) or the pipeline's news text (title + ". " + lead), in file order."""
    path = shared_data_dir() / NEWS_FILE
    if not path.exists():
        sys.exit(f"{path} not found (set BITPREDICT_SHARED_DATA to the folder that holds {NEWS_FILE})")
    news = pd.read_csv(path, sep=";")
    news = news[news["title"].notna()]
    if kind == "title":
        texts = news["title"].astype(str).tolist()
    else:
        lead = news["text"].fillna("").astype(str)
        texts = [f"{t}. {s}" if s else t for t, s in zip(news["title"].astype(str), lead, strict=True)]
    return texts[:limit] if limit else texts


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` runs (the least disturbed by other work on the machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def token_stats(scorer: FinBertScorer, texts: Sequence[str]) -> tuple[float, int]:
    """Mean tokens per text as scored (after truncation), and how many texts truncation cuts."""
    lengths = [len(ids) for ids in scorer.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]]
    cut = sum(n > scorer.max_length for n in lengths)
    return sum(min(n, scorer.max_length) for n in lengths) / max(len(lengths), 1), cut


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="FinBERT directory or cached hub id (default: build a random model)")
    parser.add_argument("--arch", choices=["tiny", "base"], default="tiny", help="shape of the built model")
    parser.add_argument("--batch-sizes", default="32", help="comma-separated FinBERT batch sizes (default: 32)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--text", choices=["title", "news"], default="title", help="headline, or title + lead")
    parser.add_argument("--limit", type=int, help="score only the first N texts (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the best is reported")
    args = parser.parse_args(argv)

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the load/save progress bars would interleave with the figures
    texts = load_texts(args.text, args.limit)
    what = "headlines" if args.text == "title" else "news texts (title + lead)"
    print(f"texts: {len(texts)} {what} from {NEWS_FILE}, mean {sum(map(len, texts)) / len(texts):.0f} chars")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"torch threads: {torch.get_num_threads()}, cuda available: {torch.cuda.is_available()}")

    vader_s = timed(lambda: vader_scores(texts), args.repeats)
    print(f"VADER    : {len(texts) / vader_s:10.1f} texts/s  ({vader_s:.2f} s for {len(texts)})")

    with tempfile.TemporaryDirectory(prefix="bench_finbert_") as tmp:
        if args.model:
            model, label = args.model, args.model
        else:
            positions = 512 if args.arch == "base" else 64
            vocab = 30_522 if args.arch == "base" else 2_000  # BERT's vocabulary size; a headline vocabulary
            built = build_tiny_bert(tmp, texts, vocab_size=vocab, max_position_embeddings=positions, arch=args.arch)
            model = str(built)
            label = f"random {args.arch} BERT ({positions} positions), built from tests/tiny_bert.py"
        start = time.perf_counter()
        scorer = FinBertScorer(model, batch_size=1, device=args.device)
        load_s = time.perf_counter() - start
        params = sum(p.numel() for p in scorer.model.parameters())
        mean_tokens, cut = token_stats(scorer, texts)
        print(f"FinBERT  : {label}")
        print(
            f"           {params / 1e6:.2f}M parameters, max_length {scorer.max_length}, "
            f"{mean_tokens:.1f} tokens/text, {cut} truncated, load {load_s:.2f} s, device {scorer.device}"
        )
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            scorer.batch_size = batch_size
            scorer.score(texts[: batch_size * 2])  # warm-up: first-call allocations and kernel selection
            seconds = timed(lambda: scorer.score(texts), args.repeats)
            print(
                f"FinBERT  : {len(texts) / seconds:10.1f} texts/s  batch_size={batch_size:<4} "
                f"device={scorer.device}  ({seconds:.2f} s for {len(texts)})"
            )


if __name__ == "__main__":
    main()
