"""A tiny, randomly initialised FinBERT look-alike, built locally in well under a second.

Why: the sentiment code must be exercised through the real transformers path (AutoTokenizer,
AutoModelForSequenceClassification, config id2label, truncation, padding) without downloading
ProsusAI/finbert. The model has FinBERT's label layout ({0: positive, 1: negative, 2: neutral}) and a
real WordPiece vocabulary file, so tokens are not all [UNK]; its scores are meaningless but deterministic.
The benchmark builds the same model (``arch="base"`` gives FinBERT's BERT-base shape, random weights).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
FINBERT_ID2LABEL = {0: "positive", 1: "negative", 2: "neutral"}
_BASE_TEXT = (
    "bitcoin btc crypto price market rally surges soars jumps gains record high bull buy adoption approval etf "
    "crash falls plunges drops slumps losses low bear sell hack ban fraud lawsuit liquidation fear "
    "stable steady flat unchanged report says announces update week day year analysts investors traders "
    "the a an and or of to in on for with as at by from is are was be it its this that after over under "
    "up down new more less than about amid ahead despite ethereum usd dollar exchange fed rates inflation"
)
#: Words every tiny vocabulary has, so headlines are not all [UNK] even without sample texts.
BASE_WORDS = tuple(_BASE_TEXT.split())
# Lower-case, then words and single punctuation marks: close enough to BERT's pre-tokenizer for a vocabulary.
_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")

#: Architectures: "tiny" for tests (about 30k parameters), "base" = BERT-base, FinBERT's shape (110M).
ARCHS = {
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}


_PIECES = [*string.ascii_lowercase, *string.digits]


def vocabulary(texts: Iterable[str] = (), size: int = 400) -> list[str]:
    """``size`` WordPiece entries: special tokens, single characters and ``##`` continuations, then BASE_WORDS
    and the most frequent words of ``texts``; ``[unusedN]`` fills any rest, as in BERT's own vocabulary.

    The character pieces let any out-of-vocabulary word split into sub-words instead of one [UNK], so token
    counts (and the benchmark's speed) resemble a real BERT's.
    """
    words = [*SPECIAL_TOKENS, *_PIECES, *(f"##{c}" for c in _PIECES)]
    seen = set(words)
    counts = Counter(tok for text in texts for tok in _WORD.findall(text.lower()))
    for word in [*BASE_WORDS, *(w for w, _ in counts.most_common())]:
        if len(words) >= size:
            break
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words + [f"[unused{i}]" for i in range(size - len(words))]


def build_tiny_bert(
    directory: str | Path,
    texts: Iterable[str] = (),
    *,
    vocab_size: int = 400,
    max_position_embeddings: int = 64,
    arch: str = "tiny",
    seed: int = 0,
) -> Path:
    """Save a three-label BERT classifier and its tokenizer into ``directory``; return the directory.

    ``initializer_range`` is larger than BERT's 0.02 so the random model gives clearly non-uniform,
    input-dependent probabilities (tests that compare batched and single scores then compare something).
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    words = vocabulary(texts, vocab_size)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(words) + "\n", encoding="utf-8")
    # transformers 5: BertTokenizer(vocab_file=...) is ignored (all [UNK]); vocab= takes the path or a dict.
    tokenizer = BertTokenizer(vocab=str(vocab_file), model_max_length=max_position_embeddings)
    config = BertConfig(
        vocab_size=len(words),
        max_position_embeddings=max_position_embeddings,
        num_labels=len(FINBERT_ID2LABEL),
        id2label=dict(FINBERT_ID2LABEL),
        label2id={v: k for k, v in FINBERT_ID2LABEL.items()},
        initializer_range=0.02 if arch == "base" else 0.5,
        **ARCHS[arch],
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
