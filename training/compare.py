"""Two models on the same labeled comments: per-tag F1 with bootstrap intervals, and disagreements.

The bootstrap resamples comments (the same resample for both models), so the interval of the
difference accounts for the two models being scored on the same, correlated, data. Only
`predict` is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kesheng.models import Prediction, TagClassifier
from kesheng.models.schema import SENTIMENTS, Taxonomy
from kesheng.training.data import LabeledSet

__all__ = ["PromotionCheck", "compare_models", "format_comparison", "promotion_check", "score_intervals", "union_taxonomy"]


def union_taxonomy(a: Taxonomy, b: Taxonomy) -> Taxonomy:
    """A's tags, then B's tags A lacks: labels for either model's tags can be read with it."""
    extra = tuple(t for t in b.tags if t.name not in a.names)
    return Taxonomy(a.tags + extra)


def _f1_counts(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """F1 per row of (B, n) resampled truth/predictions."""
    tp = ((y == 1) & (p == 1)).sum(axis=-1)
    fp = ((y == 0) & (p == 1)).sum(axis=-1)
    fn = ((y == 1) & (p == 0)).sum(axis=-1)
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def _sentiment_macro_f1(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.mean([_f1_counts((y == k).astype(int), (p == k).astype(int)) for k in range(len(SENTIMENTS))], axis=0)


@dataclass
class _Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high}


def _interval(point: float, samples: np.ndarray) -> _Interval:
    low, high = np.percentile(samples, [2.5, 97.5])
    return _Interval(float(point), float(low), float(high))


def compare_models(
    model_a: TagClassifier,
    model_b: TagClassifier,
    data: LabeledSet,
    n_bootstrap: int = 1000,
    seed: int = 0,
    n_examples: int = 5,
) -> dict:
    """Per-tag F1 of A and B, B - A with a 95% bootstrap interval, and where they disagree."""
    names_a, names_b = set(model_a.taxonomy_.names), set(model_b.taxonomy_.names)
    predictions_a = model_a.predict(data.texts)
    predictions_b = model_b.predict(data.texts)
    rng = np.random.default_rng(seed)
    n = len(data)
    resample = rng.integers(0, n, size=(n_bootstrap, n))
    # 0/1 per row and tag, once: the per-tag and the macro figures both use them.
    tagged_a = {name: np.array([int(name in p.tags) for p in predictions_a]) for name in data.taxonomy.names}
    tagged_b = {name: np.array([int(name in p.tags) for p in predictions_b]) for name in data.taxonomy.names}
    tags = {}
    for j, name in enumerate(data.taxonomy.names):
        known = np.flatnonzero(data.tags[:, j] >= 0)
        entry: dict = {"labeled": int(len(known)), "in_a": name in names_a, "in_b": name in names_b}
        if len(known) == 0:
            tags[name] = entry
            continue
        y = data.tags[:, j]
        p_a, p_b = tagged_a[name], tagged_b[name]
        # Resample among the rows that label this tag, with the same draws for both models.
        rows = known[resample[:, : len(known)] % len(known)]
        samples_a = _f1_counts(y[rows], p_a[rows]) if name in names_a else None
        samples_b = _f1_counts(y[rows], p_b[rows]) if name in names_b else None
        if samples_a is not None:
            entry["a"] = _interval(_f1_counts(y[known], p_a[known]), samples_a).as_dict()
        if samples_b is not None:
            entry["b"] = _interval(_f1_counts(y[known], p_b[known]), samples_b).as_dict()
        if samples_a is not None and samples_b is not None:
            entry["b_minus_a"] = _interval(entry["b"]["value"] - entry["a"]["value"], samples_b - samples_a).as_dict()
            differ = known[p_a[known] != p_b[known]]
            entry["disagreements"] = int(len(differ))
            entry["a_right"] = int((p_a[differ] == y[differ]).sum())
            entry["b_right"] = int((p_b[differ] == y[differ]).sum())
            entry["examples"] = [
                {"id": data.ids[i], "text": data.texts[i], "label": int(y[i]), "a": int(p_a[i]), "b": int(p_b[i]),
                 "score_a": round(predictions_a[i].scores[name], 3), "score_b": round(predictions_b[i].scores[name], 3)}
                for i in differ[:n_examples]
            ]
        tags[name] = entry
    common = [name for name, e in tags.items() if "b_minus_a" in e]
    result = {"n": n, "model_a": _describe(model_a), "model_b": _describe(model_b), "tags": tags}
    if common:
        result["macro_f1_common_tags"] = _macro(common, data, tagged_a, tagged_b, resample)
    result["sentiment_macro_f1"] = _sentiment(data, predictions_a, predictions_b, resample)
    result["escalate"] = _escalate(data, predictions_a, predictions_b, resample)
    return result


def _describe(model: TagClassifier) -> dict:
    return {
        "version": model.meta_.get("model_version"), "type": model.model_type, "tags": list(model.taxonomy_.names),
        "thresholds": dict(model.thresholds_),
    }


def _macro(common: list[str], data: LabeledSet, tagged_a: dict, tagged_b: dict, resample: np.ndarray) -> dict:
    idx = [data.taxonomy.names.index(name) for name in common]
    complete = np.flatnonzero((data.tags[:, idx] >= 0).all(axis=1))
    rows = complete[resample[:, : len(complete)] % len(complete)]
    per_a, per_b, per_a_s, per_b_s = [], [], [], []
    for name, j in zip(common, idx):
        y = data.tags[:, j]
        p_a, p_b = tagged_a[name], tagged_b[name]
        per_a.append(_f1_counts(y[complete], p_a[complete]))
        per_b.append(_f1_counts(y[complete], p_b[complete]))
        per_a_s.append(_f1_counts(y[rows], p_a[rows]))
        per_b_s.append(_f1_counts(y[rows], p_b[rows]))
    a, b = float(np.mean(per_a)), float(np.mean(per_b))
    a_s, b_s = np.mean(per_a_s, axis=0), np.mean(per_b_s, axis=0)
    return {
        "tags": common,
        "rows": int(len(complete)),
        "a": _interval(a, a_s).as_dict(),
        "b": _interval(b, b_s).as_dict(),
        "b_minus_a": _interval(b - a, b_s - a_s).as_dict(),
    }


def _sentiment(data: LabeledSet, pa: list[Prediction], pb: list[Prediction], resample: np.ndarray) -> dict:
    labeled = np.array([i for i, s in enumerate(data.sentiments) if s is not None])
    if len(labeled) == 0:
        return {"rows": 0}
    y = np.array([SENTIMENTS.index(data.sentiments[i]) if data.sentiments[i] else -1 for i in range(len(data))])
    p_a = np.array([SENTIMENTS.index(p.sentiment) for p in pa])
    p_b = np.array([SENTIMENTS.index(p.sentiment) for p in pb])
    rows = labeled[resample[:, : len(labeled)] % len(labeled)]
    a = float(_sentiment_macro_f1(y[labeled], p_a[labeled]))
    b = float(_sentiment_macro_f1(y[labeled], p_b[labeled]))
    a_s, b_s = _sentiment_macro_f1(y[rows], p_a[rows]), _sentiment_macro_f1(y[rows], p_b[rows])
    return {
        "rows": int(len(labeled)),
        "a": _interval(a, a_s).as_dict(),
        "b": _interval(b, b_s).as_dict(),
        "b_minus_a": _interval(b - a, b_s - a_s).as_dict(),
        "disagreements": int((p_a[labeled] != p_b[labeled]).sum()),
    }


def _escalate(data: LabeledSet, pa: list[Prediction], pb: list[Prediction], resample: np.ndarray) -> dict:
    """Escalate F1 and recall of both models on the rows labeled for it; a model without the
    head has no entry (it cannot be scored, and a promote must not drop the head unnoticed)."""
    labeled = np.flatnonzero(data.escalate >= 0)
    result: dict = {"rows": int(len(labeled)), "in_a": bool(pa) and pa[0].escalate is not None, "in_b": bool(pb) and pb[0].escalate is not None}
    if not len(labeled):
        return result
    y = data.escalate.astype(np.int64)
    rows = labeled[resample[:, : len(labeled)] % len(labeled)]
    flags = {}
    for key, predictions in (("a", pa), ("b", pb)):
        if all(predictions[i].escalate is not None for i in labeled):
            flags[key] = p = np.array([int(bool(q.escalate)) for q in predictions])
            result[key] = _interval(_f1_counts(y[labeled], p[labeled]), _f1_counts(y[rows], p[rows])).as_dict()
            result[f"recall_{key}"] = float(_recall(y[labeled], p[labeled]))
    if "a" in flags and "b" in flags:
        a_s, b_s = _f1_counts(y[rows], flags["a"][rows]), _f1_counts(y[rows], flags["b"][rows])
        result["b_minus_a"] = _interval(result["b"]["value"] - result["a"]["value"], b_s - a_s).as_dict()
    return result


def _cell(entry: dict | None) -> str:
    if not entry:
        return f"{'-':>21}"
    return f"{entry['value']:>7.3f} [{entry['low']:.3f},{entry['high']:.3f}]"


def _diff(entry: dict | None) -> str:
    if not entry:
        return f"{'-':>24}"
    marker = " *" if entry["low"] > 0 or entry["high"] < 0 else "  "
    return f"{entry['value']:>+7.3f} [{entry['low']:+.3f},{entry['high']:+.3f}]{marker}"


def format_comparison(result: dict, show_examples: bool = True) -> str:
    a, b = result["model_a"], result["model_b"]
    lines = [
        f"A: {a['version']} ({a['type']})",
        f"B: {b['version']} ({b['type']})",
        f"{result['n']} labeled comments; F1 with 95% bootstrap intervals; * = the interval of B-A excludes 0",
        "",
        f"{'tag':<18}{'labeled':>8}  {'A':>21}  {'B':>21}  {'B-A':>24}  {'threshold A/B':>13}  {'disagree (A right / B right)':>10}",
    ]
    for name, e in result["tags"].items():
        disagree = f"{e['disagreements']} ({e['a_right']}/{e['b_right']})" if "disagreements" in e else ""
        thresholds = "/".join(f"{m['thresholds'][name]:.2f}" if name in m.get("thresholds", {}) else "-" for m in (a, b))
        lines.append(f"{name:<18}{e['labeled']:>8}  {_cell(e.get('a'))}  {_cell(e.get('b'))}  {_diff(e.get('b_minus_a'))}  {thresholds:>13}  {disagree}")
    macro = result.get("macro_f1_common_tags")
    if macro:
        lines.append(f"{'macro-F1 (common)':<18}{macro['rows']:>8}  {_cell(macro['a'])}  {_cell(macro['b'])}  {_diff(macro['b_minus_a'])}")
    s = result["sentiment_macro_f1"]
    if s.get("rows"):
        lines.append(f"{'sentiment macro-F1':<18}{s['rows']:>8}  {_cell(s['a'])}  {_cell(s['b'])}  {_diff(s['b_minus_a'])}  {s['disagreements']}")
    e = result.get("escalate", {})
    if e.get("rows"):
        recalls = "/".join(f"{e[k]:.3f}" if k in e else "-" for k in ("recall_a", "recall_b"))
        lines.append(f"{'escalate F1':<18}{e['rows']:>8}  {_cell(e.get('a'))}  {_cell(e.get('b'))}  {_diff(e.get('b_minus_a'))}  recall A/B {recalls}")
    only = [name for name, e in result["tags"].items() if e["in_a"] != e["in_b"]]
    if only:
        lines.append(f"tags in one model only: {only}")
    if show_examples:
        for name, e in result["tags"].items():
            for example in e.get("examples", []):
                text = example["text"].replace("\n", " ")
                text = text if len(text) <= 60 else text[:57] + "..."
                lines.append(
                    f"  [{name}] label {example['label']} A {example['a']} ({example['score_a']}) "
                    f"B {example['b']} ({example['score_b']})  {example['id']}: {text}"
                )
    return "\n".join(lines)


@dataclass
class PromotionCheck:
    """Whether a candidate may replace the incumbent, from a paired comparison on labeled data."""

    allowed: bool  # no headline score is lower, and the escalate head is not lost
    summary: str  # "macro-F1 +0.012, sentiment macro-F1 -0.003 vs <version>"
    comparison: dict  # the full `compare_models` result


def promotion_check(incumbent: TagClassifier, candidate: TagClassifier, data: LabeledSet) -> PromotionCheck:
    """Refuse a candidate whose macro-F1 over the common tags, sentiment macro-F1 or escalate F1
    (where the labels have escalate) is lower, or that has no escalate head where the incumbent has one."""
    result = compare_models(incumbent, candidate, data, n_examples=0)
    macro = result.get("macro_f1_common_tags", {}).get("b_minus_a", {}).get("value", 0.0)
    sentiment = result["sentiment_macro_f1"].get("b_minus_a", {}).get("value", 0.0)
    summary = f"macro-F1 {macro:+.3f}, sentiment macro-F1 {sentiment:+.3f}"
    allowed = macro >= 0 and sentiment >= 0
    escalate = result["escalate"]
    if incumbent.has_escalate and not candidate.has_escalate:
        summary += ", escalate head lost (the candidate was trained without escalate labels)"
        allowed = False
    elif "b_minus_a" in escalate:
        summary += f", escalate F1 {escalate['b_minus_a']['value']:+.3f}"
        allowed = allowed and escalate["b_minus_a"]["value"] >= 0
    summary += f" vs {incumbent.meta_.get('model_version')}"
    return PromotionCheck(allowed=allowed, summary=summary, comparison=result)


def score_intervals(data: LabeledSet, predictions: list[Prediction], n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """One model's F1 per tag, tag macro-F1 and sentiment macro-F1, each with a 95% bootstrap
    interval (comments resampled with replacement), from predictions already made."""
    rng = np.random.default_rng(seed)
    resample = rng.integers(0, len(data), size=(n_bootstrap, len(data)))
    result: dict = {"n": len(data), "tags": {}}
    per_tag, per_tag_samples = [], []
    complete = np.flatnonzero((data.tags >= 0).all(axis=1))
    complete_rows = complete[resample[:, : len(complete)] % max(len(complete), 1)]
    for j, name in enumerate(data.taxonomy.names):
        y = data.tags[:, j]
        p = np.array([int(name in q.tags) for q in predictions])
        known = np.flatnonzero(y >= 0)
        if len(known) == 0:
            continue
        rows = known[resample[:, : len(known)] % len(known)]
        entry = _interval(_f1_counts(y[known], p[known]), _f1_counts(y[rows], p[rows])).as_dict()
        entry.update(positives=int((y[known] == 1).sum()), labeled=int(len(known)))
        result["tags"][name] = entry
        if len(complete):
            per_tag.append(_f1_counts(y[complete], p[complete]))
            per_tag_samples.append(_f1_counts(y[complete_rows], p[complete_rows]))
    if per_tag:
        result["macro_f1"] = _interval(float(np.mean(per_tag)), np.mean(per_tag_samples, axis=0)).as_dict()
    labeled = np.array([i for i, s in enumerate(data.sentiments) if s is not None], dtype=np.int64)
    if len(labeled):
        y = np.array([SENTIMENTS.index(s) if s else -1 for s in data.sentiments])
        p = np.array([SENTIMENTS.index(q.sentiment) for q in predictions])
        rows = labeled[resample[:, : len(labeled)] % len(labeled)]
        result["sentiment_macro_f1"] = _interval(float(_sentiment_macro_f1(y[labeled], p[labeled])), _sentiment_macro_f1(y[rows], p[rows])).as_dict()
    labeled = np.flatnonzero(data.escalate >= 0)
    if len(labeled) and all(predictions[i].escalate is not None for i in labeled):
        y = data.escalate.astype(np.int64)
        p = np.array([int(bool(q.escalate)) for q in predictions])
        rows = labeled[resample[:, : len(labeled)] % len(labeled)]
        result["escalate"] = {
            "labeled": int(len(labeled)),
            "positives": int((y[labeled] == 1).sum()),
            "f1": _interval(_f1_counts(y[labeled], p[labeled]), _f1_counts(y[rows], p[rows])).as_dict(),
            "recall": _interval(_recall(y[labeled], p[labeled]), _recall(y[rows], p[rows])).as_dict(),
            "precision": _interval(_precision(y[labeled], p[labeled]), _precision(y[rows], p[rows])).as_dict(),
        }
    return result


def _recall(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    tp = ((y == 1) & (p == 1)).sum(axis=-1)
    return tp / np.maximum((y == 1).sum(axis=-1), 1)


def _precision(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    tp = ((y == 1) & (p == 1)).sum(axis=-1)
    return tp / np.maximum((p == 1).sum(axis=-1), 1)
