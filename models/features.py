"""TF-IDF features over jieba words and character n-grams, each occurrence with its span.

Spans are what turn a linear model's weights into evidence: every feature occurrence knows
which characters of the normalized text produced it.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Iterable

import numpy as np
import scipy.sparse as sp

from kesheng.models.base import check_ranges
from kesheng.nlp import NormalizedText, WordTokenizer, normalize
from kesheng.nlp.tone import tone_marks

__all__ = ["Analysis", "FeatureParams", "TfidfFeaturizer"]

# Character n-grams never cross whitespace or punctuation: "慢。好" says nothing.
# Longer "words" are order numbers, URLs and boilerplate: no signal, and they would carry
# verbatim fragments of training texts into the vocabulary. Character n-grams still cover them.
MAX_WORD_CHARS = 12
_CHAR_RUN = re.compile(r"[^\s!-/:-@\[-`{-~\u2000-\u206f\u3000-\u303f\uff00-\uff65·…“”‘’]+")


@dataclass(frozen=True)
class FeatureParams:
    char_ngram_min: int = 1  # shortest character n-gram; Chinese single characters carry meaning (慢, 催)
    char_ngram_max: int = 3  # longest character n-gram; 4+ mostly memorizes training sentences
    word_bigrams: bool = True  # adjacent jieba word pairs, e.g. 没_人_理 context
    negation: bool = True  # words inside a negation scope become separate "not" features (不慢)
    min_df: int = 2  # drop features seen in fewer training texts: they only add noise
    max_features: int = 100_000  # keep the most frequent features; more cost speed (dict lookups) and did not help on dev
    sublinear_tf: bool = True  # 1 + log(tf): repeating a word ten times is not ten times the signal
    hmm: bool = False  # jieba HMM for unknown words; off is ~50% faster and char n-grams cover OOV
    tone: bool = True  # tone features n-grams miss (runs of ！/？, spelled-out profanity, @regulator): the escalate head needs them

    def __post_init__(self):
        check_ranges(self, char_ngram_min=(1, 10), char_ngram_max=(1, 10), min_df=(1, 1e9), max_features=(1, 1e8))
        if self.char_ngram_min > self.char_ngram_max:
            raise ValueError(f"FeatureParams: char_ngram_min {self.char_ngram_min} > char_ngram_max {self.char_ngram_max}")


@dataclass
class Analysis:
    """One text's features: feature string and normalized-text [start, end) per occurrence.

    `word_starts`/`word_ends` are every jieba word of the normalized text (long ones included),
    in order: evidence spans are widened to them, so the tokenization is done once.
    """

    normalized: NormalizedText
    features: list[str]
    starts: list[int]
    ends: list[int]
    word_starts: list[int]
    word_ends: list[int]


class TfidfFeaturizer:
    def __init__(self, params: FeatureParams = FeatureParams()):
        self.params = params
        self._tokenizer = WordTokenizer.shared(hmm=params.hmm)

    def analyze(self, text: str) -> Analysis:
        p = self.params
        norm = normalize(text)
        s = norm.text
        features: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        negation = p.negation
        negated_chars: set[int] = set()
        previous = None
        tokens = self._tokenizer.tokenize(s)
        for tok in tokens:
            if len(tok.word) > MAX_WORD_CHARS:
                previous = None
                continue
            if negation and tok.negated:
                features.append("n:" + tok.word)
                negated_chars.update(range(tok.start, tok.end))
            else:
                features.append("w:" + tok.word)
            starts.append(tok.start)
            ends.append(tok.end)
            if p.word_bigrams and previous is not None:
                features.append("b:" + previous.word + "_" + tok.word)
                starts.append(previous.start)
                ends.append(tok.end)
            previous = tok
        for run in _CHAR_RUN.finditer(s):
            a, b = run.span()
            for n in range(p.char_ngram_min, min(p.char_ngram_max, b - a) + 1):
                positions = range(a, b - n + 1)
                if negated_chars:
                    # An n-gram ending inside a negation scope is a different feature: 不慢's 慢 is not 慢.
                    features.extend([("m:" if i + n - 1 in negated_chars else "c:") + s[i : i + n] for i in positions])
                else:
                    features.extend(["c:" + s[i : i + n] for i in positions])
                starts.extend(positions)
                ends.extend(range(a + n, b + 1))
        if p.tone and len(s):
            for feature, a, b in tone_marks(text):
                start, end = _normalized_span(norm, a, b)
                features.append(feature)
                starts.append(start)
                ends.append(end)
        return Analysis(norm, features, starts, ends, [tok.start for tok in tokens], [tok.end for tok in tokens])

    # fitting

    def fit(self, analyses: list[Analysis]) -> "TfidfFeaturizer":
        document_frequency: dict[str, int] = {}
        for analysis in analyses:
            for feature in set(analysis.features):
                document_frequency[feature] = document_frequency.get(feature, 0) + 1
        kept = [(f, df) for f, df in document_frequency.items() if df >= self.params.min_df]
        kept.sort(key=lambda item: (-item[1], item[0]))
        kept = kept[: self.params.max_features]
        kept.sort(key=lambda item: item[0])  # stable, reproducible feature order
        self.vocabulary_ = {f: i for i, (f, _) in enumerate(kept)}
        n = len(analyses)
        self.idf_ = np.array([math.log((1 + n) / (1 + df)) + 1.0 for _, df in kept], dtype=np.float32)
        return self

    def transform(self, analyses: Iterable[Analysis]) -> tuple[sp.csr_matrix, list[tuple[np.ndarray, np.ndarray]]]:
        """TF-IDF rows (l2-normalized) and, per text, (feature index, (n, 2) spans) of known occurrences."""
        analyses = list(analyses)
        n_rows = len(analyses)
        # One lookup pass over the whole batch: numpy calls per text cost more than the lookups.
        counts = np.fromiter((len(a.features) for a in analyses), dtype=np.int64, count=n_rows)
        total = int(counts.sum())
        features = chain.from_iterable(a.features for a in analyses)
        idx = np.fromiter(map(self.vocabulary_.get, features, repeat(-1, total)), dtype=np.int32, count=total)
        starts = np.fromiter(chain.from_iterable(a.starts for a in analyses), dtype=np.int32, count=total)
        ends = np.fromiter(chain.from_iterable(a.ends for a in analyses), dtype=np.int32, count=total)
        known = idx >= 0
        rows = np.repeat(np.arange(n_rows, dtype=np.int32), counts)[known]
        cols = idx[known]
        spans = np.stack([starts[known], ends[known]], axis=1)
        bounds = np.cumsum(np.bincount(rows, minlength=n_rows))[:-1]
        occurrences = list(zip(np.split(cols, bounds), np.split(spans, bounds)))
        data = np.ones(len(rows), dtype=np.float32)
        matrix = sp.csr_matrix((data, (rows, cols)), shape=(n_rows, len(self.vocabulary_)), dtype=np.float32)
        matrix.sum_duplicates()
        if self.params.sublinear_tf:
            np.log(matrix.data, out=matrix.data)
            matrix.data += 1.0
        matrix.data *= self.idf_[matrix.indices]
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        matrix = sp.diags(1.0 / norms).astype(np.float32) @ matrix
        return matrix.tocsr(), occurrences


def _normalized_span(norm: NormalizedText, start: int, end: int) -> tuple[int, int]:
    """The normalized characters that came from original[start:end] (at least one: a removed
    @-mention left a space in its place, and that space stands for it)."""
    first = bisect_right(norm.ends, start)
    last = bisect_left(norm.starts, end)
    first = min(first, len(norm.text) - 1)
    return first, max(last, first + 1)
