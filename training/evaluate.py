"""Metrics computed from `predict` alone, so every model type is measured the same way."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from models import Prediction, TagClassifier
from models.schema import SENTIMENTS, Taxonomy
from training.data import LabeledSet

__all__ = ["choose_thresholds", "evaluate", "evaluate_predictions", "format_metrics"]


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _binary(truth: np.ndarray, predicted: np.ndarray) -> dict:
    tp = int(((truth == 1) & (predicted == 1)).sum())
    fp = int(((truth == 0) & (predicted == 1)).sum())
    fn = int(((truth == 1) & (predicted == 0)).sum())
    tn = int(((truth == 0) & (predicted == 0)).sum())
    p, r, f = _prf(tp, fp, fn)
    return {"precision": p, "recall": r, "f1": f, "support": tp + fn, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def evaluate_predictions(data: LabeledSet, predictions: Sequence[Prediction], groups: Sequence[str] | None = None) -> dict:
    """Per-tag P/R/F1, macro/micro F1, 'other' (no tag), sentiment accuracy/macro-F1/confusion."""
    if len(predictions) != len(data):
        raise ValueError(f"{len(predictions)} predictions for {len(data)} rows")
    names = data.taxonomy.names
    predicted = np.array([[int(n in p.tags) for n in names] for p in predictions], dtype=np.int8).reshape(len(data), len(names))
    per_tag = {name: _binary(data.tags[:, j], predicted[:, j]) for j, name in enumerate(names)}
    tp = sum(m["tp"] for m in per_tag.values())
    fp = sum(m["fp"] for m in per_tag.values())
    fn = sum(m["fn"] for m in per_tag.values())
    other = _binary((data.tags.sum(axis=1) == 0).astype(np.int8), (predicted.sum(axis=1) == 0).astype(np.int8))
    truth_s = [SENTIMENTS.index(s) for s in data.sentiments]
    pred_s = [SENTIMENTS.index(p.sentiment) for p in predictions]
    confusion = np.zeros((len(SENTIMENTS), len(SENTIMENTS)), dtype=int)
    for t, p in zip(truth_s, pred_s):
        confusion[t, p] += 1
    per_sentiment = {}
    for k, s in enumerate(SENTIMENTS):
        pk, rk, fk = _prf(int(confusion[k, k]), int(confusion[:, k].sum() - confusion[k, k]), int(confusion[k, :].sum() - confusion[k, k]))
        per_sentiment[s] = {"precision": pk, "recall": rk, "f1": fk, "support": int(confusion[k, :].sum())}
    metrics = {
        "n": len(data),
        "tags": per_tag,
        "macro_f1": float(np.mean([m["f1"] for m in per_tag.values()])),
        "micro_f1": _prf(tp, fp, fn)[2],
        "other": other,
        "sentiment": {
            "accuracy": float(np.trace(confusion) / max(len(data), 1)),
            "macro_f1": float(np.mean([m["f1"] for m in per_sentiment.values()])),
            "per_class": per_sentiment,
            "confusion": {"labels": list(SENTIMENTS), "rows_true_cols_predicted": confusion.tolist()},
        },
    }
    if groups is not None:
        metrics["by_group"] = {}
        for group in sorted(set(groups)):
            idx = [i for i, g in enumerate(groups) if g == group]
            sub = evaluate_predictions(data.subset(idx), [predictions[i] for i in idx])
            metrics["by_group"][group] = {k: sub[k] for k in ("n", "macro_f1", "micro_f1")} | {
                "tag_f1": {n: sub["tags"][n]["f1"] for n in names},
                "sentiment_macro_f1": sub["sentiment"]["macro_f1"],
            }
    return metrics


def evaluate(model: TagClassifier, data: LabeledSet, groups: Sequence[str] | None = None) -> dict:
    return evaluate_predictions(data, model.predict(data.texts), groups)


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
        y = truth[:, j]
        if int(y.sum()) < min_positives:
            thresholds[name] = 0.5
            continue
        scores = np.array([p.scores[name] for p in predictions])
        best = max(grid, key=lambda t: (_binary(y, (scores >= t).astype(np.int8))["f1"], -abs(t - 0.5)))
        thresholds[name] = float(best)
    return thresholds


def format_metrics(metrics: dict, taxonomy: Taxonomy) -> str:
    lines = [f"{'tag':<16}{'zh':<8}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}"]
    for name in taxonomy.names:
        m = metrics["tags"][name]
        lines.append(f"{name:<16}{taxonomy.zh(name):<8}{m['precision']:>10.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}{m['support']:>9d}")
    o = metrics["other"]
    lines.append(f"{'(other)':<16}{'其他':<8}{o['precision']:>10.3f}{o['recall']:>8.3f}{o['f1']:>8.3f}{o['support']:>9d}")
    lines.append(f"macro-F1 {metrics['macro_f1']:.3f}   micro-F1 {metrics['micro_f1']:.3f}   n={metrics['n']}")
    s = metrics["sentiment"]
    lines.append(f"sentiment accuracy {s['accuracy']:.3f}   macro-F1 {s['macro_f1']:.3f}")
    lines.append("sentiment confusion (rows true, cols predicted): " + "  ".join(s["confusion"]["labels"]))
    for label, row in zip(s["confusion"]["labels"], s["confusion"]["rows_true_cols_predicted"]):
        lines.append(f"  {label:<9}" + "".join(f"{v:>9d}" for v in row))
    for group, g in metrics.get("by_group", {}).items():
        tags = " ".join(f"{n}={f:.2f}" for n, f in g["tag_f1"].items())
        lines.append(f"  [{group}] n={g['n']} macro-F1 {g['macro_f1']:.3f} {tags} sentiment {g['sentiment_macro_f1']:.3f}")
    return "\n".join(lines)
