"""A tiny BERT written from scratch for the transformer tests: no download, seconds to train.

The vocabulary is every character of the bundled seed corpus plus BERT's special tokens, so
Chinese text tokenizes into known characters, and anything else (runes, most Latin words)
into [UNK].
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _seed_texts() -> list[str]:
    from kesheng.training.config import bundled_seed_corpus

    return [json.loads(line)["text"] for line in Path(bundled_seed_corpus()).read_text(encoding="utf-8").splitlines() if line.strip()]


SEED_TEXTS = _seed_texts()


def write_tiny_bert(folder: Path, texts: list[str], layers: int = 2, hidden: int = 32) -> Path:
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for t in texts for c in t.lower() if not c.isspace()})
    vocab = SPECIALS + [c for c in chars if c not in SPECIALS] + ["等了", "客服", "##了"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True, handle_chinese_chars=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizerFast", "do_lower_case": True}), encoding="utf-8")
    return folder


def tiny_params(base: Path, **changes):
    """Architecture of the tiny test model: short windows so that long-text handling is exercised."""
    from kesheng.models.transformer import TransformerParams

    return TransformerParams(**{"base_model": str(base), "max_length": 48, "window_overlap": 8, "max_windows": 4, **changes})


def tiny_args(**changes):
    """Fine-tuning arguments that train the tiny model in seconds."""
    from kesheng.training.fine_tune import FineTuneArgs

    settings = dict(epochs=2, patience=1, batch_size=32, train_max_length=48, num_threads=2, learning_rate=1e-3, head_learning_rate=3e-3)
    return FineTuneArgs(**{**settings, **changes})
