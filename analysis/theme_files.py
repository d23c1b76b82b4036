"""`kesheng themes` on a tagged file: the comments in scope, their themes, and what is written.

Scope: `other` (the default) is the comments with text and no tag, the report's 其他 row;
`all` is every comment with text; a tag name (machine or Chinese) is the comments with that
tag, whose themes are the tag's scenarios. Shares are of the comments in scope and of all
comments with text. Every output is rendered before the first is written, and each is written
atomically: a failure (bad option, bad file, full disk) leaves no half-written file.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from kesheng.analysis.report import ReportError, check_flags, read_tagged, text_presence
from kesheng.analysis.themes import ThemeModel, ThemeParams, find_themes
from kesheng.files.atomic import atomic_path, write_atomic
from kesheng.files.readers import TEXT_SAMPLE_ROWS, InputFileError, choose_text_column, format_of
from kesheng.models.embedding import TextEmbedder
from kesheng.models.rows import MODEL_VERSION_COLUMN, prediction_columns, tag_columns
from kesheng.models.schema import DEFAULT_TAXONOMY, OTHER_ZH, SENTIMENT_ZH, SENTIMENTS, Taxonomy
from kesheng.stores.registry import known_taxonomy

__all__ = [
    "SUMMARY_FORMATS",
    "ASSIGNMENT_FORMATS",
    "ThemeOptions",
    "ThemeSummary",
    "ThemeRun",
    "ThemesError",
    "discover_themes",
    "export_records",
    "render_html",
    "render_markdown",
    "write_outputs",
]

SUMMARY_FORMATS = (".html", ".md", ".json")
ASSIGNMENT_FORMATS = (".csv", ".tsv", ".jsonl", ".xlsx", ".parquet")
MAX_GROUPS = 8  # groups shown per grouping column; the rest are summed as 其他


class ThemesError(ValueError):
    """Bad input or options: one line for the user, nothing written."""


@dataclass
class ThemeOptions:
    scope: str = "other"  # other (untagged, 其他), all, or a tag (its scenarios)
    text_column: str | None = None  # None: the column `kesheng tag` would choose
    group_by: tuple[str, ...] = ()  # how each theme splits across these columns
    encoding: str | None = None  # CSV/TSV encoding; None detects
    sheet: str | None = None  # XLSX sheet; None reads the first
    params: ThemeParams = field(default_factory=ThemeParams)  # the clustering


@dataclass
class ThemeSummary:
    """What every summary format shows (themes.json is this, as JSON)."""

    source: str
    scope: str
    scope_zh: str
    text_column: str
    rows: int  # rows in the file
    rows_with_text: int
    scope_rows: int  # comments in scope
    clustered: int  # comments in scope that joined a theme
    embeddings: str
    min_size: int
    themes: list[dict]  # id, label, terms, size, share (of scope), share_of_all, examples, sentiment, groups
    notes: list[str]
    model_versions: list[str]


@dataclass
class ThemeRun:
    """A finished run: the summary, the file as read, and where each row went."""

    summary: ThemeSummary
    frame: pd.DataFrame  # every input row with its columns
    in_scope: np.ndarray  # bool per row
    model: ThemeModel  # over the rows in scope, in file order
    taxonomy: Taxonomy  # of the model version that tagged the file (or the bundled one)

    def theme_column(self) -> np.ndarray:
        """Theme id per input row: -1 out of scope or in no theme."""
        column = np.full(len(self.frame), -1)
        column[self.in_scope] = self.model.assignment
        return column


def _read_all(path: Path, options: ThemeOptions) -> pd.DataFrame:
    try:
        chunks = list(read_tagged(path, options.encoding, options.sheet))
    except ReportError as exc:
        raise ThemesError(str(exc)) from exc
    frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    if frame.empty:
        raise ThemesError(f"{path}: no rows")
    return frame


def _flags(frame: pd.DataFrame, column: str) -> np.ndarray:
    try:
        return check_flags(frame, column).to_numpy() == 1
    except ReportError as exc:
        raise ThemesError(str(exc)) from exc


def _taxonomy(frame: pd.DataFrame) -> Taxonomy:
    versions = [v for v in frame.get(MODEL_VERSION_COLUMN, pd.Series(dtype=str)).dropna().astype(str).unique() if v]
    for version in versions:
        found = known_taxonomy(version)
        if found is not None:
            return found
    return DEFAULT_TAXONOMY


def _scope(frame: pd.DataFrame, scope: str, has_text: np.ndarray, taxonomy: Taxonomy) -> tuple[np.ndarray, str, str]:
    """Rows in scope, the scope's machine name and its Chinese name."""
    tags = tag_columns(list(frame.columns))
    if scope == "all":
        return has_text, "all", "全部评论"
    if not tags:
        raise ThemesError("the file has no tag columns (a column X beside X_score): tag it with `kesheng tag` first, or use --scope all")
    if scope == "other":
        tagged = np.zeros(len(frame), dtype=bool)
        for tag in tags:
            tagged |= _flags(frame, tag)
        return has_text & ~tagged, "other", OTHER_ZH
    by_zh = {t.zh: t.name for t in taxonomy.tags}
    name = by_zh.get(scope, scope)
    if name not in tags:
        raise ThemesError(f"--scope {scope!r}: the file has no tag {scope!r}; its tags are {', '.join(tags)} (or use other / all)")
    zh = next((t.zh for t in taxonomy.tags if t.name == name), name)
    return has_text & _flags(frame, name), name, zh


def discover_themes(path: str | os.PathLike, embedder: TextEmbedder, options: ThemeOptions = ThemeOptions(), progress=None) -> ThemeRun:
    """Read a tagged file, find the themes of the comments in scope and summarize them."""
    source = Path(path)
    frame = _read_all(source, options)
    tags = tag_columns(list(frame.columns))
    try:
        text_column, _ = choose_text_column(list(frame.columns), frame.head(TEXT_SAMPLE_ROWS).to_dict("records"), options.text_column, exclude=prediction_columns(tags))
    except InputFileError as exc:
        raise ThemesError(str(exc)) from exc
    if text_column not in frame.columns:
        raise ThemesError(f"--text-column {text_column!r}: no such column; columns are {', '.join(map(str, frame.columns))}")
    missing = [c for c in options.group_by if c not in frame.columns]
    if missing:
        raise ThemesError(f"--group-by {missing[0]!r}: no such column; columns are {', '.join(map(str, frame.columns))}")
    texts = frame[text_column].map(lambda v: v if isinstance(v, str) else ("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)))
    # Non-answers ("无", "/") are left out as empty rows are, as in the report: they form no theme.
    present, non_answer = text_presence(texts)
    non_answers = non_answer.to_numpy(dtype=bool)
    has_text = present.to_numpy(dtype=bool) & ~non_answers
    taxonomy = _taxonomy(frame)
    in_scope, scope, scope_zh = _scope(frame, options.scope, has_text, taxonomy)
    scoped_texts = texts[in_scope].tolist()
    model = find_themes(scoped_texts, embedder, options.params, progress)
    versions = sorted({str(v) for v in frame.get(MODEL_VERSION_COLUMN, pd.Series(dtype=str)).dropna() if str(v)})
    summary = ThemeSummary(
        source=str(source),
        scope=scope,
        scope_zh=scope_zh,
        text_column=text_column,
        rows=len(frame),
        rows_with_text=int(has_text.sum()),
        scope_rows=int(in_scope.sum()),
        clustered=model.clustered,
        embeddings=model.embedder,
        min_size=model.min_size,
        themes=_theme_rows(frame[in_scope], model, options.group_by, int(in_scope.sum()), int(has_text.sum())),
        notes=list(model.notes),
        model_versions=versions,
    )
    if non_answers.any():
        summary.notes.append(f"{int(non_answers.sum()):,} 条无实质内容（无/没有/暂无…）未计入")
    if not summary.scope_rows:
        summary.notes.insert(0, f"no comment is in scope {scope_zh}")
    return ThemeRun(summary, frame, in_scope, model, taxonomy)


def _theme_rows(scoped: pd.DataFrame, model: ThemeModel, group_by: Sequence[str], scope_rows: int, rows_with_text: int) -> list[dict]:
    sentiments = scoped["sentiment"].fillna("").astype(str).to_numpy() if "sentiment" in scoped.columns else None
    rows = []
    for theme in model.themes:
        members = model.assignment == theme.id
        row = {
            "id": theme.id,
            "label": theme.label,
            "terms": [{"term": t, "weight": w} for t, w in theme.terms],
            "size": theme.size,
            "share": theme.size / scope_rows if scope_rows else 0.0,
            "share_of_all": theme.size / rows_with_text if rows_with_text else 0.0,
            "examples": theme.examples,
            "sentiment": {s: int((sentiments[members] == s).sum()) for s in SENTIMENTS} if sentiments is not None else None,
            "groups": {},
        }
        for column in group_by:
            values = scoped[column].fillna("").astype(str).to_numpy()
            totals = Counter(values)
            inside = Counter(values[members])
            top = [v for v, _ in totals.most_common(MAX_GROUPS)]
            split = {v: {"count": inside.get(v, 0), "share_of_group": inside.get(v, 0) / totals[v]} for v in top}
            rest_total = sum(n for v, n in totals.items() if v not in top)
            if rest_total:
                rest = sum(n for v, n in inside.items() if v not in top)
                split["其他"] = {"count": rest, "share_of_group": rest / rest_total}
            row["groups"][column] = split
        rows.append(row)
    return rows


# Rendering


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _headline(summary: ThemeSummary) -> str:
    out = (
        f"{summary.scope_zh}：{summary.scope_rows:,} 条评论（共 {summary.rows_with_text:,} 条有文本），"
        f"归入 {len(summary.themes)} 个主题的 {summary.clustered:,} 条（{_pct(summary.clustered / summary.scope_rows) if summary.scope_rows else '0%'}），"
        f"其余不属于任何主题。"
    )
    return out


def _sentiment_text(mix: dict | None) -> str:
    if not mix or not sum(mix.values()):
        return ""
    total = sum(mix.values())
    return " ".join(f"{SENTIMENT_ZH[s]}{_pct(n / total)}" for s, n in mix.items() if n)


CSS = (
    "body{font-family:'Noto Sans CJK SC','PingFang SC','Microsoft YaHei',sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222}"
    "table{border-collapse:collapse;width:100%;margin:12px 0}th,td{border:1px solid #ddd;padding:6px 8px;vertical-align:top;text-align:left}"
    "th{background:#f4f6f8}.bar{background:#4c78a8;height:10px;display:inline-block;margin-right:6px}.num{text-align:right;white-space:nowrap}"
    "ol{margin:0;padding-left:20px}.muted{color:#777;font-size:90%}"
)


def render_html(summary: ThemeSummary, title: str) -> str:
    e = html.escape
    parts = [
        f"<!DOCTYPE html><html lang='zh-CN'><head><meta charset='utf-8'><title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1><p>{e(_headline(summary))}</p>",
        f"<p class='muted'>来源 {e(summary.source)}；文本列 {e(summary.text_column)}；向量 {e(summary.embeddings)}；最小主题 {summary.min_size:,} 条。</p>",
    ]
    parts += [f"<p class='muted'>{e(n)}</p>" for n in summary.notes]
    if summary.themes:
        parts.append("<table><tr><th>#</th><th>主题</th><th class='num'>评论数</th><th class='num'>占范围</th><th class='num'>占全部</th><th>情感</th><th>代表性评论</th></tr>")
        for t in summary.themes:
            bar = f"<span class='bar' style='width:{max(2, round(120 * t['share']))}px'></span>"
            examples = "".join(f"<li>{e(x)}</li>" for x in t["examples"])
            words = "、".join(e(w["term"]) for w in t["terms"][:6])
            parts.append(
                f"<tr><td>{t['id']}</td><td><b>{e(t['label'])}</b><br><span class='muted'>{words}</span></td><td class='num'>{t['size']:,}</td>"
                f"<td class='num'>{bar}{_pct(t['share'])}</td><td class='num'>{_pct(t['share_of_all'])}</td><td>{e(_sentiment_text(t['sentiment']))}</td><td><ol>{examples}</ol></td></tr>"
            )
        parts.append("</table>")
        for column in summary.themes[0]["groups"]:
            groups = list(summary.themes[0]["groups"][column])
            parts.append(f"<h2>按 {e(column)} 分布</h2><p class='muted'>每格：该组范围内评论中属于该主题的比例（条数）。</p><table><tr><th>主题</th>")
            parts += [f"<th class='num'>{e(g)}</th>" for g in groups]
            parts.append("</tr>")
            for t in summary.themes:
                cells = "".join(f"<td class='num'>{_pct(c['share_of_group'])} ({c['count']:,})</td>" for c in t["groups"][column].values())
                parts.append(f"<tr><td>{e(t['label'])}</td>{cells}</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def render_markdown(summary: ThemeSummary, title: str) -> str:
    lines = [f"# {title}", "", _headline(summary), "", f"来源 `{summary.source}`；文本列 `{summary.text_column}`；向量 {summary.embeddings}；最小主题 {summary.min_size:,} 条。", ""]
    lines += [f"> {n}" for n in summary.notes]
    if summary.themes:
        lines += ["", "| # | 主题 | 评论数 | 占范围 | 占全部 | 情感 | 代表性评论 |", "|---|---|---:|---:|---:|---|---|"]
        for t in summary.themes:
            examples = "<br>".join(x.replace("|", "\\|").replace("\n", " ") for x in t["examples"])
            lines.append(f"| {t['id']} | **{t['label']}** | {t['size']:,} | {_pct(t['share'])} | {_pct(t['share_of_all'])} | {_sentiment_text(t['sentiment'])} | {examples} |")
        for column in summary.themes[0]["groups"]:
            groups = list(summary.themes[0]["groups"][column])
            lines += ["", f"## 按 {column} 分布", "", "| 主题 | " + " | ".join(groups) + " |", "|---|" + "---:|" * len(groups)]
            for t in summary.themes:
                lines.append(f"| {t['label']} | " + " | ".join(f"{_pct(c['share_of_group'])} ({c['count']:,})" for c in t["groups"][column].values()) + " |")
    return "\n".join(lines) + "\n"


def _summary_json(summary: ThemeSummary) -> str:
    return json.dumps(asdict(summary), ensure_ascii=False, indent=1) + "\n"


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    fmt = format_of(path)
    with atomic_path(path) as temporary:
        if fmt == "csv":
            frame.to_csv(temporary, index=False, encoding="utf-8")
        elif fmt == "tsv":
            frame.to_csv(temporary, index=False, sep="\t", encoding="utf-8")
        elif fmt == "jsonl":
            frame.to_json(temporary, orient="records", lines=True, force_ascii=False)
        elif fmt == "xlsx":
            frame.to_excel(temporary, index=False, engine="openpyxl")
        else:
            frame.to_parquet(temporary, index=False)


def check_outputs(outputs: Sequence[Path], assignments: Path | None, overwrite: bool) -> None:
    """Refuse bad output names before any work is done."""
    for target in outputs:
        if target.suffix.lower() not in SUMMARY_FORMATS:
            raise ThemesError(f"{target}: write .html, .md or .json")
    if assignments is not None and assignments.suffix.lower() not in ASSIGNMENT_FORMATS:
        raise ThemesError(f"{assignments}: assignments are written as {', '.join(ASSIGNMENT_FORMATS)}")
    for target in [*outputs, *([assignments] if assignments else [])]:
        if target.exists() and not overwrite:
            raise ThemesError(f"{target} exists; pass --overwrite to replace it")


def write_outputs(run: ThemeRun, outputs: Sequence[Path], assignments: Path | None, title: str) -> None:
    """Every summary file and the assignments file; all rendered before the first is written."""
    rendered = {}
    for target in outputs:
        suffix = target.suffix.lower()
        rendered[target] = render_html(run.summary, title) if suffix == ".html" else render_markdown(run.summary, title) if suffix == ".md" else _summary_json(run.summary)
    table = None
    if assignments is not None:
        theme = run.theme_column()
        labels = {t["id"]: t["label"] for t in run.summary.themes}
        table = run.frame.copy()
        table["theme"] = theme
        table["theme_label"] = [labels.get(int(i), "") for i in theme]
    for target, content in rendered.items():
        write_atomic(target, content)
    if table is not None:
        _write_table(table, assignments)


# From a theme to a tag


def export_records(run: ThemeRun, theme_id: int, new_tag: str, limit: int = 500) -> list[dict]:
    """Comments to confirm for a new tag made from a theme: its members (pre-annotated with the
    new tag, nearest the centre first) and its near misses (the comments in scope outside it that
    are closest to its centre, pre-annotated without it), each with the tags and sentiment the file holds.
    The labeler's answers on both teach the new tag its boundary."""
    if not 0 <= theme_id < len(run.summary.themes):
        raise ThemesError(f"--export {theme_id}: no such theme; themes are 0..{len(run.summary.themes) - 1}" if run.summary.themes else "--export: no themes were found")
    scoped = run.frame[run.in_scope]
    model = run.model
    tags = tag_columns(list(run.frame.columns))
    ids = scoped["id"].tolist() if "id" in scoped.columns else (np.flatnonzero(run.in_scope) + 1).tolist()
    closeness = np.nan_to_num(model.similarities[:, theme_id], nan=-2.0)
    members = np.flatnonzero(model.assignment == theme_id)
    near = np.flatnonzero((model.assignment != theme_id) & ~np.isnan(model.similarities[:, theme_id]))
    members = members[np.argsort(-closeness[members], kind="stable")][:limit]
    near = near[np.argsort(-closeness[near], kind="stable")][: max(1, limit // 2)]
    label = run.summary.themes[theme_id]["label"]
    text_column = run.summary.text_column
    records = []
    for rank, (position, member) in enumerate([(p, True) for p in members] + [(p, False) for p in near], start=1):
        row = scoped.iloc[position]
        existing = [t for t in tags if str(row.get(t)) in ("1", "1.0", "True")]
        escalate = row.get("escalate")
        records.append(
            {
                "id": ids[position],
                "text": row[text_column],
                "rank": rank,
                "uncertainty": round(float(closeness[position]), 4),
                "reason": f"{'in' if member else 'near'} theme {theme_id} {label} (similarity {closeness[position]:.2f})",
                "predicted_tags": existing + ([new_tag] if member else []),
                "predicted_sentiment": row.get("sentiment") if row.get("sentiment") in SENTIMENTS else None,
                "predicted_escalate": None if escalate in (None, "") or pd.isna(escalate) else str(escalate) in ("1", "1.0", "True"),
            }
        )
    return records
