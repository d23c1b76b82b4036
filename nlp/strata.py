"""Kinds of comment on which a tagger's error rates differ: a ticket thread against a single
comment, and length.

A share corrected with one true- and false-positive rate per tag assumes the survey's comments
are like the labeled ones the rates were measured on. They differ by kind: on multi-turn complaint
threads the bundled model flags `opacity` in 13% of the comments that are not about it, on single
reviews in 1%, and longer comments hold more words that look like any tag. Measuring the rates per
kind and correcting each kind's share separately needs only what every row shows (its line
breaks and length), so the correction follows the survey's own mix of kinds
(`benchmarks/share_strata.py` measures how much that matters).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Sequence

import numpy as np

__all__ = ["LENGTH_EDGES", "comment_strata", "comment_stratum", "stratum_label"]

# Upper ends (characters) of the length bands: short survey answers, a sentence, a paragraph, a thread.
LENGTH_EDGES = (20, 40, 80, 160)


def _key(multi_turn: bool, band: int) -> str:
    return f"{'multi' if multi_turn else 'single'}:{band}"


def comment_stratum(text: str, length_edges: Sequence[int] = LENGTH_EDGES) -> str:
    """"single:B" or "multi:B" (B: the length band, 0 for <= length_edges[0] characters); a text
    with a line break inside is a multi-turn thread (ticket exports join turns with newlines)."""
    stripped = text.strip()
    return _key("\n" in stripped, bisect_left(list(length_edges), len(stripped)))


def comment_strata(texts, length_edges: Sequence[int] = LENGTH_EDGES) -> np.ndarray:
    """`comment_stratum` of each text of a pandas Series of strings, vectorized for large files."""
    stripped = texts.str.strip()
    bands = np.searchsorted(np.asarray(length_edges), stripped.str.len().to_numpy(), side="left")
    multi = stripped.str.contains("\n", regex=False).to_numpy(dtype=bool)
    width = len(length_edges) + 1
    keys = np.array([_key(m, b) for m in (False, True) for b in range(width)], dtype=object)
    return keys[multi.astype(np.int64) * width + bands]


def stratum_label(key: str, length_edges: Sequence[int] = LENGTH_EDGES) -> str:
    """A reader's name for a stratum key: "单条 21-40 字", "多轮 >160 字"."""
    kind, _, band_text = key.partition(":")
    band = int(band_text)
    edges = list(length_edges)
    if band == 0:
        span = f"≤{edges[0]}"
    elif band >= len(edges):
        span = f">{edges[-1]}"
    else:
        span = f"{edges[band - 1] + 1}-{edges[band]}"
    return f"{'多轮' if kind == 'multi' else '单条'} {span} 字"
