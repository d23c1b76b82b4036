"""Metrics computed from `predict` alone, so every model type is measured the same way."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kesheng.models import Prediction, TagClassifier
from kesheng.models.schema import SENTIMENTS, Taxonomy
from kesheng.nlp.strata import LENGTH_EDGES, comment_stratum
from kesheng.training.data import LabeledSet

__all__ = [
    "SHARE_CORRECTION",
    "choose_escalate_threshold",
    "choose_thresholds",
    "dev_score",
    "escalate_metrics",
    "evaluate",
    "evaluate_predictions",
    "format_metrics",
    "share_rates",
    "store_share_rates",
    "write_share_rates",
]

# The metrics.json key of the error rates reports use to correct problem shares (kesheng.analysis.shares).
SHARE_CORRECTION = "share_correction"


# Zero-division policy (documented in the README): a precision with nothing predicted, a recall
# with no positives in the labels, and an F1 with neither are undefined, None ("n/a"), never 0;
# an F1 with positives or predictions is 2TP / (2TP + FP + FN), which is 0 when TP is 0.
# Averages (macro-F1, sentiment macro-F1) are over the defined values only.


def _prf(truth: np.ndarray, predicted: np.ndarray, labels: Sequence[int], average: str | None = None) -> list[tuple]:
    """scikit-learn's precision, recall and F1 for explicit `labels`, undefined values as None."""
    from sklearn.metrics import precision_recall_fscore_support

    if len(truth) == 0:
        return [(None, None, None)] * (1 if average else len(labels))
    p, r, f, _ = precision_recall_fscore_support(truth, predicted, labels=list(labels), average=average, zero_division=np.nan)
    rows = zip(*(np.atleast_1d(v) for v in (p, r, f)))
    return [tuple(None if np.isnan(x) else float(x) for x in row) for row in rows]


def _binary(truth: np.ndarray, predicted: np.ndarray) -> dict:
    tp = int(((truth == 1) & (predicted == 1)).sum())
    fp = int(((truth == 0) & (predicted == 1)).sum())
    fn = int(((truth == 1) & (predicted == 0)).sum())
    tn = int(((truth == 0) & (predicted == 0)).sum())
    p, r, f = _prf(truth, predicted, [1])[0]
    if tp + fp + fn == 0:
        f = None  # no positives labeled or predicted: F1 says nothing
    return {"precision": p, "recall": r, "f1": f, "support": tp + fn, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _mean(values) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _cell(value: float | None, width: int, digits: int = 3) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def evaluate_predictions(data: LabeledSet, predictions: Sequence[Prediction], groups: Sequence[str] | None = None) -> dict:
    """Per-tag P/R/F1, macro/micro F1, 'other' (no tag), sentiment accuracy/macro-F1/confusion.

    Partial labels: a tag is scored on the rows that label it (-1 rows are left out, and the
    per-tag `n` says how many remain); macro-F1 averages the tags whose F1 is defined there;
    'other' needs every tag labeled; sentiment is scored where it is labeled.
    """
    if len(predictions) != len(data):
        raise ValueError(f"{len(predictions)} predictions for {len(data)} rows")
    names = data.taxonomy.names
    predicted = np.array([[int(n in p.tags) for n in names] for p in predictions], dtype=np.int8).reshape(len(data), len(names))
    per_tag = {}
    for j, name in enumerate(names):
        known = data.tags[:, j] >= 0
        per_tag[name] = _binary(data.tags[known, j], predicted[known, j]) | {"n": int(known.sum())}
    scored = {name: m for name, m in per_tag.items() if m["n"] > 0}
    known_cells = data.tags >= 0
    complete = (data.tags >= 0).all(axis=1)
    other = _binary(
        (data.tags[complete].sum(axis=1) == 0).astype(np.int8), (predicted[complete].sum(axis=1) == 0).astype(np.int8)
    )
    labeled_s = [i for i, s in enumerate(data.sentiments) if s is not None]
    truth_s = np.array([SENTIMENTS.index(data.sentiments[i]) for i in labeled_s], dtype=np.int64)
    predicted_s = np.array([SENTIMENTS.index(predictions[i].sentiment) for i in labeled_s], dtype=np.int64)
    confusion = np.zeros((len(SENTIMENTS), len(SENTIMENTS)), dtype=int)
    np.add.at(confusion, (truth_s, predicted_s), 1)
    per_sentiment = {}
    # A class absent from the labels has no F1 (None) and stays out of the sentiment average;
    # predicting it still costs the recall of the class that was right.
    for k, (s, (pk, rk, fk)) in enumerate(zip(SENTIMENTS, _prf(truth_s, predicted_s, range(len(SENTIMENTS))))):
        support = int(confusion[k, :].sum())
        per_sentiment[s] = {"precision": pk, "recall": rk, "f1": fk if support else None, "support": support}
    metrics = {
        "n": len(data),
        "tags": per_tag,
        "macro_f1": _mean(m["f1"] for m in scored.values()),
        "micro_f1": _prf(data.tags[known_cells], predicted[known_cells], [1])[0][2],
        "other": other,
        "sentiment": {
            "n": len(labeled_s),
            "accuracy": float(np.trace(confusion) / len(labeled_s)) if labeled_s else None,
            "macro_f1": _mean(m["f1"] for m in per_sentiment.values()),
            "per_class": per_sentiment,
            "confusion": {"labels": list(SENTIMENTS), "rows_true_cols_predicted": confusion.tolist()},
        },
    }
    if data.has_escalate:
        metrics["escalate"] = escalate_metrics(data, predictions)
    if groups is not None:
        metrics["by_group"] = {}
        for group in sorted(set(groups)):
            idx = [i for i, g in enumerate(groups) if g == group]
            sub = evaluate_predictions(data.subset(idx), [predictions[i] for i in idx])
            metrics["by_group"][group] = {k: sub[k] for k in ("n", "macro_f1", "micro_f1")} | {
                "tag_f1": {n: sub["tags"][n]["f1"] for n in names},
                "tag_support": {n: sub["tags"][n]["support"] for n in names},
                "sentiment_macro_f1": sub["sentiment"]["macro_f1"],
            }
    return metrics


def escalate_metrics(data: LabeledSet, predictions: Sequence[Prediction]) -> dict:
    """Precision, recall and F1 of the escalate flag on the rows labeled for it; `available` is
    False when the model has no escalate head (its predictions say None, which is not "no")."""
    labeled = np.flatnonzero(data.escalate >= 0)
    if not labeled.size or any(predictions[i].escalate is None for i in labeled):
        return {"available": False, "n": int(labeled.size), "support": int((data.escalate == 1).sum())}
    predicted = np.array([int(bool(predictions[i].escalate)) for i in labeled], dtype=np.int8)
    return {"available": True, "n": int(labeled.size)} | _binary(data.escalate[labeled], predicted)


def evaluate(model: TagClassifier, data: LabeledSet, groups: Sequence[str] | None = None) -> dict:
    return evaluate_predictions(data, model.predict(data.texts), groups)


def _score_moments(values: np.ndarray) -> dict:
    return {"n": int(values.size), "mean": float(values.mean()) if values.size else None, "sd": float(values.std(ddof=1)) if values.size > 1 else None}


def _rate_counts(data: LabeledSet, tagged: np.ndarray, scores: np.ndarray, rows: np.ndarray) -> dict:
    """Per tag and for 其他 (no tag at all), the confusion counts and score moments over `rows`;
    `tagged` and `scores` are the predictions as (texts, tags) matrices."""
    block: dict = {"n": int(rows.size), "tags": {}}
    for j, name in enumerate(data.taxonomy.names):
        known = rows[data.tags[rows, j] >= 0]
        truth = data.tags[known, j]
        counts = _binary(truth, tagged[known, j])
        block["tags"][name] = {k: counts[k] for k in ("tp", "fn", "fp", "tn")} | {
            "score_positive": _score_moments(scores[known, j][truth == 1]),
            "score_negative": _score_moments(scores[known, j][truth == 0]),
        }
    complete = rows[(data.tags[rows] >= 0).all(axis=1)]
    other_truth = (data.tags[complete].sum(axis=1) == 0).astype(np.int8)
    counts = _binary(other_truth, (tagged[complete].sum(axis=1) == 0).astype(np.int8))
    block["other"] = {k: counts[k] for k in ("tp", "fn", "fp", "tn")}
    return block


def share_rates(data: LabeledSet, predictions: Sequence[Prediction], measured_on: str) -> dict:
    """Per tag, the confusion counts (tp, fn, fp, tn) and the mean and spread of the tag's score
    among labeled positives and negatives: what a report needs to turn a predicted share into an
    estimate of the true one (adjusted classify-and-count and its probabilistic variant), with
    counts rather than rates so the uncertainty of the rates can be carried into the interval.
    The same counts per kind of comment (`kesheng.nlp.strata`: thread or single comment, length
    band) go under `strata`, so a report can correct each kind with its own rates.

    `predictions` must come from the final model on rows it was not trained on; `measured_on`
    says which rows, for the model card and the report.
    """
    if len(predictions) != len(data):
        raise ValueError(f"{len(predictions)} predictions for {len(data)} rows")
    names = data.taxonomy.names
    tagged = np.array([[name in p.tags for name in names] for p in predictions], dtype=np.int8).reshape(len(data), len(names))
    scores = np.array([[p.scores[name] for name in names] for p in predictions], dtype=np.float64).reshape(len(data), len(names))
    block = {"measured_on": measured_on} | _rate_counts(data, tagged, scores, np.arange(len(data)))
    kinds = np.array([comment_stratum(text) for text in data.texts], dtype=object)
    block["strata"] = {
        "length_edges": list(LENGTH_EDGES),
        "cells": {key: _rate_counts(data, tagged, scores, np.flatnonzero(kinds == key)) for key in sorted(set(kinds.tolist()))},
    }
    return block


def store_share_rates(model_dir: str | os.PathLike, model: TagClassifier, data: LabeledSet, measured_on: str) -> dict:
    """(Re)measure the share-correction rates of the model in `model_dir` on held-out labeled
    `data` and write them into its metrics.json (and model card), atomically; weights untouched.

    The rows must be ones the model never trained on (for the bundled pipeline: the test split;
    dev is refit into tfidf-linear models) and never the independent test set, which measures
    the correction itself.
    """
    block = share_rates(data, model.predict(data.texts), measured_on)
    write_share_rates(model_dir, model, block)
    return block


def write_share_rates(model_dir: str | os.PathLike, model: TagClassifier, block: dict) -> None:
    """Put a `share_correction` block into the metrics.json (and model card) of `model`'s directory."""
    from kesheng.files.atomic import write_atomic
    from kesheng.models.base import METRICS_FILE, rounded
    from kesheng.models.card import CARD_FILE, render_card, with_share_correction

    directory = Path(model_dir)
    metrics = dict(getattr(model, "metrics_", {}) or {})
    metrics[SHARE_CORRECTION] = block
    model.metrics_ = metrics
    write_atomic(directory / METRICS_FILE, json.dumps(rounded(metrics), ensure_ascii=False, indent=2).encode("utf-8"))
    card = directory / CARD_FILE
    # Only the rates' section changes: re-rendering from the rounded metrics.json could move other figures by 0.001.
    text = with_share_correction(card.read_text(encoding="utf-8"), block) if card.is_file() else render_card(model)
    write_atomic(card, text.encode("utf-8"))


def choose_thresholds(
    truth: np.ndarray,
    predictions: Sequence[Prediction],
    taxonomy: Taxonomy,
    min_positives: int,
    bounds: tuple[float, float],
) -> dict[str, float]:
    """Per tag, the threshold that maximizes F1 on held-out predictions.

    Ties go to the threshold nearest 0.5, which keeps the choice stable on small dev sets.
    """
    thresholds = {}
    grid = np.round(np.arange(bounds[0], bounds[1] + 1e-9, 0.01), 2)
    for j, name in enumerate(taxonomy.names):
        known = truth[:, j] >= 0
        y = truth[known, j]
        if int(y.sum()) < min_positives:
            thresholds[name] = 0.5
            continue
        scores = np.array([p.scores[name] for p in predictions])[known]
        best = max(grid, key=lambda t: (_binary(y, (scores >= t).astype(np.int8))["f1"] or 0.0, -abs(t - 0.5)))
        thresholds[name] = float(best)
    return thresholds


def choose_escalate_threshold(truth: np.ndarray, scores: Sequence[float | None], target_recall: float, min_positives: int) -> float | None:
    """The highest threshold whose recall on held-out labels reaches `target_recall`: escalation
    is tuned for recall (a missed angry customer costs more than a needless look). None when too
    few positives are labeled to choose (the caller keeps 0.5 and says so)."""
    labeled = [i for i, y in enumerate(truth) if y >= 0 and scores[i] is not None]
    y = np.array([truth[i] for i in labeled], dtype=np.int8)
    values = np.array([scores[i] for i in labeled], dtype=np.float64)
    positives = np.sort(values[y == 1])[::-1]
    if len(positives) < min_positives:
        return None
    # Keeping the k highest-scoring positives needs a threshold at the k-th of them.
    needed = int(np.ceil(target_recall * len(positives)))
    return float(np.floor(positives[max(needed, 1) - 1] * 10000) / 10000)


def dev_score(
    dev: LabeledSet, min_positives: int, bounds: tuple[float, float]
) -> Callable[[TagClassifier], float]:
    """A model-selection score on dev: mean of tag macro-F1 (per-tag thresholds tuned on dev, as
    the pipeline will tune them) and sentiment macro-F1.

    Both heads share one encoder, so an epoch is chosen for both; tags alone could pick an
    epoch where sentiment has already degraded. Uses `predict` only.
    """

    def score(model: TagClassifier) -> float:
        predictions = model.predict(dev.texts)
        thresholds = choose_thresholds(dev.tags, predictions, dev.taxonomy, min_positives, bounds)
        retagged = [replace(p, tags=[n for n in dev.taxonomy.names if p.scores[n] >= thresholds[n]]) for p in predictions]
        metrics = evaluate_predictions(dev, retagged)
        return ((metrics["macro_f1"] or 0.0) + (metrics["sentiment"]["macro_f1"] or 0.0)) / 2

    return score


class DevScore:
    """The epoch callback of training runs: `dev_score` on the dev split after every epoch."""

    def __init__(self, dev: LabeledSet, min_positives: int, bounds: tuple[float, float]):
        self.score = dev_score(dev, min_positives, bounds)

    def on_epoch_end(self, model: TagClassifier) -> float:
        return self.score(model)


def format_metrics(metrics: dict, taxonomy: Taxonomy) -> str:
    """Metrics for people: every F1 with its support (positives), n/a where it is undefined."""
    lines = [f"{'tag':<16}{'zh':<8}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}{'labeled':>9}"]
    for name in taxonomy.names:
        m = metrics["tags"][name]
        labeled = m.get("n", metrics["n"])
        lines.append(f"{name:<16}{taxonomy.zh(name):<8}{_cell(m['precision'], 10)}{_cell(m['recall'], 8)}{_cell(m['f1'], 8)}{m['support']:>9d}{labeled:>9d}")
    o = metrics["other"]
    lines.append(f"{'(other)':<16}{'其他':<8}{_cell(o['precision'], 10)}{_cell(o['recall'], 8)}{_cell(o['f1'], 8)}{o['support']:>9d}")
    lines.append(f"macro-F1 {_cell(metrics['macro_f1'], 0)}   micro-F1 {_cell(metrics['micro_f1'], 0)}   n={metrics['n']}")
    s = metrics["sentiment"]
    lines.append(f"sentiment accuracy {_cell(s['accuracy'], 0)}   macro-F1 {_cell(s['macro_f1'], 0)} (over the {sum(1 for m in s['per_class'].values() if m['support'])} classes present)")
    lines.append("sentiment confusion (rows true, cols predicted): " + "  ".join(s["confusion"]["labels"]))
    for label, row in zip(s["confusion"]["labels"], s["confusion"]["rows_true_cols_predicted"]):
        lines.append(f"  {label:<9}" + "".join(f"{v:>9d}" for v in row))
    e = metrics.get("escalate")
    if e is not None:
        if e["available"]:
            lines.append(
                f"{'escalate':<16}{'需升级处理':<8}{_cell(e['precision'], 10)}{_cell(e['recall'], 8)}{_cell(e['f1'], 8)}{e['support']:>9d}{e['n']:>9d}"
            )
        else:
            lines.append(f"escalate: n/a (the model has no escalate head; {e['support']} positives among {e['n']} labeled)")
    for group, g in metrics.get("by_group", {}).items():
        support = g.get("tag_support", {})
        tags = " ".join(f"{n}={_cell(f, 0, 2)}({support.get(n, '?')})" for n, f in g["tag_f1"].items())
        lines.append(f"  [{group}] n={g['n']} macro-F1 {_cell(g['macro_f1'], 0)} {tags} sentiment {_cell(g['sentiment_macro_f1'], 0)}")
    for warning in metrics.get("warnings", []):
        lines.append(f"warning: {warning}")
    return "\n".join(lines)
