"""Active learning: which unlabeled comments would teach the model most, ready to label.

Uncertainty: how close a comment's tag scores are to their thresholds (the decisions a label
would settle), plus how close its top two sentiments are. Diversity: picking greedily, each
candidate's uncertainty is discounted by its similarity to what is already picked (character
n-gram cosine), so a batch is not twenty copies of one complaint. Exact duplicates (after
normalization) and comments already labeled are skipped.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Sequence

import numpy as np

from kesheng.files.atomic import write_atomic
from kesheng.models import Prediction, TagClassifier
from kesheng.models.schema import DEFAULT_TAXONOMY, SENTIMENT_ZH, SENTIMENTS, Taxonomy
from kesheng.training.data import dedupe_key

__all__ = ["SUGGESTION_FORMATS", "ActiveParams", "Suggestion", "suggest", "suggestion_records", "uncertainty", "write_suggestions"]


@dataclass
class ActiveParams:
    sentiment_weight: float = 0.5  # sentiment margin counts half as much as the most uncertain tag
    diversity: float = 1.0  # 0: pure uncertainty ranking; 1: a near-copy of a picked comment is worth nothing
    pool_factor: int = 10  # only the n x pool_factor most uncertain comments are considered for diversity
    ngram_range: tuple[int, int] = (1, 2)  # character n-grams for the similarity
    n_features: int = 2**18  # hashed feature space for the similarity


@dataclass(frozen=True)
class Suggestion:
    index: int  # position in the input
    rank: int  # 1 = label first
    uncertainty: float  # 0..1 (1 = a score right at a threshold)
    reason: str  # the decision the label would settle, e.g. "attitude 0.48 vs threshold 0.50"
    prediction: Prediction  # the model's current guess (a pre-annotation)


def uncertainty(prediction: Prediction, thresholds: dict[str, float], sentiment_weight: float) -> tuple[float, str]:
    best, reason = 0.0, ""
    for name, score in prediction.scores.items():
        threshold = thresholds[name]
        # 1 at the threshold, 0 at the far end of the side the score is on.
        span = threshold if score < threshold else 1.0 - threshold
        value = 1.0 - abs(score - threshold) / max(span, 1e-6)
        if value > best:
            best, reason = value, f"{name} {score:.2f} vs threshold {threshold:.2f}"
    top2 = sorted(prediction.sentiment_scores.values(), reverse=True)[:2]
    sentiment_value = sentiment_weight * (1.0 - (top2[0] - top2[1]))
    if sentiment_value > best:
        best, reason = sentiment_value, f"sentiment {top2[0]:.2f} vs {top2[1]:.2f}"
    return float(best), reason


def suggest(
    model: TagClassifier,
    texts: Sequence[str | None],
    n: int,
    already_labeled: Sequence[str] = (),
    params: ActiveParams = ActiveParams(),
) -> list[Suggestion]:
    """The `n` comments to label next, best first; fewer if the input has fewer usable ones."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    from sklearn.feature_extraction.text import HashingVectorizer

    seen = {dedupe_key(t) for t in already_labeled if t}
    candidates: list[int] = []
    for i, text in enumerate(texts):
        if not text or not text.strip():
            continue
        key = dedupe_key(text)
        if not key or key in seen:
            continue
        seen.add(key)
        candidates.append(i)
    if not candidates:
        return []
    predictions = model.predict([texts[i] for i in candidates])
    scored = [uncertainty(p, model.thresholds_, params.sentiment_weight) for p in predictions]
    values = np.array([s[0] for s in scored])
    order = np.argsort(-values, kind="stable")[: max(n * params.pool_factor, n)]
    pool_texts = [texts[candidates[k]] for k in order]
    vectors = HashingVectorizer(
        analyzer="char", ngram_range=params.ngram_range, n_features=params.n_features, alternate_sign=False, norm="l2"
    ).transform(pool_texts)
    pool_values = values[order]
    max_similarity = np.zeros(len(order))
    picked: list[int] = []
    available = np.ones(len(order), dtype=bool)
    for _ in range(min(n, len(order))):
        gain = np.where(available, pool_values * (1.0 - params.diversity * max_similarity), -np.inf)
        best = int(np.argmax(gain))
        picked.append(best)
        available[best] = False
        similarity = (vectors @ vectors[best].T).toarray().ravel()
        np.maximum(max_similarity, similarity, out=max_similarity)
    return [
        Suggestion(
            index=candidates[order[k]],
            rank=rank,
            uncertainty=float(pool_values[k]),
            reason=scored[order[k]][1],
            prediction=predictions[order[k]],
        )
        for rank, k in enumerate(picked, start=1)
    ]


SUGGESTION_FORMATS = (".jsonl", ".csv", ".json")


def suggestion_records(suggestions: Sequence[Suggestion], rows: Sequence[dict], texts: Sequence[str | None], id_column: str) -> list[dict]:
    """One record per suggestion: the row's id (its row number from 1 when it has none), text and the model's guess."""
    records = []
    for s in suggestions:
        row_id = rows[s.index].get(id_column)
        records.append(
            {"id": row_id if row_id not in (None, "") else s.index + 1, "text": texts[s.index], "rank": s.rank,
             "uncertainty": round(s.uncertainty, 4), "reason": s.reason, "predicted_tags": s.prediction.tags,
             "predicted_sentiment": s.prediction.sentiment, "predicted_escalate": s.prediction.escalate}
        )
    return records


def label_studio_config(taxonomy: Taxonomy) -> str:
    """The Label Studio labeling interface the suggested tasks fit: the comment, a multi-choice
    of the taxonomy's tags (machine names as values, Chinese names shown), one sentiment and the
    escalate yes/no. The control names (`tags`, `sentiment`, `escalate`) are those the
    pre-annotations and the importer use."""
    tags = "\n".join(f'    <Choice value="{escape(t.name)}" alias="{escape(t.name)}" hint="{escape(t.description)}" html="{escape(t.zh)} {escape(t.name)}"/>' for t in taxonomy.tags)
    sentiments = "\n".join(f'    <Choice value="{s}" html="{SENTIMENT_ZH[s]} {s}"/>' for s in SENTIMENTS)
    return (
        "<View>\n"
        '  <Text name="text" value="$text"/>\n'
        '  <Header value="问题标签 (可多选; 都不是 = 其他)"/>\n'
        f'  <Choices name="tags" toName="text" choice="multiple" showInline="true">\n{tags}\n  </Choices>\n'
        '  <Header value="情感"/>\n'
        f'  <Choices name="sentiment" toName="text" choice="single" showInline="true">\n{sentiments}\n  </Choices>\n'
        '  <Header value="需升级处理 (威胁投诉监管/媒体、辱骂、安全或钱款损害、愤怒销户)"/>\n'
        '  <Choices name="escalate" toName="text" choice="single" showInline="true">\n'
        '    <Choice value="yes" html="需升级处理 yes"/>\n    <Choice value="no" html="无需升级 no"/>\n  </Choices>\n'
        "</View>\n"
    )


def label_studio_config_path(tasks: Path) -> Path:
    return tasks.with_name(f"{tasks.stem}.label_config.xml")


def write_suggestions(records: list[dict], output: Path, model_version: str, taxonomy: Taxonomy | None = None) -> None:
    """JSONL, CSV, or Label Studio tasks (.json) with the model's guesses as pre-annotations; with
    tasks, the labeling config they fit is written beside them (`<name>.label_config.xml`)."""
    suffix = output.suffix.lower()
    if suffix not in SUGGESTION_FORMATS:
        raise ValueError(f"{output}: write .jsonl, .csv or .json (Label Studio tasks)")
    if suffix == ".jsonl":
        content = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    elif suffix == ".csv":
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]) if records else ["id", "text"])
        writer.writeheader()
        for record in records:
            writer.writerow({**record, "predicted_tags": ",".join(record["predicted_tags"])})
        content = buffer.getvalue()
    else:
        tasks = [
            {"data": {"id": r["id"], "text": r["text"]},
             "predictions": [{"model_version": model_version, "score": r["uncertainty"],
                              "result": [
                                  {"from_name": "tags", "to_name": "text", "type": "choices", "value": {"choices": r["predicted_tags"]}},
                                  *([{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [r["predicted_sentiment"]]}}]
                                    if r.get("predicted_sentiment") is not None else []),
                                  *([{"from_name": "escalate", "to_name": "text", "type": "choices",
                                      "value": {"choices": ["yes" if r["predicted_escalate"] else "no"]}}]
                                    if r.get("predicted_escalate") is not None else []),
                              ]}]}
            for r in records
        ]
        content = json.dumps(tasks, ensure_ascii=False, indent=1)
        write_atomic(label_studio_config_path(output), label_studio_config(taxonomy or DEFAULT_TAXONOMY))
    write_atomic(output, content)
