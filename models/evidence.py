"""Turn per-occurrence contributions into a few readable evidence spans."""

from __future__ import annotations

from bisect import bisect_right
from typing import Sequence

import numpy as np

from kesheng.models.prediction import Evidence
from kesheng.nlp.normalize import NormalizedText, is_punctuation

__all__ = ["snap_to_words", "spans_from_contributions", "tag_evidence"]

# A character counts as evidence when it carries at least this share of the strongest character.
RELATIVE_FLOOR = 0.25
# A span is reported only when it carries at least this share of the strongest span.
SPAN_FLOOR = 0.2


def snap_to_words(runs: list[tuple[int, int, float]], word_starts: Sequence[int], word_ends: Sequence[int]) -> list[tuple[int, int, float]]:
    """Widen each (start, end, weight) run to the words it touches, merging runs that then meet.

    A per-character floor keeps the strong characters of a word and drops its weak ones, so raw
    runs read "打客服电" for 客服电话; a reader needs whole words. `word_starts`/`word_ends` are
    the sorted, non-overlapping words of the same text. Runs that overlap or touch after widening
    become one span carrying the sum of their weights, so no two spans share a character.
    Returns the spans in text order.
    """
    snapped: list[tuple[int, int, float]] = []
    for start, end, weight in sorted(runs):
        word = bisect_right(word_starts, start) - 1
        if word >= 0 and word_ends[word] > start:
            start = word_starts[word]
        word = bisect_right(word_starts, end - 1) - 1
        if word >= 0 and word_ends[word] > end:
            end = word_ends[word]
        if snapped and start <= snapped[-1][1]:
            previous_start, previous_end, previous_weight = snapped[-1]
            snapped[-1] = (previous_start, max(previous_end, end), previous_weight + weight)
        else:
            snapped.append((start, end, weight))
    return snapped


def spans_from_contributions(
    text: str,
    spans: np.ndarray,
    contributions: np.ndarray,
    max_spans: int,
    word_starts: Sequence[int],
    word_ends: Sequence[int],
) -> list[tuple[int, int, float]]:
    """Spread each occurrence's contribution over its characters, keep the strong runs.

    Overlapping word and n-gram features reinforce the same characters, so runs of strongly
    positive characters are the phrases that pushed the score ("等了半天"), not single n-grams.
    Runs are widened to whole words of the text (`snap_to_words`) before the strongest are chosen.
    Returns up to `max_spans` (start, end, weight) in normalized-text offsets, strongest first.
    """
    if len(spans) == 0:
        return []
    lengths = (spans[:, 1] - spans[:, 0]).astype(np.float32)
    share = np.maximum(contributions / np.maximum(lengths, 1.0), 0.0)
    # Difference array: +share where a span starts, -share where it ends, then a running sum.
    delta = np.zeros(len(text) + 1, dtype=np.float64)
    np.add.at(delta, spans[:, 0], share)
    np.add.at(delta, spans[:, 1], -share)
    per_char = np.cumsum(delta[:-1])
    peak = float(per_char.max())
    if peak <= 0:
        return []
    strong = per_char >= peak * RELATIVE_FLOOR
    for i in np.flatnonzero(strong).tolist():
        if text[i].isspace() or is_punctuation(text[i]):
            strong[i] = False
    runs: list[tuple[int, int, float]] = []
    i = 0
    n = len(text)
    while i < n:
        if not strong[i]:
            i += 1
            continue
        j = i
        while j < n and strong[j]:
            j += 1
        runs.append((i, j, float(per_char[i:j].sum())))
        i = j
    runs = snap_to_words(runs, word_starts, word_ends)
    runs.sort(key=lambda run: -run[2])
    return [run for run in runs[:max_spans] if run[2] >= runs[0][2] * SPAN_FLOOR]


def tag_evidence(
    tag: str,
    normalized: NormalizedText,
    spans: np.ndarray,
    contributions: np.ndarray,
    max_spans: int,
    word_starts: Sequence[int],
    word_ends: Sequence[int],
) -> list[Evidence]:
    """`spans_from_contributions` on the normalized text, reported in ORIGINAL-text offsets."""
    evidence = []
    for start, end, weight in spans_from_contributions(normalized.text, spans, contributions, max_spans, word_starts, word_ends):
        o_start, o_end = normalized.to_original(start, end)
        evidence.append(Evidence.in_text(tag, normalized.original, o_start, o_end, weight))
    return evidence
