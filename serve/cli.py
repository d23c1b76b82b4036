"""`kesheng` (客声, the voice of the customer): tag, train, evaluate, serve."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="客声 kesheng: service-quality tags and sentiment for Chinese customer feedback.")

ModelOption = typer.Option(None, "--model", "-m", help="Model directory (default: $KESHENG_MODEL or the bundled model).")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _load(model_dir: Optional[Path]):
    from models import ModelLoadError, load_model

    try:
        return load_model(model_dir)
    except ModelLoadError as exc:
        _fail(str(exc))


@app.command()
def tag(
    texts: list[str] = typer.Argument(None, help="Comments to tag; one JSON line is printed per comment."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="JSONL/CSV/TSV file to tag."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write (JSONL/CSV/TSV); stdout as JSONL when omitted."),
    text_column: str = typer.Option("text", "--text-column", "--text-field", help="Field/column holding the comment."),
    id_column: str = typer.Option("id", "--id-column", "--id-field", help="Field/column copied to the output id."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    model_dir: Optional[Path] = ModelOption,
):
    """Tag comments given as arguments, or every row of a file."""
    from serve.batch import BatchInputError, TagFileOptions, tag_file, tag_stream, write_jsonl

    if bool(texts) == bool(input):
        _fail("give comments as arguments or --input FILE (exactly one of them)")
    model = _load(model_dir)
    if texts:
        write_jsonl(model.predict(list(texts)), list(range(len(texts))))
        return
    options = TagFileOptions(text_field=text_column, id_field=id_column, overwrite=overwrite)
    try:
        if output is None:
            tag_stream(model, input, sys.stdout, "jsonl", options)
        else:
            count = tag_file(model, input, output, options)
            typer.echo(f"tagged {count} rows -> {output}", err=True)
    except BatchInputError as exc:
        _fail(str(exc))


@app.command()
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
):
    """Train a model and save it as a self-describing directory with its metrics."""
    from training.config import TrainConfig
    from training.data import DataValidationError
    from training.evaluate import format_metrics
    from training.train import train as run_training

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        cfg = TrainConfig.from_file(config) if config else TrainConfig()
    except (ValueError, TypeError, json.JSONDecodeError, OSError) as exc:
        _fail(f"config {config}: {exc}")
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
    try:
        result = run_training(cfg, output, overwrite=overwrite)
    except (DataValidationError, FileExistsError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"trained {result.model.meta_['model_version']} in {result.seconds:.1f}s -> {output}")
    typer.echo(format_metrics(result.metrics["test"], result.model.taxonomy_))


@app.command()
def evaluate(
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Labeled JSONL/CSV file (with texts)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Label file by corpus id, texts from --corpus-dir."),
    split: Optional[str] = typer.Option(None, help="With --labels: only this split (train, dev, test)."),
    corpus_dir: Optional[Path] = typer.Option(None, help="Directory with the public corpora ($KESHENG_CORPUS_DIR)."),
    model_dir: Optional[Path] = ModelOption,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the metrics JSON here."),
    text_column: str = typer.Option("text", help="Column with the comment."),
    group_column: Optional[str] = typer.Option(None, help="Also report metrics per value of this column (e.g. channel)."),
):
    """Measure a model on labeled data: per-tag P/R/F1, macro/micro F1, sentiment."""
    from models.base import rounded
    from training.config import ColumnMap
    from training.data import DataValidationError, load_labeled
    from training.evaluate import evaluate as run_evaluation, format_metrics

    from training.corpus import load_corpus_labels

    if bool(data) == bool(labels):
        _fail("give --data FILE or --labels FILE (exactly one of them)")
    model = _load(model_dir)
    try:
        if data:
            labeled = load_labeled(data, ColumnMap(text=text_column, group=group_column), model.taxonomy_)
        else:
            labeled = load_corpus_labels(labels, corpus_dir, model.taxonomy_, split)
    except (DataValidationError, ValueError) as exc:
        _fail(str(exc))
    metrics = run_evaluation(model, labeled, labeled.sources if (group_column or labels) else None)
    typer.echo(format_metrics(metrics, model.taxonomy_))
    if output:
        output.write_text(json.dumps(rounded(metrics), ensure_ascii=False, indent=2), encoding="utf-8")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: Optional[int] = typer.Option(None, help="Worker processes, one model copy each ($KESHENG_WORKERS, default 1)."),
    model_dir: Optional[Path] = ModelOption,
    feedback_db: Optional[Path] = typer.Option(None, help="SQLite label store for /v1/feedback ($KESHENG_FEEDBACK_DB)."),
):
    """Run the HTTP API (POST /v1/tag, /v1/feedback; GET /v1/model, /v1/health, /v1/ready, /metrics)."""
    import os
    import tempfile

    import uvicorn

    from serve.settings import Settings, SettingsError

    # Workers are separate processes that build their settings from the environment.
    if model_dir is not None:
        os.environ["KESHENG_MODEL"] = str(model_dir.resolve())
    if feedback_db is not None:
        os.environ["KESHENG_FEEDBACK_DB"] = str(feedback_db.resolve())
    if workers is not None:
        os.environ["KESHENG_WORKERS"] = str(workers)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        _fail(str(exc))
    _load(settings.model_dir)  # fail here, with a clear message, rather than in every worker
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kesheng-metrics-")
    uvicorn.run(
        "serve.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        access_log=False,  # the app writes one JSON line per request instead
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
