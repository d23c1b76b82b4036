"""A tiny BERT written from scratch for the transformer tests: no download, seconds to train.

The vocabulary is every character of the bundled seed corpus plus BERT's special tokens, so
Chinese text tokenizes into known characters, and anything else (runes, most Latin words)
into [UNK].
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


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
