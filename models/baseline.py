"""Fast baseline: TF-IDF features, one-vs-rest logistic regression for tags, softmax for sentiment.

Prediction needs only numpy/scipy; scikit-learn is imported by `fit` alone, so a served or
CLI baseline starts in about a second (most of it jieba's dictionary).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

from kesheng.models.base import (
    NOT_SCORED,
    WEIGHTS_FILE,
    EpochCallback,
    ModelLoadError,
    TagClassifier,
    check_escalate_labels,
    check_fit_inputs,
    check_ranges,
    learns_escalate,
    library_versions,
    read_json,
    sigmoid,
    softmax,
)
from kesheng.models.evidence import tag_evidence
from kesheng.models.features import Analysis, FeatureParams, TfidfFeaturizer
from kesheng.models.prediction import Evidence, Prediction
from kesheng.models.schema import DEFAULT_TAXONOMY, ESCALATE, SENTIMENTS, Taxonomy

__all__ = ["BaselineParams", "TfidfLinearClassifier"]

VOCAB_FILE = "vocab.json"


@dataclass(frozen=True)
class BaselineParams:
    features: FeatureParams = field(default_factory=FeatureParams)  # what the TF-IDF rows contain
    tag_c: float = 8.0  # inverse L2 strength of each tag's logistic regression
    sentiment_c: float = 8.0  # inverse L2 strength of the sentiment softmax regression
    escalate_c: float = 4.0  # inverse L2 strength of the escalate head's logistic regression (fewer positives than most tags)
    class_weight: str | None = "balanced"  # rare tags would otherwise never reach 0.5
    max_evidence: int = 3  # evidence spans reported per predicted tag
    batch_size: int = 1024  # texts featurized together in predict; bounds memory on big inputs

    def __post_init__(self):
        check_ranges(self, tag_c=(1e-9, 1e9), sentiment_c=(1e-9, 1e9), escalate_c=(1e-9, 1e9), max_evidence=(0, 1000), batch_size=(1, 1_000_000))

    @classmethod
    def from_dict(cls, data: dict) -> "BaselineParams":
        data = dict(data)
        data["features"] = FeatureParams(**data.get("features", {}))
        return cls(**data)


class TfidfLinearClassifier(TagClassifier):
    model_type = "tfidf-linear"
    config_section = "baseline"

    def __init__(self, params: BaselineParams = BaselineParams(), taxonomy: Taxonomy = DEFAULT_TAXONOMY):
        self.params = params
        self.taxonomy = taxonomy

    # training

    def fit(
        self,
        texts: Sequence[str],
        tag_matrix: np.ndarray,
        sentiments: Sequence[str | None],
        thresholds: dict[str, float] | None = None,
        sample_weight: np.ndarray | None = None,
        callbacks: Sequence[EpochCallback] = (),
        escalate: np.ndarray | None = None,
    ) -> "TfidfLinearClassifier":
        """Fit on texts, a (n_texts, n_tags) matrix in taxonomy order, and sentiment names.

        Tag value -1 and sentiment None mean "not labeled": the row is left out of that head
        only, so partially labeled rows still teach the others. `sample_weight` lets weakly
        labeled rows count less than hand labels. `escalate` (1, 0, -1 per text; None: no head)
        trains one more logistic regression on the same features, tone features included.
        Thresholds default to 0.5; the training pipeline tunes them on held-out data and sets
        them with `set_thresholds` and `set_escalate_threshold`. The fit is one convex solve,
        not epochs, so epoch callbacks are never called.
        """
        from sklearn.linear_model import LogisticRegression

        n_tags = len(self.taxonomy.names)
        tag_matrix = check_fit_inputs(texts, tag_matrix, sentiments, n_tags)
        escalate = check_escalate_labels(escalate, len(texts))
        has_escalate = learns_escalate(escalate)
        weight = np.ones(len(texts)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)

        self.featurizer_ = TfidfFeaturizer(self.params.features)
        analyses = [self.featurizer_.analyze(t) for t in texts]
        self.featurizer_.fit(analyses)
        matrix, _ = self.featurizer_.transform(analyses)

        n_features = matrix.shape[1]
        n_outputs = n_tags + len(SENTIMENTS) + int(has_escalate)
        coef = np.zeros((n_features, n_outputs), dtype=np.float32)
        intercept = np.zeros(n_outputs, dtype=np.float32)
        for j, name in enumerate(self.taxonomy.names):
            rows = np.flatnonzero(tag_matrix[:, j] >= 0)
            y = tag_matrix[rows, j]
            if len(y) == 0 or y.min() == y.max():
                # A tag with one class only cannot be learned: it stays at its training prior.
                intercept[j] = 30.0 if len(y) and y.max() else -30.0
                continue
            clf = LogisticRegression(C=self.params.tag_c, class_weight=self.params.class_weight, solver="liblinear")
            clf.fit(matrix[rows], y, sample_weight=weight[rows])
            coef[:, j] = clf.coef_[0]
            intercept[j] = clf.intercept_[0]
        rows = np.array([i for i, s in enumerate(sentiments) if s is not None], dtype=np.int64)
        y_sent = np.array([SENTIMENTS.index(sentiments[i]) for i in rows])
        present = sorted(set(y_sent.tolist()))
        if not present:
            raise ValueError("no row has a sentiment label")
        if len(present) == 1:
            intercept[n_tags:] = -30.0
            intercept[n_tags + present[0]] = 30.0
        else:
            clf = LogisticRegression(C=self.params.sentiment_c, class_weight=self.params.class_weight, max_iter=2000)
            clf.fit(matrix[rows], y_sent, sample_weight=weight[rows])
        if len(present) == 2:
            # sklearn keeps one weight vector for a binary problem: the second class's logit.
            coef[:, n_tags + present[1]] = clf.coef_[0]
            intercept[n_tags + present[1]] = clf.intercept_[0]
            intercept[[n_tags + k for k in range(len(SENTIMENTS)) if k not in present]] = -30.0
        elif len(present) == 3:
            for row_index, k in enumerate(clf.classes_):
                coef[:, n_tags + k] = clf.coef_[row_index]
                intercept[n_tags + k] = clf.intercept_[row_index]
        if has_escalate:
            rows = np.flatnonzero(escalate >= 0)
            clf = LogisticRegression(C=self.params.escalate_c, class_weight=self.params.class_weight, solver="liblinear")
            clf.fit(matrix[rows], escalate[rows], sample_weight=weight[rows])
            coef[:, -1] = clf.coef_[0]
            intercept[-1] = clf.intercept_[0]
        self.coef_ = coef
        self.intercept_ = intercept
        self.taxonomy_ = self.taxonomy
        self.thresholds_ = dict(thresholds) if thresholds else {name: 0.5 for name in self.taxonomy.names}
        self.escalate_threshold_ = 0.5 if has_escalate else None
        self.metrics_ = {}
        self.meta_ = {
            "params": asdict(self.params),
            "versions": library_versions("numpy", "scipy", "scikit-learn", "jieba", "safetensors"),
            "n_training_texts": len(texts),
        }
        return self

    # prediction

    def _predict_texts(self, texts: list[str]) -> list[Prediction]:
        out: list[Prediction] = []
        size = self.params.batch_size
        for start in range(0, len(texts), size):
            out.extend(self._predict_batch(texts[start : start + size]))
        return out

    def _predict_batch(self, texts: list[str]) -> list[Prediction]:
        analyses = [self.featurizer_.analyze(t) for t in texts]
        matrix, occurrences = self.featurizer_.transform(analyses)
        logits = matrix @ self.coef_ + self.intercept_
        n_tags = len(self.taxonomy_.names)
        tag_probs = sigmoid(logits[:, :n_tags])
        sent_probs = softmax(logits[:, n_tags : n_tags + len(SENTIMENTS)])
        escalate_probs = sigmoid(logits[:, n_tags + len(SENTIMENTS)]) if self.has_escalate else None
        names = self.taxonomy_.names
        results = []
        for row, analysis in enumerate(analyses):
            feature_idx, spans = occurrences[row]
            if len(feature_idx) == 0:
                results.append(self._no_signal(f"no known words: {NOT_SCORED}"))
                continue
            scores = {name: float(tag_probs[row, j]) for j, name in enumerate(names)}
            tags = self._tags_above_threshold(scores)
            sentiment_scores = {s: float(sent_probs[row, k]) for k, s in enumerate(SENTIMENTS)}
            escalate = self._escalate_fields(None if escalate_probs is None else float(escalate_probs[row]))
            explained = tags + [ESCALATE] * bool(escalate["escalate"])
            evidence = self._evidence(analysis, matrix, row, feature_idx, spans, explained) if explained else []
            results.append(
                Prediction(
                    tags=tags,
                    scores=scores,
                    sentiment=max(sentiment_scores, key=sentiment_scores.get),
                    sentiment_scores=sentiment_scores,
                    evidence=evidence,
                    notes=[],
                    **escalate,
                )
            )
        return results

    def _evidence(self, analysis: Analysis, matrix, row: int, feature_idx, spans, tags: list[str]) -> list[Evidence]:
        """Each occurrence carries its feature's tf-idf value x weight, shared among occurrences."""
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        value = dict(zip(matrix.indices[start:end].tolist(), matrix.data[start:end].tolist()))
        counts = np.bincount(feature_idx, minlength=0)
        values = np.array([value[i] for i in feature_idx.tolist()], dtype=np.float32) / counts[feature_idx]
        names = self.taxonomy_.names
        evidence: list[Evidence] = []
        for tag in tags:
            column = self.coef_.shape[1] - 1 if tag == ESCALATE else names.index(tag)
            contributions = values * self.coef_[feature_idx, column]
            evidence += tag_evidence(tag, analysis.normalized, spans, contributions, self.params.max_evidence, analysis.word_starts, analysis.word_ends)
        return evidence

    # persistence

    def _save_weights(self, directory: Path) -> None:
        vocabulary = sorted(self.featurizer_.vocabulary_, key=self.featurizer_.vocabulary_.get)
        (directory / VOCAB_FILE).write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
        save_file(
            {"idf": self.featurizer_.idf_, "coef": self.coef_, "intercept": self.intercept_},
            str(directory / WEIGHTS_FILE),
        )

    @classmethod
    def _load_weights(cls, directory: Path, meta: dict) -> "TfidfLinearClassifier":
        try:
            params = BaselineParams.from_dict(meta["params"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{directory}/meta.json: missing or malformed 'params' ({exc!r})") from exc
        vocabulary = read_json(directory, VOCAB_FILE)
        if not isinstance(vocabulary, list) or not all(isinstance(f, str) for f in vocabulary):
            raise ModelLoadError(f"{directory / VOCAB_FILE}: expected a JSON list of feature strings")
        weights_path = directory / WEIGHTS_FILE
        if not weights_path.is_file():
            raise ModelLoadError(f"{directory}: missing {WEIGHTS_FILE}")
        try:
            arrays = load_file(str(weights_path))
        except Exception as exc:  # safetensors raises its own error types for truncated files
            raise ModelLoadError(f"{weights_path}: unreadable weights ({exc})") from exc
        missing = {"idf", "coef", "intercept"} - set(arrays)
        if missing:
            raise ModelLoadError(f"{weights_path}: missing arrays {sorted(missing)}")
        model = cls(params)
        model.featurizer_ = TfidfFeaturizer(params.features)
        model.featurizer_.vocabulary_ = {f: i for i, f in enumerate(vocabulary)}
        model.featurizer_.idf_ = arrays["idf"].astype(np.float32)
        model.coef_ = arrays["coef"].astype(np.float32)
        model.intercept_ = arrays["intercept"].astype(np.float32)
        return model

    def _check_consistent(self, directory: Path) -> None:
        n_features = len(self.featurizer_.vocabulary_)
        n_outputs = len(self.taxonomy_.names) + len(SENTIMENTS) + int(self.has_escalate)
        problems = []
        if self.featurizer_.idf_.shape != (n_features,):
            problems.append(f"idf has shape {self.featurizer_.idf_.shape}, vocabulary has {n_features} features")
        if self.coef_.shape != (n_features, n_outputs):
            problems.append(f"coef has shape {self.coef_.shape}, expected ({n_features}, {n_outputs})")
        if self.intercept_.shape != (n_outputs,):
            problems.append(f"intercept has shape {self.intercept_.shape}, expected ({n_outputs},)")
        if not problems and not (np.isfinite(self.coef_).all() and np.isfinite(self.intercept_).all()):
            problems.append("weights contain NaN or infinity")
        if problems:
            raise ModelLoadError(f"{directory}: weights do not match labels/vocabulary: " + "; ".join(problems))
        self.taxonomy = self.taxonomy_
