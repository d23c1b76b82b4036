"""`kesheng report`: the survey report of a tagged file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kesheng.cli.options import count as plural
from kesheng.cli.options import fail


def report(
    input: Path = typer.Option(..., "--input", "-i", help="A file written by `kesheng tag` (CSV/TSV/JSONL/XLSX/Parquet)."),
    output: list[Path] = typer.Option(..., "--output", "-o", help="report.html (self-contained) and/or report.md (charts in report_files/); repeatable."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column with the comments (default: the longest text column)."),
    group_by: list[str] = typer.Option(None, "--group-by", "-g", help="Break down by this column (channel, industry, ...); repeatable."),
    date_column: Optional[str] = typer.Option(None, "--date-column", help="Trend by this date column."),
    period: str = typer.Option("M", "--period", help="Trend period: M month, W week, D day, Q quarter."),
    examples: int = typer.Option(3, "--examples", min=0, help="Representative comments per problem type."),
    max_escalations: int = typer.Option(20, "--max-escalations", min=0, help="Escalated comments listed at the top, most urgent first."),
    title: str = typer.Option("客户反馈服务问题分析报告", "--title", help="Report title."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="CSV/TSV encoding (default: detect)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing report files."),
):
    """Summarize a tagged file: problem table, co-occurrence, sentiment, groups, trend, charts."""
    from kesheng.analysis.report import ReportError, ReportOptions, build_report, write_report

    if period not in ("M", "W", "D", "Q", "Y"):
        fail(f"--period {period!r}: use M, W, D, Q or Y")
    options = ReportOptions(
        text_column=text_column,
        group_by=tuple(group_by or ()),
        date_column=date_column,
        period=period,
        examples=examples,
        max_escalations=max_escalations,
        title=title,
        encoding=encoding,
    )
    try:
        for target in output:
            if target.exists() and not overwrite:
                fail(f"{target} exists; pass --overwrite to replace it")
        data = build_report(input, options)
        if date_column and (data.trend is None or not len(data.trend)):
            fail(f"--date-column {date_column!r}: no value of it parses as a date in {data.scored:,} comments; choose the column with dates")
        if date_column and data.unparsed_dates:
            typer.echo(f"warning: {plural(data.unparsed_dates, 'comment')} whose {date_column!r} does not parse as a date are left out of the trend", err=True)
        written = write_report(data, output, title=title, overwrite=overwrite)
    except ReportError as exc:
        fail(str(exc))
    if data.text_column_guessed:
        typer.echo(f"comments read from column {data.text_column!r} (choose another with --text-column)", err=True)
    versions = [v for v in data.model_versions if v]
    if len(data.model_versions) > 1:
        typer.echo(f"warning: the file was tagged by several model versions ({', '.join(sorted(v or 'not recorded' for v in data.model_versions))}); its shares mix them", err=True)
    elif not versions:
        typer.echo("note: the file records no model version (tagged by an older kesheng); Chinese tag names come from the bundled taxonomy", err=True)
    if written.missing_glyphs:
        typer.echo(f"warning: the chart font lacks {''.join(written.missing_glyphs)!r}; those characters show as boxes", err=True)
    typer.echo(f"report on {plural(data.rows, 'row')} ({data.scored:,} with text) -> {', '.join(str(o) for o in output)}", err=True)


