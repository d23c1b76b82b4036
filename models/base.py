"""What every classifier shares: the predict contract, the model directory, safe loading.

A model directory is self-describing:
    meta.json            format version, model type, model version, library versions, configs
    labels.json          taxonomy (names, Chinese names), per-tag thresholds, sentiment order
    metrics.json         evaluation of this model on data it was not trained on
    MODEL_CARD.md        the same facts for people: data, config, per-tag quality
    weights.safetensors  arrays (no pickles anywhere: loading never runs code from the folder)
    ...                  model-type specific files (vocabulary, tokenizer, ...)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence

import numpy as np

from kesheng.files.atomic import replace_directory, staging_directory
from kesheng.models.card import CARD_FILE, render_card
from kesheng.models.prediction import Prediction
from kesheng.models.schema import ESCALATE, SENTIMENTS, Taxonomy
from kesheng.nlp.non_answer import is_non_answer
from kesheng.nlp.normalize import is_cjk

__all__ = ["FORMAT_VERSION", "EpochCallback", "ModelLoadError", "TagClassifier", "library_versions", "read_json"]

FORMAT_VERSION = 1
META_FILE = "meta.json"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "weights.safetensors"


class ModelLoadError(Exception):
    """The model directory is missing, corrupt or incompatible; the message says which part."""


def read_json(directory: Path, name: str) -> Any:
    path = directory / name
    if not path.is_file():
        raise ModelLoadError(f"{directory}: missing {name} (not a kesheng model directory, or an incomplete copy)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: corrupt JSON ({exc})") from exc


def read_model_version(directory: Path) -> str | None:
    """The model version in a directory's meta.json without loading the model; None if unreadable."""
    try:
        return str(read_json(directory, META_FILE).get("model_version"))
    except (ModelLoadError, AttributeError):
        return None


def library_versions(*names: str) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("kesheng", *names):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def rounded(value: Any, digits: int = 4) -> Any:
    """Floats rounded for JSON meant to be read by people (metrics, configs)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def check_fit_inputs(texts: Sequence[str], tag_matrix, sentiments: Sequence[str | None], n_tags: int) -> np.ndarray:
    """The training labels every classifier accepts, as an int8 matrix; a clear error otherwise.

    Tag value -1 and sentiment None mean "not labeled" (partial labels).
    """
    tag_matrix = np.asarray(tag_matrix, dtype=np.int8)
    if tag_matrix.shape != (len(texts), n_tags):
        raise ValueError(f"tag_matrix shape {tag_matrix.shape} != ({len(texts)}, {n_tags})")
    if not np.isin(tag_matrix, (-1, 0, 1)).all():
        raise ValueError("tag_matrix values must be 1, 0 or -1 (unlabeled)")
    unknown = sorted(set(sentiments) - set(SENTIMENTS) - {None})
    if unknown:
        raise ValueError(f"unknown sentiment values {unknown}; expected {list(SENTIMENTS)}")
    if len(sentiments) != len(texts):
        raise ValueError(f"{len(sentiments)} sentiments for {len(texts)} texts")
    return tag_matrix


def check_escalate_labels(escalate, n_texts: int) -> np.ndarray | None:
    """The escalate labels a classifier accepts: None (no head is trained) or an int8 vector of
    1, 0 and -1 (not labeled: escalate is usually labeled on fewer comments than the tags)."""
    if escalate is None:
        return None
    escalate = np.asarray(escalate, dtype=np.int8)
    if escalate.shape != (n_texts,):
        raise ValueError(f"escalate has shape {escalate.shape}, expected ({n_texts},)")
    if not np.isin(escalate, (-1, 0, 1)).all():
        raise ValueError("escalate values must be 1, 0 or -1 (unlabeled)")
    return escalate


def learns_escalate(escalate: np.ndarray | None) -> bool:
    """A head is trained only when both classes were labeled: a head that saw no positive would
    answer "no" everywhere, which is worse than the honest "unknown" of no head."""
    return escalate is not None and bool((escalate == 1).any()) and bool((escalate == 0).any())


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def softmax(x: np.ndarray) -> np.ndarray:
    """Over the last axis."""
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


# Models learn from Chinese comments: on a comment in another language their silence is not a
# finding ("no problem, neutral"), and a survey analyst must be able to tell the two apart.
NOT_SCORED = "text not scored"  # how the note of a text a model could read nothing from ends ("no known words: text not scored")
NOT_CHINESE_NOTE = "not Chinese: the model reads Chinese comments; its tags and sentiment for this text are unreliable"
# A survey answer that says nothing ("无", "/", "none") is no finding either: a model would score it
# (negative, positive, a tag), and the analyst counts these apart from the comments.
NON_ANSWER_NOTE = "non-answer: no opinion to tag (无/没有/暂无...)"


def _with_language_note(text: str, prediction: Prediction) -> Prediction:
    """The prediction, noted when its text was scored and has letters but no Chinese character
    ("123" and "/" are not a language; a text not scored already says so)."""
    unscored = any(note.endswith(NOT_SCORED) for note in prediction.notes)
    if unscored or any(is_cjk(c) for c in text) or not any(c.isalpha() for c in text):
        return prediction
    return dataclasses.replace(prediction, notes=[*prediction.notes, NOT_CHINESE_NOTE])


def _empty_prediction(taxonomy: Taxonomy, note: str) -> Prediction:
    """A text with nothing to read: no tags and no sentiment (a pivot must not count it as neutral)."""
    return Prediction(tags=[], scores={name: 0.0 for name in taxonomy.names}, sentiment=None, sentiment_scores=None, evidence=[], notes=[note])


def _unscored_prediction(taxonomy: Taxonomy, note: str, has_escalate: bool) -> Prediction:
    """A text the model could read nothing from: no tags, neutral sentiment, and a note saying so."""
    return Prediction(
        tags=[],
        scores={name: 0.0 for name in taxonomy.names},
        sentiment="neutral",
        sentiment_scores={s: float(s == "neutral") for s in SENTIMENTS},
        evidence=[],
        notes=[note],
        escalate=False if has_escalate else None,
        escalate_score=0.0 if has_escalate else None,
    )


def check_ranges(params, **ranges: tuple[float, float]) -> None:
    """Refuse numeric params outside [low, high] (or of the wrong type): a meta.json edited by hand
    (`batch_size: 0`, `max_evidence: -5`) fails at load with its name, not at the first predict."""
    for name, (low, high) in ranges.items():
        value = getattr(params, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
            raise ValueError(f"{type(params).__name__}.{name} = {value!r}: expected a number in [{low:g}, {high:g}]")


def _probability(what: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


class EpochCallback(Protocol):
    """A hook the training pipeline hands to `fit`: called after every epoch of a model that
    trains in epochs, it returns a score (higher is better) that picks the epoch to keep."""

    def on_epoch_end(self, model: "TagClassifier") -> float: ...


class TagClassifier(ABC):
    """Multi-label problem tags + sentiment for Chinese feedback.

    Subclasses implement `_predict_texts` for non-empty strings and their own weight files;
    this class guarantees the contract: one Prediction per input, in order, whatever the input.
    Every model type fits with the same call, `fit(texts, tag_matrix, sentiments, thresholds=None,
    sample_weight=None, callbacks=())`, and is built from its params the same way (`build`).
    """

    model_type: ClassVar[str]
    config_section: ClassVar[str]  # the TrainConfig field holding this type's params
    refits_with_dev: ClassVar[bool] = True  # after thresholds are tuned on dev, the pipeline refits on train + dev

    @classmethod
    def build(cls, params, taxonomy: Taxonomy, trainer=None) -> "TagClassifier":
        """An unfitted model; `trainer` runs the optimisation of models that need one (the transformer)."""
        return cls(params, taxonomy)

    @abstractmethod
    def fit(
        self, texts, tag_matrix, sentiments, thresholds=None, sample_weight=None, callbacks: Sequence[EpochCallback] = (), escalate=None
    ) -> "TagClassifier": ...

    # Set by fit() or load().
    taxonomy_: Taxonomy
    thresholds_: dict[str, float]
    # Decision threshold of the escalate head; None: the model has no head (trained without
    # escalate labels, or before the head existed) and its predictions say escalate=None.
    escalate_threshold_: float | None = None
    metrics_: dict
    meta_: dict

    # A deployment's own escalate operating point (KESHENG_ESCALATE_THRESHOLD), used instead of the
    # learned one. A runtime setting: never saved with the model.
    escalate_threshold_override: float | None = None

    @property
    def has_escalate(self) -> bool:
        return self.escalate_threshold_ is not None

    @property
    def escalate_threshold(self) -> float | None:
        """The threshold predictions use: the deployment's override, else the one tuned on dev."""
        if not self.has_escalate:
            return None
        return self.escalate_threshold_override if self.escalate_threshold_override is not None else self.escalate_threshold_

    def set_escalate_threshold(self, threshold: float) -> None:
        """The escalate head's decision threshold (the training pipeline picks it on dev for recall)."""
        if not self.has_escalate:
            raise ValueError("this model has no escalate head (it was trained without escalate labels)")
        self.escalate_threshold_ = _probability("escalate threshold", threshold)

    def override_escalate_threshold(self, threshold: float | None) -> "TagClassifier":
        """Use `threshold` instead of the learned one (None: back to the learned one); not saved."""
        self.escalate_threshold_override = None if threshold is None else _probability("escalate threshold", threshold)
        return self

    def _escalate_fields(self, score: float | None) -> dict:
        """The Prediction fields for an escalate score (None when the model has no head)."""
        if not self.has_escalate or score is None:
            return {"escalate": None, "escalate_score": None}
        return {"escalate": bool(score >= self.escalate_threshold), "escalate_score": float(score)}

    def predict(self, texts: Sequence[str | None]) -> list[Prediction]:
        """Tag every text. None, empty and whitespace-only texts get no tags and a note; non-answers
        ("无", "/", kesheng.nlp.non_answer) get no tags, neutral sentiment and NON_ANSWER_NOTE."""
        if isinstance(texts, str):
            raise TypeError("predict() takes a list of texts; wrap a single text in a list")
        self._check_fitted()
        results: list[Prediction | None] = [None] * len(texts)
        todo_index: list[int] = []
        todo_text: list[str] = []
        for i, text in enumerate(texts):
            if text is None:
                results[i] = _empty_prediction(self.taxonomy_, "missing text")
            elif not isinstance(text, str):
                raise TypeError(f"text #{i} is {type(text).__name__}, not str")
            elif not text.strip():
                results[i] = _empty_prediction(self.taxonomy_, "empty text")
            elif is_non_answer(text):
                # Before any model and the language note: "none" is a non-answer, not an English comment.
                results[i] = self._no_signal(NON_ANSWER_NOTE)
            else:
                todo_index.append(i)
                todo_text.append(text)
        if todo_text:
            for i, prediction in zip(todo_index, self._predict_texts(todo_text), strict=True):
                results[i] = _with_language_note(texts[i], prediction)
        return results  # type: ignore[return-value]

    @abstractmethod
    def _predict_texts(self, texts: list[str]) -> list[Prediction]: ...

    def _check_fitted(self) -> None:
        if not hasattr(self, "thresholds_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load a model directory")

    def _no_signal(self, note: str) -> Prediction:
        return _unscored_prediction(self.taxonomy_, note, self.has_escalate)

    def _tags_above_threshold(self, scores: dict[str, float]) -> list[str]:
        return [name for name in self.taxonomy_.names if scores[name] >= self.thresholds_[name]]

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        """Per-tag decision thresholds (the training pipeline tunes them on held-out data)."""
        missing = set(self.taxonomy_.names) - set(thresholds)
        if missing:
            raise ValueError(f"thresholds missing for tags {sorted(missing)}")
        self.thresholds_ = {name: float(thresholds[name]) for name in self.taxonomy_.names}

    # the directory

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the model directory atomically: a crash leaves the old directory intact."""
        self._check_fitted()
        target = Path(path)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        staging = staging_directory(target)
        try:
            self._save_weights(staging)
            labels = {
                "taxonomy": self.taxonomy_.to_list(),
                "thresholds": self.thresholds_,
                "sentiments": list(SENTIMENTS),
                ESCALATE: {"threshold": self.escalate_threshold_} if self.has_escalate else None,
            }
            (staging / LABELS_FILE).write_text(json.dumps(labels, ensure_ascii=False, indent=2), encoding="utf-8")
            (staging / METRICS_FILE).write_text(
                json.dumps(rounded(getattr(self, "metrics_", {})), ensure_ascii=False, indent=2), encoding="utf-8"
            )
            meta = dict(self.meta_)
            meta.update(format_version=FORMAT_VERSION, model_type=self.model_type)
            meta.setdefault("trained_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
            meta["model_version"] = meta.get("model_version") or self._version_from(staging)
            (staging / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
            self.meta_ = meta
            (staging / CARD_FILE).write_text(render_card(self), encoding="utf-8")
            replace_directory(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def _version_from(self, staging: Path) -> str:
        digest = hashlib.sha256((staging / WEIGHTS_FILE).read_bytes()).hexdigest()[:8]
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d")
        return f"{self.model_type}-{stamp}-{digest}"

    @abstractmethod
    def _save_weights(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TagClassifier":
        directory = Path(path)
        if not directory.is_dir():
            raise ModelLoadError(f"model directory {directory} does not exist or is not a directory")
        meta = read_json(directory, META_FILE)
        if not isinstance(meta, dict):
            raise ModelLoadError(f"{directory / META_FILE}: expected a JSON object")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelLoadError(
                f"{directory}: model format version {version!r}, this kesheng reads version {FORMAT_VERSION}; "
                "retrain the model or use a matching kesheng version"
            )
        if meta.get("model_type") != cls.model_type:
            raise ModelLoadError(f"{directory}: model type {meta.get('model_type')!r}, expected {cls.model_type!r}")
        labels = read_json(directory, LABELS_FILE)
        try:
            taxonomy = Taxonomy.from_list(labels["taxonomy"])
            thresholds = {name: float(labels["thresholds"][name]) for name in taxonomy.names}
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{directory / LABELS_FILE}: malformed labels ({exc!r})") from exc
        if list(labels.get("sentiments", [])) != list(SENTIMENTS):
            raise ModelLoadError(f"{directory / LABELS_FILE}: sentiments {labels.get('sentiments')} != {list(SENTIMENTS)}")
        bad = {k: v for k, v in thresholds.items() if not (0.0 <= v <= 1.0) or math.isnan(v)}
        if bad:
            raise ModelLoadError(f"{directory / LABELS_FILE}: thresholds outside [0, 1]: {bad}")
        escalate = labels.get(ESCALATE)
        try:
            escalate_threshold = None if escalate is None else _probability("escalate threshold", escalate["threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{directory / LABELS_FILE}: malformed escalate entry {escalate!r} ({exc})") from exc
        model = cls._load_weights(directory, meta)
        model.taxonomy_ = taxonomy
        model.thresholds_ = thresholds
        model.escalate_threshold_ = escalate_threshold
        model.meta_ = meta
        model.metrics_ = read_json(directory, METRICS_FILE) if (directory / METRICS_FILE).exists() else {}
        model._check_consistent(directory)
        return model

    @classmethod
    @abstractmethod
    def _load_weights(cls, directory: Path, meta: dict) -> "TagClassifier": ...

    def _check_consistent(self, directory: Path) -> None:
        """Subclasses verify that weights and labels agree (shapes, label counts)."""
