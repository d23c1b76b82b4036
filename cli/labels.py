"""`kesheng suggest` and `kesheng check-labels`: what to label next, and what the labels say."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kesheng.cli.options import MODEL_OPTION, fail, load
from kesheng.cli.options import count as plural


def suggest(
    input: Path = typer.Option(..., "--input", "-i", help="Unlabeled comments: JSONL/CSV/TSV."),
    output: Path = typer.Option(..., "--output", "-o", help="Comments to label: .jsonl, .csv, or .json (Label Studio tasks with pre-annotations)."),
    n: int = typer.Option(200, "--n", "-n", min=1, help="How many comments to suggest."),
    text_column: str = typer.Option("text", help="Field/column with the comment."),
    id_column: str = typer.Option("id", help="Field/column with the comment id (row number when absent)."),
    labeled: list[Path] = typer.Option(None, "--labeled", help="Labeled files (with texts) whose comments are skipped."),
    model_dir: Optional[Path] = MODEL_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
):
    """Pick the comments that would most help the model: uncertain ones, spread over different topics."""
    from kesheng.training.active import SUGGESTION_FORMATS, label_studio_config_path, suggestion_records, write_suggestions
    from kesheng.training.active import suggest as pick
    from kesheng.training.data import DataValidationError, read_rows

    if output.exists() and not overwrite:
        fail(f"{output} exists; pass --overwrite to replace it")
    if output.suffix.lower() not in SUGGESTION_FORMATS:
        fail(f"{output}: write .jsonl, .csv or .json (Label Studio tasks)")
    model = load(model_dir)
    try:
        rows = read_rows(input, text_column)
        known = [r.get(text_column) for path in (labeled or []) for r in read_rows(path)]
    except DataValidationError as exc:
        fail(str(exc))
    if not rows or text_column not in rows[0]:
        fail(f"{input}: column {text_column!r} not found; columns are {list(rows[0]) if rows else []}")
    texts = [r.get(text_column) if isinstance(r.get(text_column), str) else None for r in rows]
    picked = pick(model, texts, n, already_labeled=[t for t in known if isinstance(t, str)])
    records = suggestion_records(picked, rows, texts, id_column)
    write_suggestions(records, output, str(model.meta_.get("model_version")), model.taxonomy_)
    typer.echo(f"{plural(len(records), 'comment')} to label -> {output} (from {plural(len(rows), 'row')})", err=True)
    if output.suffix.lower() == ".json":
        typer.echo(f"Label Studio labeling config for these tasks -> {label_studio_config_path(output)}", err=True)


def check_labels(
    labels: list[Path] = typer.Option(None, "--labels", help="Label file(s) by corpus id."),
    data: list[Path] = typer.Option(None, "--data", "-d", help="Labeled JSONL/CSV files (with texts)."),
    feedback_db: list[Path] = typer.Option(None, "--feedback-db", help="The API's label store(s)."),
    label_studio: list[Path] = typer.Option(None, "--label-studio", help="Label Studio JSON export(s)."),
    argilla: list[Path] = typer.Option(None, "--argilla", help="Argilla record export(s)."),
    taxonomy_file: Optional[Path] = typer.Option(None, "--taxonomy", help="Taxonomy file (default: the bundled four tags)."),
    corpus_dir: Optional[Path] = typer.Option(None, help="Directory with the public corpora ($KESHENG_CORPUS_DIR)."),
):
    """Read label sources as training would: counts per tag and for escalate, unknown labels, and conflicting labels."""
    from kesheng.models.schema import DEFAULT_TAXONOMY, Taxonomy, TaxonomyError
    from kesheng.training.config import LabelSource
    from kesheng.training.data import DataValidationError
    from kesheng.training.sources import collect_labels

    sources = [
        LabelSource(kind, str(path))
        for kind, paths in (("feedback", feedback_db), ("label_studio", label_studio), ("argilla", argilla))
        for path in paths or []
    ]
    try:
        taxonomy = Taxonomy.from_file(taxonomy_file) if taxonomy_file else DEFAULT_TAXONOMY
        collected = collect_labels(taxonomy, [str(p) for p in labels or []], [str(p) for p in data or []], sources, corpus_dir)
    except (DataValidationError, TaxonomyError, ValueError) as exc:
        fail(str(exc))
    merged, conflicts = collected.merged, collected.conflicts
    typer.echo(f"{len(merged)} distinct comments from {collected.n_sources} source(s); taxonomy {list(taxonomy.names)}")
    for j, name in enumerate(taxonomy.names):
        column = merged.tags[:, j]
        typer.echo(f"  {name:<18} labeled {int((column >= 0).sum()):>6}  positive {int((column == 1).sum()):>6}")
    typer.echo(f"  {'sentiment':<18} labeled {sum(s is not None for s in merged.sentiments):>6}")
    typer.echo(f"  {'escalate':<18} labeled {int((merged.escalate >= 0).sum()):>6}  positive {int((merged.escalate == 1).sum()):>6}")
    typer.echo(f"{len(conflicts)} conflicting label(s) (left unlabeled when training):")
    for conflict in conflicts:
        typer.echo(f"  {conflict}")
