"""`kesheng report`: the survey report of a tagged file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kesheng.cli.options import count as plural
from kesheng.cli.options import fail


def report(
    input: Path = typer.Option(..., "--input", "-i", help="A file written by `kesheng tag` (CSV/TSV/JSONL/XLSX/Parquet)."),
    output: list[Path] = typer.Option(..., "--output", "-o", help="report.html (self-contained, interactive charts), report.md (charts in report_files/) and/or report.json (the numbers); repeatable."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column with the comments (default: the longest text column)."),
    group_by: list[str] = typer.Option(None, "--group-by", "-g", help="Break down by this column (channel, industry, ...); repeatable."),
    date_column: Optional[str] = typer.Option(None, "--date-column", help="Trend by this date column, with alerts for problems whose share rose significantly."),
    period: str = typer.Option("M", "--period", help="Trend period: M month, W week, D day, Q quarter."),
    examples: int = typer.Option(3, "--examples", min=0, help="Representative comments per problem type."),
    max_escalations: int = typer.Option(20, "--max-escalations", min=0, help="Escalated comments listed at the top, most urgent first."),
    score_column: Optional[str] = typer.Option(None, "--score-column", help="Satisfaction score column (CSAT, NPS, any number): which problems cost it (drivers)."),
    score_kind: Optional[str] = typer.Option(None, "--score-kind", help="csat (1-5), nps (0-10) or number (default: detected from the column)."),
    share_method: str = typer.Option("acc", "--share-method", help="Correct problem shares for the model's errors by acc (tags) or pacc (mean scores)."),
    model_dir: Optional[Path] = typer.Option(None, "--model", "-m", help="The model that tagged the file, for its stored error rates (default: found by the file's model version)."),
    min_period_rows: int = typer.Option(100, "--min-period-rows", min=1, help="Periods with fewer comments get no alert (a note instead)."),
    themes: str = typer.Option("tfidf", "--themes", help="Themes of 其他 and each problem's scenarios: tfidf (seconds), encoder (better, minutes), auto, or off."),
    theme_sample: int = typer.Option(2000, "--theme-sample", min=50, help="Comments per scope (其他, each problem) the themes are found in."),
    title: str = typer.Option("客户反馈服务问题分析报告", "--title", help="Report title."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="CSV/TSV encoding (default: detect)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing report files."),
):
    """Summarize a tagged file: summary, alerts, corrected problem shares, satisfaction drivers, co-occurrence, sentiment, groups, trend, charts."""
    from kesheng.analysis.alerts import AlertSettings
    from kesheng.analysis.drivers import KINDS
    from kesheng.analysis.report import ReportError, ReportOptions, build_report, write_report
    from kesheng.analysis.shares import METHODS

    if period not in ("M", "W", "D", "Q", "Y"):
        fail(f"--period {period!r}: use M, W, D, Q or Y")
    if score_kind is not None and score_kind not in KINDS:
        fail(f"--score-kind {score_kind!r}: use {', '.join(KINDS)}")
    if score_kind is not None and score_column is None:
        fail("--score-kind needs --score-column")
    if share_method not in METHODS:
        fail(f"--share-method {share_method!r}: use {' or '.join(METHODS)}")
    if model_dir is not None and not model_dir.is_dir():
        fail(f"--model {model_dir}: not a model directory")
    options = ReportOptions(
        text_column=text_column,
        group_by=tuple(group_by or ()),
        date_column=date_column,
        period=period,
        examples=examples,
        max_escalations=max_escalations,
        title=title,
        encoding=encoding,
        score_column=score_column,
        score_kind=score_kind,
        share_method=share_method,
        model_dir=str(model_dir) if model_dir is not None else None,
        alerts=AlertSettings(min_period_rows=min_period_rows),
        themes=themes,
        theme_sample=theme_sample,
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
    if data.share_rates is None:
        typer.echo("note: no error rates stored for the tagging model: problem shares are raw (not corrected), labeled as such", err=True)
    if data.score_column:
        left = sum(data.score_issues.values())
        kind = f"{data.score_kind}{' (detected; set --score-kind to change)' if data.score_kind_detected else ''}"
        typer.echo(f"drivers: {plural(data.driver_rows, 'comment')} with a usable {data.score_column!r} score, read as {kind}"
                   + (f"; {plural(left, 'comment')} with a blank, non-numeric or out-of-range score left out" if left else ""), err=True)
    for alert in data.alerts:
        typer.echo(f"alert: {alert.tag} {alert.previous} {alert.previous_share:.1%} -> {alert.period} {alert.share:.1%} (Holm-adjusted p {alert.p_adjusted:.2g})", err=True)
    if written.missing_glyphs:
        typer.echo(f"warning: the chart font lacks {''.join(written.missing_glyphs)!r}; those characters show as boxes", err=True)
    typer.echo(f"report on {plural(data.rows, 'row')} ({data.scored + data.non_answers:,} with text) -> {', '.join(str(o) for o in output)}", err=True)


