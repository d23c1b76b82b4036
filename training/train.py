"""train: data -> fitted model with tuned thresholds and honest metrics -> model directory."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import TagClassifier
from models.baseline import TfidfLinearClassifier
from models.schema import DEFAULT_TAXONOMY, SENTIMENTS
from training.config import TrainConfig
from training.corpus import SPLITS, load_corpus_splits, read_corpus
from training.data import LabeledSet, group_split, load_labeled
from training.evaluate import choose_thresholds, evaluate, evaluate_predictions
from training.weak import WeakLabeler, polarity_votes

__all__ = ["TrainResult", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: TagClassifier
    metrics: dict  # {"test": ..., "dev": ..., "data": ...}
    seconds: float


def _build(config: TrainConfig) -> TfidfLinearClassifier:
    if config.model_type != "tfidf-linear":
        raise ValueError(f"unknown model_type {config.model_type!r}; available: ['tfidf-linear']")
    return TfidfLinearClassifier(config.baseline, DEFAULT_TAXONOMY)


def _fit(model: TfidfLinearClassifier, data: LabeledSet, weak: LabeledSet | None, weak_weight: float) -> TfidfLinearClassifier:
    if weak is None or len(weak) == 0:
        return model.fit(data.texts, data.tags, data.sentiments)
    both = LabeledSet.concat([data, weak])
    weights = np.concatenate([np.ones(len(data)), np.full(len(weak), weak_weight)])
    return model.fit(both.texts, both.tags, both.sentiments, sample_weight=weights)


def _weak_rows(config: TrainConfig, hand_train: LabeledSet, labeled_ids: set[str]) -> LabeledSet | None:
    """Weakly labeled corpus comments; every hand-labeled id (any split) is excluded."""
    if config.weak_rows <= 0:
        return None
    if not config.corpus_labels:
        raise ValueError("weak_rows needs corpus_labels (LF precision is measured on their training split)")
    polarity = polarity_votes(config.corpus_dir)
    labeler = WeakLabeler().fit(hand_train, polarity)
    corpus = read_corpus(config.corpus_dir)
    candidates = sorted(i for i, t in corpus.items() if i not in labeled_ids and t.strip())
    random.Random(config.seed).shuffle(candidates)
    ids = candidates[: config.weak_rows]
    texts = [corpus[i] for i in ids]
    tag_probs, sentiment_probs = labeler.predict_proba(texts, ids, polarity)
    # A sentiment no signal supports (all LFs silent, no corpus polarity) is left unlabeled.
    sentiments = [SENTIMENTS[k] if p.max() > 0.5 else None for k, p in zip(sentiment_probs.argmax(axis=1), sentiment_probs)]
    log.info("weak supervision: %d corpus comments, LF precision measured on %d hand labels", len(ids), len(hand_train))
    tags = (tag_probs >= 0.5).astype(np.int8) if config.weak_tags else np.full(tag_probs.shape, -1, dtype=np.int8)
    return LabeledSet(ids, texts, tags, sentiments, DEFAULT_TAXONOMY, [], ["weak"] * len(ids))


def train(config: TrainConfig, output_dir: str | Path | None = None, overwrite: bool = False) -> TrainResult:
    """Fit, tune thresholds on dev, refit, measure on test, save (when output_dir is given)."""
    started = time.perf_counter()
    if output_dir is not None and Path(output_dir).exists() and not overwrite:
        raise FileExistsError(f"{output_dir} exists; choose another directory or allow overwrite")
    parts = [load_labeled(path, config.columns, DEFAULT_TAXONOMY) for path in config.train_files]
    per_file = [load_corpus_splits(path, config.corpus_dir, DEFAULT_TAXONOMY) for path in config.corpus_labels]
    corpus = {split: [splits[split] for splits in per_file] for split in SPLITS}
    parts += corpus["train"]
    if not parts:
        raise ValueError("no training data: give train_files or corpus_labels")
    data = LabeledSet.concat(parts)
    for warning in data.warnings:
        log.warning(warning)
    pool = data
    if config.test_file:
        test = load_labeled(config.test_file, config.columns, DEFAULT_TAXONOMY)
    elif any(len(p) for p in corpus["test"]):
        test = LabeledSet.concat(corpus["test"])
    else:
        rest, held = group_split(data, config.test_fraction, config.seed)
        pool, test = data.subset(rest), data.subset(held)
    if config.dev_file:
        dev = load_labeled(config.dev_file, config.columns, DEFAULT_TAXONOMY)
        fit_part = pool
    elif any(len(p) for p in corpus["dev"]):
        dev = LabeledSet.concat(corpus["dev"])
        fit_part = pool
    else:
        rest, held = group_split(pool, config.dev_fraction, config.seed + 1)
        fit_part, dev = pool.subset(rest), pool.subset(held)

    hand_labeled_ids = {i for split in SPLITS for part in corpus[split] for i in part.ids}
    weak = _weak_rows(config, LabeledSet.concat(corpus["train"]), hand_labeled_ids) if config.weak_rows else None
    model = _fit(_build(config), fit_part, weak, config.weak_weight)
    dev_predictions = model.predict(dev.texts)
    thresholds = choose_thresholds(
        dev.tags, dev_predictions, DEFAULT_TAXONOMY, config.min_positives_for_threshold, config.threshold_bounds
    )
    model.set_thresholds(thresholds)
    dev_metrics = evaluate_predictions(dev, model.predict(dev.texts))
    if config.refit_with_dev:
        model = _fit(_build(config), LabeledSet.concat([fit_part, dev]), weak, config.weak_weight)
        model.set_thresholds(thresholds)
    test_metrics = evaluate(model, test, groups=test.sources)
    metrics = {
        "test": test_metrics,
        "dev_before_refit": dev_metrics,
        "data": {
            "train_files": [str(p) for p in config.train_files],
            "n_fit": len(fit_part),
            "n_dev": len(dev),
            "n_test": len(test),
            "n_weak": len(weak) if weak is not None else 0,
            "n_final_training": model.meta_["n_training_texts"],
        },
    }
    model.metrics_ = metrics
    model.meta_["training_config"] = config.to_dict()
    seconds = time.perf_counter() - started
    model.meta_["training_seconds"] = round(seconds, 2)
    if output_dir is not None:
        model.save(output_dir, overwrite=overwrite)
    return TrainResult(model, metrics, seconds)
