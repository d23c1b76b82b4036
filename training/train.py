"""train: data -> fitted model with tuned thresholds and honest metrics -> model directory."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kesheng.models import TagClassifier, model_type_class
from kesheng.models.schema import DEFAULT_TAXONOMY, SENTIMENTS, Taxonomy
from kesheng.training.compare import score_intervals
from kesheng.training.config import TrainConfig
from kesheng.training.corpus import load_corpus_labels, load_corpus_splits, read_corpus, read_label_file
from kesheng.training.data import LabeledSet, dedupe_key, group_split, load_labeled
from kesheng.training.evaluate import SHARE_CORRECTION, DevScore, choose_escalate_threshold, choose_thresholds, evaluate_predictions, share_rates
from kesheng.training.fine_tune import FineTuner
from kesheng.training.weak import WeakLabeler, polarity_votes

__all__ = ["TrainResult", "build_model", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: TagClassifier
    metrics: dict  # {"test": ..., "dev": ..., "data": ...}
    seconds: float


def build_model(config: TrainConfig, taxonomy: Taxonomy) -> TagClassifier:
    """An unfitted model of the configured type, from the one model-type registry."""
    cls = model_type_class(config.model_type)
    trainer = FineTuner(replace(config.fine_tuning, seed=config.seed))
    return cls.build(getattr(config, cls.config_section), taxonomy, trainer=trainer)


def _fit(
    model: TagClassifier, data: LabeledSet, weak: LabeledSet | None, weak_weight: float, config: TrainConfig, dev: LabeledSet | None = None
) -> TagClassifier:
    if weak is None or len(weak) == 0:
        both, weights = data, None
    else:
        both = LabeledSet.concat([data, weak])
        weights = np.concatenate([np.ones(len(data)), np.full(len(weak), weak_weight)])
    # Models that train in epochs keep the one dev scores best, with the threshold tuning the pipeline applies after.
    callbacks = [DevScore(dev, config.min_positives_for_threshold, config.threshold_bounds)] if dev is not None and len(dev) else []
    escalate = both.escalate if both.has_escalate else None
    return model.fit(both.texts, both.tags, both.sentiments, sample_weight=weights, callbacks=callbacks, escalate=escalate)


def _weak_rows(config: TrainConfig, hand_train: LabeledSet | None, labeled_ids: set[str], held_out_ids: set[str], taxonomy: Taxonomy) -> LabeledSet | None:
    """Weakly labeled corpus comments. Every hand-labeled id is excluded, and so is every text
    equal to a held-out one (dev, test, report-only files): weak rows are training data."""
    if config.weak_rows <= 0:
        return None
    if not config.corpus_labels:
        raise ValueError("weak_rows needs corpus_labels (LF precision is measured on their training split)")
    polarity = polarity_votes(config.corpus_dir)
    # The labeling functions are written for the four default tags; other tags stay unlabeled.
    hand_default = LabeledSet(
        hand_train.ids, hand_train.texts,
        _project_tags(hand_train.tags, taxonomy, DEFAULT_TAXONOMY), hand_train.sentiments, DEFAULT_TAXONOMY, [],
    )
    labeler = WeakLabeler().fit(hand_default, polarity)
    corpus = read_corpus(config.corpus_dir)
    held_out = {dedupe_key(corpus[i]) for i in held_out_ids if i in corpus}
    candidates = sorted(i for i, t in corpus.items() if i not in labeled_ids and i not in held_out_ids and t.strip() and dedupe_key(t) not in held_out)
    random.Random(config.seed).shuffle(candidates)
    ids = candidates[: config.weak_rows]
    texts = [corpus[i] for i in ids]
    tag_probs, sentiment_probs = labeler.predict_proba(texts, ids, polarity)
    # A sentiment no signal supports (all LFs silent, no corpus polarity) is left unlabeled.
    sentiments = [SENTIMENTS[k] if p.max() > 0.5 else None for k, p in zip(sentiment_probs.argmax(axis=1), sentiment_probs)]
    log.info("weak supervision: %d corpus comments, LF precision measured on %d hand labels", len(ids), len(hand_train))
    weak_tags = (tag_probs >= 0.5).astype(np.int8) if config.weak_tags else np.full(tag_probs.shape, -1, dtype=np.int8)
    tags = _project_tags(weak_tags, DEFAULT_TAXONOMY, taxonomy)
    return LabeledSet(ids, texts, tags, sentiments, taxonomy, [], ["weak"] * len(ids))


def _project_tags(tags: np.ndarray, source: Taxonomy, target: Taxonomy) -> np.ndarray:
    """Columns of `tags` (in `source` order) placed in `target` order; tags `source` lacks are -1."""
    projected = np.full((tags.shape[0], len(target.names)), -1, dtype=np.int8)
    for j, name in enumerate(target.names):
        if name in source.names:
            projected[:, j] = tags[:, source.names.index(name)]
    return projected


def _source_rows(config: TrainConfig, taxonomy: Taxonomy, held_out: set[str]) -> LabeledSet:
    """Training rows from the feedback store and annotation-tool exports, merged by comment text.

    A comment that is also in the dev or test split is dropped here: a corrected copy in
    training would inflate the measured scores.
    """
    from kesheng.training.sources import load_label_source, merge_by_text

    loaded = []
    for source in config.label_sources:
        rows, conflicts = load_label_source(source, taxonomy)
        loaded.append(rows)
        for conflict in conflicts:
            log.warning("%s: conflicting labels, left unlabeled: %s", source.path, conflict.describe())
    merged, conflicts = merge_by_text(loaded, taxonomy)
    for conflict in conflicts:
        log.warning("label sources disagree, left unlabeled: %s", conflict.describe())
    keep = [i for i, text in enumerate(merged.texts) if dedupe_key(text) not in held_out]
    if len(keep) < len(merged):
        log.warning("label sources: %d comments also in dev/test were left out of training", len(merged) - len(keep))
    log.info("label sources: %d comments from %d source(s)", len(keep), len(config.label_sources))
    return merged.subset(keep)


def _tune_escalate(model: TagClassifier, dev: LabeledSet, dev_predictions: list, config: TrainConfig) -> float | None:
    """Set the escalate threshold for `config.escalate_recall` on dev; None when the model has no
    head or dev has too few escalate positives to choose (the threshold stays 0.5, with a warning)."""
    if not model.has_escalate:
        if dev.has_escalate:
            log.warning("dev has escalate labels but the training rows have none (or one class only): no escalate head")
        return None
    threshold = choose_escalate_threshold(
        dev.escalate, [p.escalate_score for p in dev_predictions], config.escalate_recall, config.min_positives_for_threshold
    )
    if threshold is None:
        positives = int((dev.escalate == 1).sum())
        log.warning("escalate: %d dev positive(s), fewer than %d: threshold kept at 0.5, not tuned for recall", positives, config.min_positives_for_threshold)
        return None
    model.set_escalate_threshold(threshold)
    return threshold


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _report_name(paths: str | list[str]) -> str:
    """A report-only label set is named after its (first) file: independent_test, ..."""
    return Path(paths if isinstance(paths, str) else paths[0]).stem


def train(config: TrainConfig, output_dir: str | Path | None = None, overwrite: bool = False) -> TrainResult:
    """Fit, tune thresholds on dev, refit, measure on test, save (when output_dir is given)."""
    started = time.perf_counter()
    if output_dir is not None and Path(output_dir).exists() and not overwrite:
        raise FileExistsError(f"{output_dir} exists; choose another directory or allow overwrite")
    # Everything is read and checked against the taxonomy before any training starts.
    log.info("stage 1/6: reading and checking the labels")
    taxonomy = config.load_taxonomy()
    parts = [load_labeled(path, config.columns, taxonomy) for path in config.train_files]
    # All label files by corpus id, joined by id, in their fixed train/dev/test splits.
    splits = load_corpus_splits(config.corpus_labels, config.corpus_dir, taxonomy) if config.corpus_labels else {}
    if splits:
        parts.append(splits["train"])
    if config.label_sources:
        held_out = {dedupe_key(t) for split in ("dev", "test") if split in splits for t in splits[split].texts}
        parts.append(_source_rows(config, taxonomy, held_out))
    if not parts:
        raise ValueError("no training data: give train_files or corpus_labels")
    data = LabeledSet.concat(parts)
    for warning in data.warnings:
        log.warning(warning)
    pool = data
    if config.test_file:
        test = load_labeled(config.test_file, config.columns, taxonomy)
    elif splits and len(splits["test"]):
        test = splits["test"]
    else:
        rest, held = group_split(data, config.test_fraction, config.seed)
        pool, test = data.subset(rest), data.subset(held)
    if config.dev_file:
        dev = load_labeled(config.dev_file, config.columns, taxonomy)
        fit_part = pool
    elif splits and len(splits["dev"]):
        dev = splits["dev"]
        fit_part = pool
    else:
        rest, held = group_split(pool, config.dev_fraction, config.seed + 1)
        fit_part, dev = pool.subset(rest), pool.subset(held)

    hand_labeled_ids = {i for part in splits.values() for i in part.ids}
    held_out_ids = {i for name in ("dev", "test") if name in splits for i in splits[name].ids}
    held_out_ids |= {
        row["id"] for paths in config.report_labels for path in ([paths] if isinstance(paths, str) else paths) for row in read_label_file(path, taxonomy)
    }
    weak = _weak_rows(config, splits.get("train"), hand_labeled_ids, held_out_ids, taxonomy) if config.weak_rows else None
    log.info("stage 2/6: fitting %s on %d comments (+%d weak), dev %d, test %d", config.model_type, len(fit_part), len(weak) if weak is not None else 0, len(dev), len(test))
    model = _fit(build_model(config, taxonomy), fit_part, weak, config.weak_weight, config, dev)
    log.info("stage 3/6: tuning each tag's threshold on dev")
    dev_predictions = model.predict(dev.texts)
    thresholds = choose_thresholds(
        dev.tags, dev_predictions, taxonomy, config.min_positives_for_threshold, config.threshold_bounds
    )
    model.set_thresholds(thresholds)
    escalate_threshold = _tune_escalate(model, dev, dev_predictions, config)
    dev_metrics = evaluate_predictions(dev, model.predict(dev.texts))
    if config.refit_with_dev and model.refits_with_dev:
        log.info("stage 4/6: refitting on train + dev")
        model = _fit(build_model(config, taxonomy), LabeledSet.concat([fit_part, dev]), weak, config.weak_weight, config)
        model.set_thresholds(thresholds)
        if escalate_threshold is not None and model.has_escalate:
            model.set_escalate_threshold(escalate_threshold)
    log.info("stage 5/6: measuring on test%s", " and the report-only label files" if config.report_labels else "")
    test_predictions = model.predict(test.texts)
    test_metrics = evaluate_predictions(test, test_predictions, test.sources)
    test_metrics["warnings"] = [
        f"tag {name!r} has {m['support']} positive(s) among {m['n']} test comments (fewer than {config.min_test_positives}): its F1 is mostly noise, and so is the macro-F1 it enters"
        for name, m in test_metrics["tags"].items()
        if m["support"] < config.min_test_positives
    ]
    for warning in test_metrics["warnings"]:
        log.warning(warning)
    if model.has_escalate:
        metrics_escalate = dev_metrics.get("escalate", {})
        log.info(
            "escalate threshold %.4f: dev recall %s, precision %s (target recall %.2f)",
            model.escalate_threshold_, _fmt(metrics_escalate.get("recall")), _fmt(metrics_escalate.get("precision")), config.escalate_recall,
        )
    metrics = {
        "test": test_metrics,
        "intervals": {"test": score_intervals(test, test_predictions, seed=config.seed)},
        "dev_before_refit": dev_metrics,
        # The final model's error rates on rows it never trained on: dev is refit into the final
        # tfidf-linear model (its rates there are in-sample, recall near 1), so they come from test.
        SHARE_CORRECTION: share_rates(test, test_predictions, f"test split ({len(test)} comments held out from training)"),
        "data": {
            "train_files": [str(p) for p in config.train_files],
            "n_fit": len(fit_part),
            "n_dev": len(dev),
            "n_test": len(test),
            "n_weak": len(weak) if weak is not None else 0,
            "n_final_training": model.meta_["n_training_texts"],
        },
    }
    # Reported only: measured on the final model after every choice was made, never fed back.
    for paths in config.report_labels:
        reported = load_corpus_labels(paths, config.corpus_dir, taxonomy, "test")
        metrics["intervals"][_report_name(paths)] = score_intervals(reported, model.predict(reported.texts), seed=config.seed)
    model.metrics_ = metrics
    model.meta_["training_config"] = config.to_dict()
    seconds = time.perf_counter() - started
    model.meta_["training_seconds"] = round(seconds, 2)
    if output_dir is not None:
        log.info("stage 6/6: saving %s", output_dir)
        model.save(output_dir, overwrite=overwrite)
    return TrainResult(model, metrics, seconds)
