"""Themes: what groups of comments are about, found without being told.

BERTopic's pipeline (embed, reduce, cluster, c-TF-IDF), built from scikit-learn because
BERTopic itself needs umap-learn, hdbscan and sentence-transformers, which download models at
run time:

1. Embed each distinct text once (`kesheng.models.embedding`: the e5 encoder, or TF-IDF + SVD).
2. Reduce the vectors with PCA to a few dimensions, where density is meaningful.
3. Cluster with HDBSCAN: it finds the number of themes, and comments in no dense region stay
   out (-1) instead of being forced into the nearest theme. A text repeated many times counts
   as many points (up to the minimum theme size), so a stock answer can be a theme of its own.
4. Near-duplicate themes (centres almost parallel) are merged, and merging continues, closest
   first, until at most `max_themes` remain.
5. Comments outside the clustering sample, and HDBSCAN's noise, join the nearest theme only when
   they are at least as close to its centre as most of its own members.
6. Each theme is named by its distinctive words and phrases, weighted class-TF-IDF style, and
   shown through the comments nearest its centre.

Deterministic for a seed: the sample, PCA and HDBSCAN have no other randomness.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from kesheng.models.embedding import TextEmbedder
from kesheng.nlp.keywords import content_terms
from kesheng.nlp.normalize import normalize

__all__ = ["ThemeParams", "FoundTheme", "ThemeModel", "StreamSample", "find_themes", "label_terms"]

Progress = Callable[[int], None]


@dataclass
class ThemeParams:
    min_size: int | None = None  # smallest theme, in comments; None: 1% of the comments in scope, at least 10
    max_themes: int = 20  # more themes than this are merged, closest centres first
    reduce_dims: int = 10  # PCA components HDBSCAN clusters in (chosen on the dev mix of benchmarks/bench_themes.py)
    min_samples: int = 10  # HDBSCAN's density smoothing: larger leaves more comments out as noise
    selection: str = "leaf"  # HDBSCAN's cluster selection: "leaf" keeps the dense cores (purer themes; the join step then grows them), "eom" the most persistent clusters
    cluster_sample: int = 10_000  # HDBSCAN runs on at most this many points (its time grows faster than linearly); the rest join by distance
    join_quantile: float = 0.02  # a comment joins a theme when at least as close to its centre as this quantile of the theme's own members
    merge_similarity: float = 0.9  # cosine of two centres (corpus mean removed) above which they are one theme said twice
    label_terms: int = 2  # terms in a theme's label, e.g. "包装破损/漏液"
    examples: int = 5  # representative comments per theme
    max_chars: int = 200  # what a comment is about is said early: longer ones are read this far (segmenting is most of the TF-IDF time)
    readable_chars: tuple[int, int] = (6, 120)  # representative comments of this length are preferred: long enough to say something, short enough to read
    seed: int = 0  # the clustering sample

    def __post_init__(self):
        if self.min_size is not None and self.min_size < 2:
            raise ValueError(f"min_size must be at least 2 comments, got {self.min_size}")
        if self.max_themes < 1:
            raise ValueError(f"max_themes must be at least 1, got {self.max_themes}")
        if not 0.0 <= self.join_quantile <= 1.0:
            raise ValueError(f"join_quantile must be in [0, 1], got {self.join_quantile}")
        if self.selection not in ("leaf", "eom"):
            raise ValueError(f"selection must be 'leaf' or 'eom', got {self.selection!r}")
        if self.max_chars < 10:
            raise ValueError(f"max_chars must be at least 10, got {self.max_chars}")
        if self.reduce_dims < 2 or self.min_samples < 1 or self.cluster_sample < 100 or self.label_terms < 1 or self.examples < 1:
            raise ValueError("reduce_dims >= 2, min_samples >= 1, cluster_sample >= 100, label_terms >= 1 and examples >= 1 are required")

    def size_for(self, n: int) -> int:
        return self.min_size if self.min_size is not None else max(10, math.ceil(0.01 * n))


@dataclass
class FoundTheme:
    id: int  # 0 = the largest theme
    label: str  # its distinctive terms joined by "/", e.g. "配送/超时"
    terms: list[tuple[str, float]]  # distinctive terms, best first, with their class-TF-IDF weight
    size: int  # comments in the theme (repeats counted)
    examples: list[str]  # comments nearest the theme's centre, of readable length, distinct


@dataclass
class ThemeModel:
    """Themes of a list of texts and where each text went."""

    themes: list[FoundTheme]
    assignment: np.ndarray  # per input text: theme id, or -1 (fits no theme, or empty)
    similarities: np.ndarray  # (texts, themes): cosine of each text to each theme's centre (corpus mean removed); nan where a text has no vector
    min_size: int  # the minimum theme size used
    embedder: str  # which embeddings were used
    notes: list[str] = field(default_factory=list)  # why there are fewer themes than one might expect

    @property
    def clustered(self) -> int:
        return int((self.assignment >= 0).sum())


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def label_terms(docs: Sequence[Sequence[str]], weights: Sequence[int], classes: Sequence[int], n_classes: int, top: int = 10) -> list[list[tuple[str, float]]]:
    """Class-TF-IDF (BERTopic): the terms most specific to each class.

    A term's weight in class c is the share of c's comments using it times log(1 + A / f), A
    the average class size and f the term's comment count over all classes (the unclustered
    ones included): frequent in the theme, rare elsewhere. Terms used by under 5% of a theme's
    comments (or by one comment) are not candidates: they name a comment, not the theme.
    """
    per_class = [Counter() for _ in range(n_classes + 1)]  # last: the unclustered comments
    sizes = np.zeros(n_classes + 1)
    for terms, weight, c in zip(docs, weights, classes):
        k = c if c >= 0 else n_classes
        sizes[k] += weight
        for term in set(terms):
            per_class[k][term] += weight
    overall: Counter = Counter()
    for counts in per_class:
        overall.update(counts)
    average = sizes[sizes > 0].mean() if (sizes > 0).any() else 1.0
    result = []
    for c in range(n_classes):
        floor = max(2.0, 0.05 * sizes[c])
        scored = [(t, (n / sizes[c]) * math.log(1.0 + average / overall[t])) for t, n in per_class[c].items() if n >= floor]
        scored.sort(key=lambda item: (-item[1], item[0]))
        result.append([(t, round(w, 4)) for t, w in scored[:top]])
    return result


def _label(terms: list[tuple[str, float]], count: int) -> str:
    """The best `count` terms, a phrase preferred over a word it contains ("包装破损" over "包装")."""
    chosen: list[tuple[str, float]] = []
    for term, weight in terms:
        if any(term in c for c, _ in chosen):
            continue
        inside = [i for i, (c, w) in enumerate(chosen) if c in term]
        if inside:
            if weight >= 0.5 * chosen[inside[0]][1]:
                chosen[inside[0]] = (term, weight)
            continue
        if len(chosen) < count:
            chosen.append((term, weight))
    return "/".join(t for t, _ in chosen)


def _centres(clusters: np.ndarray, vectors: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Unit mean vector of each cluster, a text weighted by how often it was given."""
    return _unit(np.stack([(vectors[clusters == c] * counts[clusters == c, None]).sum(0) for c in range(int(clusters.max()) + 1)]))


def _merge_near_duplicates(clusters: np.ndarray, vectors: np.ndarray, counts: np.ndarray, docs: list[tuple[str, ...]], params: ThemeParams) -> np.ndarray:
    k = int(clusters.max()) + 1
    names = [frozenset(_label(terms, params.label_terms).split("/")) - {""} for terms in label_terms(docs, counts, clusters, k)]
    merged = _merge(_centres(clusters, vectors, counts), names, params.merge_similarity, params.max_themes)
    return np.where(clusters >= 0, merged[np.maximum(clusters, 0)], -1)


def _merge(centres: np.ndarray, names: list[frozenset[str]], similarity: float, max_themes: int) -> np.ndarray:
    """Which merged theme each cluster joins.

    Near-duplicates first: centres almost parallel, or the same distinctive terms ("酒店/房间"
    and "房间/酒店" are one theme however their centres lie). Then, while there are more than
    `max_themes`, the two closest centres (average linkage).
    """
    from scipy.cluster.hierarchy import DisjointSet
    from sklearn.cluster import AgglomerativeClustering

    n = len(centres)
    if n < 2:
        return np.zeros(n, dtype=int)
    same = DisjointSet(range(n))
    cosine = centres @ centres.T
    for a in range(n):
        for b in range(a + 1, n):
            if cosine[a, b] >= similarity or (names[a] and names[a] == names[b]):
                same.merge(a, b)
    roots = sorted({same[i] for i in range(n)})
    joined = np.array([roots.index(same[i]) for i in range(n)])
    if len(roots) > max_themes:
        merged_centres = _unit(np.stack([centres[joined == r].mean(0) for r in range(len(roots))]))
        again = AgglomerativeClustering(n_clusters=max_themes, metric="cosine", linkage="average").fit_predict(merged_centres)
        joined = again[joined]
    return joined


def find_themes(texts: Sequence[str | None], embedder: TextEmbedder, params: ThemeParams = ThemeParams(), progress: Progress | None = None) -> ThemeModel:
    """Themes of `texts` (None or blank texts get -1). See the module docstring for the steps."""
    n = len(texts)
    unique, text_of_unique, row_unique = _distinct(texts)
    counts = np.bincount(row_unique[row_unique >= 0], minlength=len(unique))
    total = int(counts.sum())
    min_size = params.size_for(total)
    result = ThemeModel([], np.full(n, -1), np.full((n, 0), np.nan), min_size, getattr(embedder, "name", "?"))
    if total < min_size:
        result.notes.append(f"{total:,} comments with text, fewer than the minimum theme size ({min_size:,}): no themes")
        return result

    heads = [t[: params.max_chars] for t in unique]
    docs = [content_terms(t) for t in heads]
    if len(unique) > 1:
        vectors = embedder.fit_transform(heads, progress)
        usable = np.linalg.norm(vectors, axis=1) > 1e-6
    else:
        vectors, usable = np.zeros((1, 1), dtype=np.float32), np.zeros(1, dtype=bool)
    clusters = np.full(len(unique), -1)
    similarities = np.zeros((len(unique), 0))
    if usable.sum() > 1:
        clusters, similarities = _embedded_themes(vectors, usable, counts, docs, min_size, params)
    # A stock answer many gave ("无", "好评"), with no words to place it among the others, is a
    # theme of its own when it alone reaches the minimum size.
    stock = np.flatnonzero(~usable & (counts >= min_size))
    first = int(clusters.max()) + 1
    clusters[stock] = first + np.arange(len(stock))
    stock_columns = np.where(usable[:, None], 0.0, np.nan) * np.ones((1, len(stock)))
    stock_columns[stock, np.arange(len(stock))] = 1.0
    similarities = np.hstack([similarities, stock_columns])
    k = int(clusters.max()) + 1
    if k == 0:
        result.notes.append("no group of comments is dense enough to be a theme (try a smaller --min-size)")
        return result

    sizes = np.array([counts[clusters == c].sum() for c in range(k)])
    kept = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] >= min_size]
    renumber = np.full(k, -1)
    renumber[kept] = np.arange(len(kept))
    clusters = np.where(clusters >= 0, renumber[np.maximum(clusters, 0)], -1)
    similarities = similarities[:, kept]

    terms = label_terms(docs, counts, clusters, len(kept))
    for new_id in range(len(kept)):
        members = np.flatnonzero(clusters == new_id)
        if len(members) == 1 and not usable[members[0]]:
            terms[new_id] = [(unique[members[0]][:12], 1.0)]
        ranked = members[np.argsort(-np.nan_to_num(similarities[members, new_id], nan=-2.0), kind="stable")]
        result.themes.append(
            FoundTheme(
                id=new_id,
                label=_label(terms[new_id], params.label_terms) or f"主题{new_id + 1}",
                terms=terms[new_id],
                size=int(counts[members].sum()),
                examples=_examples([text_of_unique[m] for m in ranked], params),
            )
        )
    _distinct_labels(result.themes, params.label_terms)
    valid = row_unique >= 0
    result.assignment[valid] = clusters[row_unique[valid]]
    result.similarities = np.full((n, len(kept)), np.nan)
    result.similarities[valid] = similarities[row_unique[valid]]
    return result


def _distinct(texts: Sequence[str | None]) -> tuple[list[str], list[str], np.ndarray]:
    """Each distinct normalized text once (embedding is the costly step, and survey answers
    repeat), one of its original spellings for display, and which distinct text each row is (-1: empty)."""
    index_of: dict[str, int] = {}
    unique: list[str] = []
    original: list[str] = []
    row_unique = np.full(len(texts), -1, dtype=np.int64)
    for i, text in enumerate(texts):
        key = normalize(text).text if isinstance(text, str) else ""
        if not key:
            continue
        u = index_of.get(key)
        if u is None:
            u = index_of[key] = len(unique)
            unique.append(key)
            original.append(text)
        row_unique[i] = u
    return unique, original, row_unique


def _embedded_themes(vectors: np.ndarray, usable: np.ndarray, counts: np.ndarray, docs: list[tuple[str, ...]], min_size: int, params: ThemeParams) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ids (-1: none) and cosine to the nearest theme centre for the texts with a vector."""
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA

    centred = np.zeros_like(vectors)
    centred[usable] = _unit(vectors[usable] - vectors[usable].mean(axis=0))
    clusters = _cluster(vectors, np.where(usable, counts, 0), min_size, params, HDBSCAN, PCA)
    if clusters.max() < 0:
        return clusters, np.zeros((len(vectors), 0))
    clusters = _merge_near_duplicates(clusters, centred, counts, docs, params)
    # Comments the clustering left out join a theme when as close to its centre as its members are.
    similarity_all = centred @ _centres(clusters, centred, counts).T
    nearest = similarity_all.argmax(axis=1)
    best = similarity_all[np.arange(len(vectors)), nearest]
    floors = np.array([np.quantile(similarity_all[clusters == c, c], params.join_quantile) for c in range(similarity_all.shape[1])])
    clusters = np.where((clusters < 0) & usable & (best >= floors[nearest]), nearest, clusters)
    # Joining can change what a theme's words are: two themes may now be named alike.
    clusters = _merge_near_duplicates(clusters, centred, counts, docs, params)
    similarity_all = centred @ _centres(clusters, centred, counts).T
    similarity_all[~usable] = np.nan
    return clusters, similarity_all


def _cluster(vectors: np.ndarray, counts: np.ndarray, min_size: int, params: ThemeParams, HDBSCAN, PCA) -> np.ndarray:
    """HDBSCAN labels per distinct text (-1: noise, not in the sample, or a count of 0)."""
    # Each distinct text is a point repeated up to min_size times: a stock answer given by
    # many can form a theme, but no text weighs more than one theme's worth.
    repeats = np.minimum(counts, min_size)
    if not repeats.any():
        return np.full(len(vectors), -1)
    points = np.repeat(np.arange(len(vectors)), repeats)
    rng = np.random.default_rng(params.seed)
    if len(points) > params.cluster_sample:
        points = np.sort(rng.choice(points, params.cluster_sample, replace=False))
    fraction = len(points) / float(repeats.sum())
    cluster_size = max(5, math.ceil(min_size * fraction))
    dims = min(params.reduce_dims, vectors.shape[1], len(np.unique(points)) - 1)
    if len(points) < cluster_size or dims < 1:
        return np.full(len(vectors), -1)
    sample = vectors[points]
    reduced = PCA(dims, random_state=params.seed).fit_transform(sample) if dims < vectors.shape[1] else sample - sample.mean(0)
    labels = HDBSCAN(min_cluster_size=cluster_size, min_samples=min(params.min_samples, cluster_size), cluster_selection_method=params.selection, copy=True).fit_predict(_unit(reduced))
    # A text sampled several times takes its most frequent label.
    result = np.full(len(vectors), -1)
    votes: dict[int, Counter] = {}
    for point, label in zip(points, labels):
        votes.setdefault(int(point), Counter())[int(label)] += 1
    for point, tally in votes.items():
        result[point] = tally.most_common(1)[0][0]
    return result


def _examples(ranked: list[str], params: ThemeParams) -> list[str]:
    """Up to `examples` comments, nearest the centre first, readable length preferred."""
    low, high = params.readable_chars
    readable = [t for t in ranked if low <= len(t.strip()) <= high]
    picked: list[str] = []
    for text in readable + [t for t in ranked if t not in readable]:
        text = text.strip()
        if text and text not in picked:
            picked.append(text if len(text) <= high else text[: high - 1] + "…")
        if len(picked) == params.examples:
            break
    return picked


def _distinct_labels(themes: list[FoundTheme], count: int) -> None:
    """Two themes never share a label: the later one gets more of its terms, or a number."""
    seen: Counter = Counter()
    for theme in themes:
        if seen[theme.label]:
            longer = _label(theme.terms, count + 1)
            theme.label = longer if longer != theme.label and not seen[longer] else f"{theme.label}（{seen[theme.label] + 1}）"
        seen[theme.label] += 1


class StreamSample:
    """A uniform random sample of at most `size` texts from a stream read in chunks (bottom-k:
    each text draws a random key, the `size` smallest keys are kept), so a report on a million
    rows finds its themes in a bounded sample with memory independent of the row count."""

    def __init__(self, size: int, seed: int = 0):
        self.size = size  # texts kept
        self.seen = 0  # texts offered so far
        self._rng = np.random.default_rng(seed)
        self._keys = np.zeros(0)
        self._texts = np.zeros(0, dtype=object)

    def add(self, texts: Sequence[str]) -> None:
        if not len(texts):
            return
        self.seen += len(texts)
        keys = np.concatenate([self._keys, self._rng.random(len(texts))])
        pool = np.concatenate([self._texts, np.asarray(list(texts), dtype=object)])
        if len(keys) > self.size:
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            keep.sort()
            keys, pool = keys[keep], pool[keep]
        self._keys, self._texts = keys, pool

    @property
    def texts(self) -> list[str]:
        return self._texts[np.argsort(self._keys, kind="stable")].tolist()
