"""From a tagged file to the report customer-satisfaction teams read: HTML and Markdown.

A summary in plain sentences, period alerts, the problem table (问题类型 | 数量 | 占比 with the
share corrected for the model's known errors and its 95% interval | 具体场景 | 代表性评论),
satisfaction drivers (with a score column), tag co-occurrence, sentiment, breakdowns by grouping
columns, a trend by a date column, data quality, and charts (interactive in HTML); `-o x.json`
writes the same numbers for machines.

The tagged file is read in chunks and only aggregates are kept (counts per tag, group and
period, the best-scoring comments per tag), so a million-row file is reported in bounded
memory. Tags are the columns `X` that have a companion `X_score`: a model with a fifth tag gets
a fifth row without any change here. Chinese tag names come from the taxonomy of the model
version the file records on its rows, so no model is loaded.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from kesheng.analysis.alerts import Alert, AlertSettings, alert_sentence, find_alerts
from kesheng.analysis.charts import chart_options, charts_script, cjk_font_file, group_filters, render_charts
from kesheng.analysis.drivers import KINDS, DriversAccumulator, DriverStats, detect_kind, parse_scores
from kesheng.analysis.shares import METHODS as SHARE_METHODS
from kesheng.analysis.shares import ShareCell, ShareEstimate, ShareRates, estimate_stratified_share, load_share_rates
from kesheng.analysis.themes import StreamSample, ThemeParams, find_themes
from kesheng.files.atomic import write_atomic
from kesheng.files.readers import TEXT_SAMPLE_ROWS, InputFileError, choose_encoding, choose_text_column, format_of
from kesheng.models.embedding import EMBEDDERS, EmbeddingError, make_embedder
from kesheng.models.rows import MODEL_VERSION_COLUMN, evidence_spans, flat_from_record, names_from_metadata, note_kind, split_notes, tag_columns
from kesheng.models.schema import DEFAULT_TAXONOMY, ESCALATE, ESCALATE_ZH, OTHER_ZH, SENTIMENT_ZH, SENTIMENTS
from kesheng.nlp.non_answer import is_non_answer
from kesheng.nlp.strata import LENGTH_EDGES, comment_strata
from kesheng.stores.registry import known_taxonomy

__all__ = ["JSON_SECTIONS", "ReportError", "ReportOptions", "ReportData", "build_report", "check_flags", "read_tagged", "report_json", "summary_sentences", "write_report"]

READ_CHUNK_ROWS = 100_000
_DATA_URI = re.compile(r'src="data:[^"]*"')
# The mean length that makes a column "the comments" when --text-column is not given.
NOT_TEXT_COLUMNS = {"sentiment", "evidence", "notes", "id", ESCALATE, MODEL_VERSION_COLUMN}
EMPTY_GROUP = "(空)"
NON_ANSWERS_ZH = "无实质内容（无/没有/暂无…）"


class ReportError(ValueError):
    """The tagged file cannot be reported on; the message says why."""


@dataclass
class ReportOptions:
    text_column: str | None = None  # the comments; None picks the longest text column and says so
    group_by: tuple[str, ...] = ()  # columns to break down by (channel, industry, ...)
    date_column: str | None = None  # a trend per period of this column
    period: str = "M"  # trend period: M month, W week, D day, Q quarter
    examples: int = 3  # representative comments per tag
    max_escalations: int = 20  # escalated comments listed at the top of the report, most urgent (highest score) first
    max_groups: int = 12  # groups shown per grouping column; the smaller ones are merged
    min_group_rows: int = 30  # groups with fewer comments are greyed out: their shares are too noisy to compare
    title: str = "客户反馈服务问题分析报告"
    tag_names_zh: dict[str, str] = field(default_factory=dict)  # tag -> Chinese name; by default from the taxonomy of the model version the file records
    encoding: str | None = None  # CSV/TSV input encoding; None detects as `kesheng tag` does
    sheet: str | None = None  # XLSX sheet; None reads the first
    score_column: str | None = None  # satisfaction score beside each comment (CSAT, NPS, any number): the drivers section
    score_kind: str | None = None  # csat (1-5), nps (0-10) or number; None detects it from the column's name and values
    share_method: str = "acc"  # acc (tags) or pacc (mean scores): how problem shares are corrected for the model's errors
    model_dir: str | None = None  # the model that tagged the file, for its error rates; None finds it by the file's model version
    alerts: AlertSettings = field(default_factory=AlertSettings)  # period alerts (with date_column)
    themes: str = "tfidf"  # embeddings for the themes of 其他 and each problem's scenarios: tfidf (seconds), encoder (better, minutes), auto, or off
    theme_sample: int = 2_000  # comments per scope (其他, each tag) the themes are found in: a seeded random sample of larger scopes


# Reading tagged files of any format into flat chunks.


def _flatten_jsonl(frame: pd.DataFrame) -> pd.DataFrame:
    """JSONL output nests tags and scores; turn it into the flat columns of tabular outputs."""
    if "scores" not in frame.columns or "tags" not in frame.columns:
        return frame
    first = next((s for s in frame["scores"] if isinstance(s, dict)), {})
    names = list(first)
    records = frame.to_dict("records")
    return pd.DataFrame([flat_from_record(r, names) for r in records], index=frame.index)


def read_tagged(path: str | os.PathLike, encoding: str | None = None, sheet: str | None = None, chunk_rows: int = READ_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """A tagged file (any format `kesheng tag` writes) as flat DataFrame chunks."""
    source = Path(path)
    if not source.is_file():
        raise ReportError(f"{source}: no such file")
    if source.stat().st_size == 0:
        raise ReportError(f"{source}: empty file (0 bytes)")
    try:
        fmt = format_of(source)
        if fmt in ("csv", "tsv"):
            decoding = choose_encoding(source, encoding)
            yield from pd.read_csv(
                source,
                sep="\t" if fmt == "tsv" else ",",
                dtype=str,
                keep_default_na=False,
                encoding=decoding.encoding,
                encoding_errors="replace",
                chunksize=chunk_rows,
            )
        elif fmt == "jsonl":
            for frame in pd.read_json(source, lines=True, dtype=False, chunksize=chunk_rows, encoding=choose_encoding(source, encoding).encoding):
                yield _flatten_jsonl(frame)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(source).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
        else:
            yield pd.read_excel(source, sheet_name=sheet if sheet is not None else 0, dtype=object)
    except InputFileError as exc:
        raise ReportError(str(exc)) from exc
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ReportError(f"{source}: cannot read it as a tagged {source.suffix} file ({exc})") from exc


# Aggregation.


@dataclass
class ReportData:
    """Everything the report shows, computed from the whole file."""

    source: str
    tags: list[str]
    zh: dict[str, str]
    text_column: str
    text_column_guessed: bool
    rows: int = 0
    scored: int = 0  # rows with a comment that is not a non-answer: the denominator of every share
    non_answers: int = 0  # rows whose text says nothing ("无", "/": kesheng.nlp.non_answer), left out like empty rows
    tag_counts: dict[str, int] = field(default_factory=dict)
    other: int = 0  # scored rows without any tag
    cooccurrence: np.ndarray | None = None
    sentiment: dict[str, int] = field(default_factory=dict)
    sentiment_by_tag: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: Counter = field(default_factory=Counter)  # note kind -> rows
    groups: dict[str, pd.DataFrame] = field(default_factory=dict)  # column -> per value: n, tags, other, sentiments
    trend: pd.DataFrame | None = None
    date_column: str | None = None
    unparsed_dates: int = 0
    examples: dict[str, list[dict]] = field(default_factory=dict)
    scenarios: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # tag -> frequent evidence phrases (when no scenario themes were found)
    # Themes (kesheng.analysis.themes) found in a sample of each scope: "" = 其他, else a tag (its scenarios).
    themes: dict[str, list[dict]] = field(default_factory=dict)  # scope -> [{label, share (of the scope), estimate (comments), terms, examples}]
    theme_samples: dict[str, int] = field(default_factory=dict)  # scope -> comments the themes were found in
    theme_embeddings: str | None = None  # which embeddings; None: themes off
    theme_notes: list[str] = field(default_factory=list)
    model_versions: Counter = field(default_factory=Counter)  # model version -> rows it tagged ("" = not recorded)
    min_group_rows: int = 30  # groups with fewer comments are greyed out in the group charts
    # Escalation: None when the file has no escalate column (tagged before the head existed).
    escalate_known: int | None = None  # scored rows whose escalate is known (0 when the model had no head)
    escalated: int = 0  # scored rows flagged escalate
    escalations: list[dict] = field(default_factory=list)  # the most urgent escalated comments, highest score first
    period: str = "M"  # the trend's period code (M, W, D, Q, Y)
    # Corrected shares: the model's stored error rates (None: raw shares, labeled as such) and the
    # estimates ("" = 其他).
    share_rates: ShareRates | None = None
    share_strata: int = 0  # kinds of comment corrected each with its own rates (kesheng.nlp.strata); 0: pooled rates
    estimates: dict[str, ShareEstimate] = field(default_factory=dict)
    # Satisfaction drivers: None without a score column.
    score_column: str | None = None
    score_kind: str | None = None
    score_kind_detected: bool = False
    score_issues: Counter = field(default_factory=Counter)  # blank / not_a_number / out_of_range -> scored rows left out of the drivers
    drivers: list[DriverStats] = field(default_factory=list)
    driver_rows: int = 0  # scored comments with a usable score
    score_mean: float | None = None
    nps: dict | None = None
    # Period alerts: significant rises, notes on periods not compared, comparisons made.
    alerts: list[Alert] = field(default_factory=list)
    period_notes: list[str] = field(default_factory=list)
    comparisons: int = 0

    def share(self, count: int | float) -> float:
        return count / self.scored if self.scored else 0.0

    def label(self, tag: str) -> str:
        return self.zh.get(tag, tag)


def _guess_text_column(frame: pd.DataFrame, tags: list[str]) -> tuple[str, bool]:
    """The comments column, found as `kesheng tag` finds it (kesheng.files.readers.choose_text_column)."""
    ours = set(tags) | {f"{t}_score" for t in tags} | NOT_TEXT_COLUMNS
    sample = frame.head(TEXT_SAMPLE_ROWS).to_dict("records")
    try:
        return choose_text_column(list(frame.columns), sample, exclude=ours)
    except InputFileError as exc:
        raise ReportError(str(exc)) from exc


def text_presence(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Which rows have text, and which of those are non-answers ("无", "/": kesheng.nlp.non_answer).

    Decided from the text, as empty rows are, so a file tagged before models noted non-answers
    (when "无" came out negative) is read the same way by the report and by `kesheng themes`.
    """
    has_text = text.str.strip() != ""
    return has_text, has_text & text.map(is_non_answer).astype(bool)


def check_flags(frame: pd.DataFrame, column: str) -> pd.Series:
    """A tag column as 0/1 integers, or a ReportError naming the bad values (the file is not from `kesheng tag`)."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = ~values.isin([0, 1])
    if bad.any():
        examples = frame.loc[bad, column].head(3).tolist()
        raise ReportError(f"column {column!r} should hold 0/1 tag flags but has {examples!r} (rows {list(frame.index[bad][:3])}); is this a file from `kesheng tag`?")
    return values.astype(np.int64)


def _add_frame(total: pd.DataFrame | None, part: pd.DataFrame) -> pd.DataFrame:
    return part if total is None else total.add(part, fill_value=0)


def _counts_by(keys: pd.Series, flags: pd.DataFrame) -> pd.DataFrame:
    grouped = flags.groupby(keys.values, sort=False, dropna=False).sum()
    grouped.insert(0, "n", flags.groupby(keys.values, sort=False, dropna=False).size())
    return grouped


class _Aggregator:
    def __init__(self, source: str, options: ReportOptions):
        self.options = options
        self.source = source
        self.data: ReportData | None = None
        self.scenario_counts: dict[str, Counter] = {}
        self.candidates: dict[str, pd.DataFrame] = {}
        self.drivers: DriversAccumulator | None = None
        self.theme_samples: dict[str, StreamSample] = {}
        # Per kind of comment (kesheng.nlp.strata): scored rows, tagged counts and score sums, for
        # a share correction with each kind's own error rates.
        self.strata_totals: pd.DataFrame | None = None

    def _start(self, frame: pd.DataFrame) -> ReportData:
        columns = list(frame.columns)
        tags = tag_columns(columns)
        if not tags or "sentiment" not in columns:
            raise ReportError(
                f"{self.source}: not a tagged file (needs tag columns X with X_score, and sentiment); columns are {columns}. Tag it first: kesheng tag -i FILE -o tagged.csv"
            )
        options = self.options
        if options.share_method not in SHARE_METHODS:
            raise ReportError(f"share method {options.share_method!r}: use one of {list(SHARE_METHODS)}")
        for column in (*options.group_by, *([options.date_column] if options.date_column else []), *([options.score_column] if options.score_column else [])):
            if column not in columns:
                raise ReportError(f"{self.source}: column {column!r} not found; columns are {columns}")
        if options.text_column is not None and options.text_column not in columns:
            raise ReportError(f"{self.source}: text column {options.text_column!r} not found; columns are {columns}")
        text_column, guessed = (options.text_column, False) if options.text_column else _guess_text_column(frame, tags)
        data = ReportData(
            source=self.source,
            tags=tags,
            zh={},  # filled in by finish(), once the file's model versions are known
            text_column=text_column,
            text_column_guessed=guessed,
            tag_counts={t: 0 for t in tags},
            cooccurrence=np.zeros((len(tags), len(tags)), dtype=np.int64),
            sentiment={s: 0 for s in SENTIMENTS},
            sentiment_by_tag={t: {s: 0 for s in SENTIMENTS} for t in tags},
            date_column=options.date_column,
            min_group_rows=options.min_group_rows,
            period=options.period,
        )
        self.scenario_counts = {t: Counter() for t in tags}
        if options.themes != "off":
            if options.themes not in EMBEDDERS:
                raise ReportError(f"themes {options.themes!r}: use one of {[*EMBEDDERS, 'off']}")
            self.theme_samples = {scope: StreamSample(options.theme_sample, seed=i) for i, scope in enumerate(["", *tags])}
        if options.score_column:
            if options.score_kind is not None and options.score_kind not in KINDS:
                raise ReportError(f"score kind {options.score_kind!r}: use one of {list(KINDS)}")
            data.score_column = options.score_column
            data.score_kind = options.score_kind or detect_kind(options.score_column, frame[options.score_column])
            data.score_kind_detected = options.score_kind is None
            self.drivers = DriversAccumulator(tags, data.score_kind)
        return data

    def add(self, frame: pd.DataFrame) -> None:
        if self.data is None:
            self.data = self._start(frame)
        data = self.data
        frame = frame.reset_index(drop=True)
        text = frame[data.text_column].fillna("").astype(str)
        has_text, non_answer = text_presence(text)
        scored = has_text & ~non_answer
        flags = pd.DataFrame({t: check_flags(frame, t) for t in data.tags})
        sentiment = frame["sentiment"].fillna("").astype(str)
        # Rows without text have no sentiment (an empty cell); every row with text must have one.
        unknown = ~sentiment.isin(SENTIMENTS) & has_text
        if unknown.any():
            raise ReportError(f"{self.source}: sentiment values {sorted(set(sentiment[unknown]))[:5]} are not {list(SENTIMENTS)}")
        data.rows += len(frame)
        if MODEL_VERSION_COLUMN in frame.columns:
            data.model_versions.update(frame[MODEL_VERSION_COLUMN].fillna("").astype(str).value_counts().to_dict())
        else:
            data.model_versions[""] += len(frame)
        data.scored += int(scored.sum())
        data.non_answers += int(non_answer.sum())
        scored_flags = flags[scored]
        for tag in data.tags:
            data.tag_counts[tag] += int(scored_flags[tag].sum())
        untagged = scored_flags.sum(axis=1) == 0
        data.other += int(untagged.sum())
        self._add_strata(text[scored], scored_flags, frame.loc[scored], untagged)
        if self.theme_samples:
            scored_text = text[scored]
            self.theme_samples[""].add(scored_text[untagged].to_numpy())
            for tag in data.tags:
                self.theme_samples[tag].add(scored_text[scored_flags[tag] == 1].to_numpy())
        if self.drivers is not None:
            scores, issues = parse_scores(frame.loc[scored, data.score_column], data.score_kind)
            data.score_issues.update({k: v for k, v in issues.items() if v})
            usable = ~np.isnan(scores)
            self.drivers.add(scored_flags.to_numpy()[usable], scores[usable])
        matrix = scored_flags.to_numpy()
        data.cooccurrence += matrix.T @ matrix
        scored_sentiment = sentiment[scored]
        for label, count in scored_sentiment.value_counts().items():
            data.sentiment[label] += int(count)
        for tag in data.tags:
            for label, count in scored_sentiment[scored_flags[tag] == 1].value_counts().items():
                data.sentiment_by_tag[tag][label] += int(count)
        if "notes" in frame.columns:
            for cell in frame["notes"].fillna("").astype(str):
                if cell:
                    data.notes.update({note_kind(note) for note in split_notes(cell)})
        measures = scored_flags.assign(
            **{OTHER_ZH: (scored_flags.sum(axis=1) == 0).astype(np.int64)},
            **{s: (scored_sentiment == s).astype(np.int64) for s in SENTIMENTS},
        )
        for column in self.options.group_by:
            keys = frame.loc[scored, column].map(lambda v: EMPTY_GROUP if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "" else str(v))
            data.groups[column] = _add_frame(data.groups.get(column), _counts_by(keys, measures))
        if self.options.date_column:
            dates = pd.to_datetime(frame.loc[scored, self.options.date_column], errors="coerce", format="mixed")
            if getattr(dates.dt, "tz", None) is not None:
                dates = dates.dt.tz_convert(None)
            data.unparsed_dates += int(dates.isna().sum())
            periods = dates.dt.to_period(self.options.period)
            known = periods.notna()
            data.trend = _add_frame(data.trend, _counts_by(periods[known].astype(str), measures[known.values]))
        self._collect_examples(frame[scored], text[scored], scored_flags)
        if ESCALATE in frame.columns:
            self._collect_escalations(frame, text, scored)

    def _collect_escalations(self, frame: pd.DataFrame, text: pd.Series, scored: pd.Series) -> None:
        data = self.data
        flag = pd.to_numeric(frame[ESCALATE].map(lambda v: {True: 1, False: 0}.get(v, v) if isinstance(v, bool) else v), errors="coerce")
        known = flag.notna() & scored
        escalated = (flag == 1) & scored
        data.escalate_known = (data.escalate_known or 0) + int(known.sum())
        data.escalated += int(escalated.sum())
        if not escalated.any():
            return
        score = pd.to_numeric(frame.loc[escalated, "escalate_score"], errors="coerce").fillna(1.0) if "escalate_score" in frame.columns else 1.0
        rows = pd.DataFrame({
            "_text": text[escalated],
            "_score": score,
            "_evidence": frame.loc[escalated, "evidence"] if "evidence" in frame.columns else "[]",
        })
        for column in self.options.group_by:
            rows[f"group:{column}"] = frame.loc[escalated, column].astype(str)
        pool = pd.concat([self.candidates.get(ESCALATE), rows]) if ESCALATE in self.candidates else rows
        self.candidates[ESCALATE] = pool.nlargest(self.options.max_escalations, "_score")

    def _collect_examples(self, frame: pd.DataFrame, text: pd.Series, flags: pd.DataFrame) -> None:
        data = self.data
        keep = max(self.options.examples * 8, 20)
        evidence = frame["evidence"] if "evidence" in frame.columns else None
        for tag in data.tags:
            positive = flags[tag] == 1
            if not positive.any():
                continue
            if evidence is not None:
                for raw in evidence[positive]:
                    self.scenario_counts[tag].update(_evidence_phrases(raw, tag))
            # Internal column names cannot clash with a grouping column named "score" or "text".
            rows = pd.DataFrame(
                {
                    "_text": text[positive],
                    "_score": pd.to_numeric(frame.loc[positive, f"{tag}_score"], errors="coerce").fillna(0.0),
                    "_evidence": evidence[positive] if evidence is not None else "[]",
                }
            )
            for column in self.options.group_by:
                rows[f"group:{column}"] = frame.loc[positive, column].astype(str)
            pool = pd.concat([self.candidates.get(tag), rows]) if tag in self.candidates else rows
            pool = pool.drop_duplicates("_text").nlargest(keep, "_score")
            self.candidates[tag] = pool

    def finish(self, carried_names: dict[str, str] | None = None) -> ReportData:
        if self.data is None:
            raise ReportError(f"{self.source}: the file has no rows")
        data = self.data
        data.zh = _chinese_names(data.tags, data.model_versions, {**(carried_names or {}), **self.options.tag_names_zh})
        for tag in data.tags:
            pool = self.candidates.get(tag)
            data.examples[tag] = _representative(pool, data, self.options.examples) if pool is not None else []
            data.scenarios[tag] = self.scenario_counts[tag].most_common(6)
        if ESCALATE in self.candidates:
            pool = self.candidates[ESCALATE].sort_values("_score", ascending=False, kind="stable")
            data.escalations = _example_rows(pool, self.options.group_by)
        if data.trend is not None:
            data.trend = data.trend.sort_index()
            data.alerts, data.period_notes, data.comparisons = find_alerts(data.trend, data.tags, data.period, self.options.alerts)
        for column, table in data.groups.items():
            data.groups[column] = _top_groups(table, self.options.max_groups)
        self._estimate_shares(data)
        if self.theme_samples:
            self._find_themes(data)
        if self.drivers is not None:
            data.driver_rows = self.drivers.n
            data.score_mean = self.drivers.all.mean() if self.drivers.n else None
            data.drivers = self.drivers.drivers()
            data.nps = self.drivers.nps()
        return data

    def _find_themes(self, data: ReportData) -> None:
        """Themes of 其他 and scenarios of each problem, found in each scope's sample."""
        try:
            embedder = make_embedder(self.options.themes)
        except EmbeddingError as exc:
            data.theme_notes.append(f"主题分析未运行: {exc}")
            return
        data.theme_embeddings = embedder.name
        for scope, sample in self.theme_samples.items():
            texts = sample.texts
            total = data.other if scope == "" else data.tag_counts[scope]
            try:
                found = find_themes(texts, embedder, ThemeParams(max_themes=8))
            except EmbeddingError as exc:
                data.theme_notes.append(f"{data.label(scope) if scope else OTHER_ZH}: {exc}")
                continue
            data.theme_samples[scope] = len(texts)
            data.themes[scope] = [
                {"label": t.label, "share": t.size / len(texts), "estimate": round(total * t.size / len(texts)), "terms": [w for w, _ in t.terms[:6]], "examples": t.examples[:3]}
                for t in found.themes
            ]

    def _add_strata(self, texts: pd.Series, flags: pd.DataFrame, rows: pd.DataFrame, untagged: pd.Series) -> None:
        """Per kind of comment: scored rows, tagged and untagged counts, and each tag's score sum
        and sum of squares (for PACC), added to the file's running totals."""
        table: dict[str, np.ndarray] = {"n": np.ones(len(texts), dtype=np.int64), "other": untagged.to_numpy(dtype=np.int64)}
        for tag in self.data.tags:
            scores = pd.to_numeric(rows[f"{tag}_score"], errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)
            table[tag] = flags[tag].to_numpy(dtype=np.int64)
            table[f"{tag} score"] = scores
            table[f"{tag} score2"] = scores * scores
        totals = pd.DataFrame(table).groupby(comment_strata(texts)).sum()
        self.strata_totals = totals if self.strata_totals is None else self.strata_totals.add(totals, fill_value=0)

    def _share_cells(self, rates: ShareRates | None, tag: str) -> list[ShareCell]:
        """What a share of `tag` ("" = 其他) is estimated from: each kind of comment in the file with
        that kind's rates where the stored rates have kinds, else the whole file with the pooled rates."""
        totals = self.strata_totals
        if totals is None:
            return []
        stratified = _corrects_by_kind(rates)
        if not stratified:
            totals = totals.sum().to_frame("all").T
        cells = []
        for key, row in totals.iterrows():
            source = rates.strata.get(str(key)) if stratified else rates
            cell_rates = None if source is None else (source.other if tag == "" else source.tags.get(tag))
            count = int(row["other" if tag == "" else tag])
            scores = (None, None) if tag == "" else (float(row[f"{tag} score"]), float(row[f"{tag} score2"]))
            cells.append(ShareCell(count, int(row["n"]), cell_rates, *scores))
        return cells

    def _estimate_shares(self, data: ReportData) -> None:
        versions = [v for v in data.model_versions if v]
        # A file mixing model versions has no one set of error rates: its shares stay raw.
        version = versions[0] if len(data.model_versions) == 1 and versions else None
        if self.options.model_dir is not None or version is not None:
            data.share_rates = load_share_rates(version, self.options.model_dir)
        rates = data.share_rates
        for tag in data.tags:
            data.estimates[tag] = estimate_stratified_share(self._share_cells(rates, tag), self.options.share_method)
        other = self._share_cells(rates, "")
        data.estimates[""] = estimate_stratified_share(other, "acc")
        data.share_strata = len(other) if _corrects_by_kind(rates) else 0


def _corrects_by_kind(rates: ShareRates | None) -> bool:
    """Whether the rates have a cell per kind of comment, with the kinds this report counts."""
    return rates is not None and bool(rates.strata) and tuple(rates.length_edges) == LENGTH_EDGES


def _chinese_names(tags: list[str], versions: Counter, given: dict[str, str]) -> dict[str, str]:
    """Chinese tag names: given ones (options, then the file's metadata) first, then the taxonomies
    of the model versions the file records."""
    names = {t.name: t.zh for t in DEFAULT_TAXONOMY.tags}
    for version in versions:
        taxonomy = known_taxonomy(version) if version else None
        if taxonomy is not None:
            names.update({t.name: t.zh for t in taxonomy.tags})
    names.update(given)
    return {t: names.get(t, t) for t in tags}


def _evidence_phrases(raw, tag: str) -> set[str]:
    spans = evidence_spans(raw)
    # One-character spans ("慢", "说") are too vague to name a scenario.
    return {s["text"].strip() for s in spans if isinstance(s, dict) and s.get("tag") == tag and len(str(s.get("text", "")).strip()) >= 2}


def _representative(pool: pd.DataFrame, data: ReportData, count: int) -> list[dict]:
    """Clear, typical comments: highest score first, but neither fragments nor essays."""
    lengths = pool["_text"].str.len()
    tier = np.where((lengths >= 8) & (lengths <= 80), 0, np.where((lengths >= 6) & (lengths <= 150), 1, 2))
    ordered = pool.assign(_tier=tier).sort_values(["_tier", "_score"], ascending=[True, False], kind="stable")
    return _example_rows(ordered.head(count), data.groups)


def _example_rows(pool: pd.DataFrame, group_columns) -> list[dict]:
    """The comments of a candidate pool as the report lists them: text, score, evidence, groups."""
    return [
        {"text": row["_text"], "score": float(row["_score"]), "evidence": row["_evidence"],
         "groups": {c: row[f"group:{c}"] for c in group_columns if f"group:{c}" in row}}
        for _, row in pool.iterrows()
    ]


def _top_groups(table: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The largest groups (the rest merged into one row); numeric groups (scores, years) in order
    of their value, others by size."""
    table = table.sort_values("n", ascending=False)
    if len(table) > limit:
        head, rest = table.iloc[: limit - 1], table.iloc[limit - 1 :]
        table = pd.concat([head, rest.sum().to_frame(f"其余 {len(rest)} 组").T])
    values = pd.to_numeric(pd.Series(table.index, index=table.index), errors="coerce")
    numeric = values.notna() | (table.index == EMPTY_GROUP) | pd.Series(table.index, index=table.index).astype(str).str.startswith("其余 ")
    if values.notna().sum() >= 2 and numeric.all():
        order = values.fillna(np.inf).sort_values(kind="stable").index
        table = table.loc[order]
    return table


def build_report(path: str | os.PathLike, options: ReportOptions = ReportOptions()) -> ReportData:
    aggregator = _Aggregator(Path(path).name, options)
    for frame in read_tagged(path, options.encoding, options.sheet):
        aggregator.add(frame)
    return aggregator.finish(carried_tag_names(path))


def carried_tag_names(path: str | os.PathLike) -> dict[str, str]:
    """Chinese tag names a Parquet or XLSX file carries in its metadata (see `kesheng.models.rows`)."""
    source = Path(path)
    try:
        fmt = format_of(source)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            raw = pq.read_schema(source).metadata or {}
            return names_from_metadata({k.decode(): v.decode() for k, v in raw.items()})
        if fmt == "xlsx":
            from openpyxl import load_workbook

            book = load_workbook(source, read_only=True)
            try:
                return names_from_metadata({p.name: str(p.value) for p in book.custom_doc_props})
            finally:
                book.close()
    except (InputFileError, OSError, ValueError, KeyError):
        pass  # unreadable metadata: the names come from the model version instead
    return {}


# Rendering.


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def model_version_text(data: ReportData) -> str:
    """Which model tagged the file; several versions are listed with their row counts."""
    versions = [(v or "未记录", n) for v, n in data.model_versions.most_common()]
    if len(versions) == 1:
        return versions[0][0]
    return "多个版本: " + ", ".join(f"{v} ({n:,} 行)" for v, n in versions)


def scenario_text(data: ReportData, tag: str) -> str:
    """具体场景: the tag's scenario themes with their share of its comments ("配送/超时 32%"), or,
    when none were found, its most frequent evidence phrases with counts."""
    themes = data.themes.get(tag)
    if themes:
        return "、".join(f"{t['label']} {_pct(t['share'])}" for t in themes[:5])
    return "、".join(f"{text}({n})" for text, n in data.scenarios.get(tag, []))


def _other_themes_note(data: ReportData) -> str:
    sample = data.theme_samples.get("", 0)
    basis = f"随机抽取的 {sample:,} 条" if sample < data.other else f"全部 {data.other:,} 条"
    return (f"无服务问题标签的评论 ({OTHER_ZH}, {data.other:,} 条) 按内容自动聚成的主题 (基于{basis}; 向量: {data.theme_embeddings}); "
            "占比为占其他类评论的比例, 条数为按比例推算; 不属于任何主题的评论不计入。用 kesheng themes 查看全部并导出为新标签。")


def problem_table(data: ReportData) -> pd.DataFrame:
    """问题类型 | 数量 | 占比 (raw) | 占比估计 with its 95% interval | 具体场景: the table reports open
    with (shares of comments with text). 方法 says how the estimate was made: acc / pacc (corrected
    for the model's error rates) or raw (no rates stored for the model: the estimate is the raw share)."""
    rows = []
    for tag in sorted(data.tags, key=lambda t: -data.tag_counts[t]):
        scenarios = scenario_text(data, tag)
        rows.append({"问题类型": data.label(tag), "标签": tag, "数量": data.tag_counts[tag], "占比": data.share(data.tag_counts[tag]), **_estimate_columns(data, tag), "具体场景": scenarios})
    rows.append({
        "问题类型": OTHER_ZH, "标签": "", "数量": data.other, "占比": data.share(data.other), **_estimate_columns(data, ""),
        "具体场景": "无服务问题标签(产品、价格、表扬、咨询等)",
    })
    return pd.DataFrame(rows)


def _estimate_columns(data: ReportData, key: str) -> dict:
    estimate = data.estimates.get(key)
    if estimate is None:
        share = data.share(data.tag_counts[key] if key else data.other)
        return {"占比估计": share, "区间下限": None, "区间上限": None, "方法": "raw"}
    return {"占比估计": estimate.estimate, "区间下限": estimate.ci_low, "区间上限": estimate.ci_high, "方法": estimate.method}


def _interval_text(low: float | None, high: float | None) -> str:
    return "—" if low is None or high is None else f"{_pct(low)}–{_pct(high)}"


def share_note(data: ReportData) -> str:
    """What the 占比估计 column is: corrected (and from which rates) or raw."""
    if data.share_rates is None:
        return "占比估计 = 原始占比 (未校正): 打标模型没有存储误差率 (或文件混有多个模型版本), 区间只含抽样误差。"
    methods = {e.method for e in data.estimates.values()}
    how = "正例与反例的平均概率 (PACC)" if "pacc" in methods else "真阳性率与假阳性率 (ACC)"
    raw = [data.label(t) for t in data.tags if data.estimates[t].method == "raw"]
    tail = f"; {'、'.join(raw)} 无可用误差率, 显示原始占比" if raw else ""
    strata = f", 按评论类型 (单条或多轮 × 长度, 本文件 {data.share_strata} 类) 分别校正后加权" if data.share_strata else ""
    return (
        f"占比估计: 用打标模型在 {data.share_rates.measured_on} 上测得的{how}校正模型的漏标与误标{strata}; "
        f"95% 区间同时包含抽样误差与误差率本身的不确定性{tail}。"
    )


def cooccurrence_table(data: ReportData) -> pd.DataFrame:
    labels = [data.label(t) for t in data.tags]
    return pd.DataFrame(data.cooccurrence, index=labels, columns=labels)


def sentiment_table(data: ReportData) -> pd.DataFrame:
    return pd.DataFrame(
        [{"情感": SENTIMENT_ZH[s], "sentiment": s, "数量": data.sentiment[s], "占比": data.share(data.sentiment[s])} for s in SENTIMENTS]
    )


def breakdown_table(data: ReportData, table: pd.DataFrame) -> pd.DataFrame:
    """Per group or period: comments, share of each tag, share of negative comments."""
    out = pd.DataFrame(index=table.index)
    out["评论数"] = table["n"].astype(int)
    denominator = table["n"].where(table["n"] > 0, 1)
    for tag in data.tags:
        out[data.label(tag)] = table[tag] / denominator
    out[OTHER_ZH] = table[OTHER_ZH] / denominator
    out["负面占比"] = table["negative"] / denominator
    return out


def _highlight(text: str, evidence_json, tag: str) -> str:
    """The comment, escaped, with the tag's evidence spans marked."""
    spans = evidence_spans(evidence_json) if isinstance(evidence_json, str) else []
    marks = sorted({(s["start"], s["end"]) for s in spans if isinstance(s, dict) and s.get("tag") == tag and 0 <= s.get("start", -1) < s.get("end", -1) <= len(text)})
    out, position = [], 0
    for start, end in marks:
        if start < position:
            continue
        out.append(html.escape(text[position:start]))
        out.append(f"<mark>{html.escape(text[start:end])}</mark>")
        position = end
    out.append(html.escape(text[position:]))
    return "".join(out)


def _html_table(frame: pd.DataFrame, percent_columns: Sequence[str] = (), index: bool = True, index_name: str = "") -> str:
    head = ([f"<th>{html.escape(index_name)}</th>"] if index else []) + [f"<th>{html.escape(str(c))}</th>" for c in frame.columns]
    body = []
    # Row by row through columns: iterrows() would turn a row of ints and floats into floats.
    for position, key in enumerate(frame.index):
        cells = [f"<th>{html.escape(str(key))}</th>"] if index else []
        for column in frame.columns:
            value = frame[column].iloc[position]
            if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
                text, cls = "—", ' class="num"'
            elif column in percent_columns:
                text, cls = _pct(float(value)), ' class="num"'
            elif isinstance(value, (int, np.integer, float, np.floating)):
                text, cls = f"{value:,}" if isinstance(value, (int, np.integer)) else f"{value:,.3f}", ' class="num"'
            else:
                text, cls = html.escape(str(value)), ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table><thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _md_table(frame: pd.DataFrame, percent_columns: Sequence[str] = (), index: bool = True, index_name: str = "") -> str:
    def cell(value, column) -> str:
        if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
            return "—"
        if column in percent_columns:
            return _pct(float(value))
        if isinstance(value, (int, np.integer)):
            return f"{value:,}"
        if isinstance(value, (float, np.floating)):
            return f"{value:,.3f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    columns = list(frame.columns)
    lines = ["| " + " | ".join(([index_name] if index else []) + [str(c) for c in columns]) + " |"]
    lines.append("|" + "---|" * (len(columns) + int(index)))
    for position, key in enumerate(frame.index):
        cells = ([str(key)] if index else []) + [cell(frame[c].iloc[position], c) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


CSS = """
body{font-family:"Kesheng CJK","Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC","PingFang SC","Microsoft YaHei","WenQuanYi Micro Hei",sans-serif;
max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.5}
h1{font-size:1.6em;border-bottom:2px solid #c0392b;padding-bottom:.3em}h2{margin-top:2em;border-left:4px solid #c0392b;padding-left:.5em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left}
thead th{background:#f4f4f4}td.num{text-align:right;white-space:nowrap}mark{background:#ffe08a;padding:0 1px}
tbody th{white-space:nowrap}.meta{color:#666;font-size:.9em}.chart{max-width:min(100%,900px);margin:.5em 0;display:block}.example{margin:.2em 0 .6em 0}.note{color:#666;font-size:.88em}.alert{background:#fff3f0;border-left:4px solid #c0392b;padding:.5em .8em}
select{font-family:inherit;font-size:.95em}ul.summary{background:#f7f9fb;border:1px solid #e3e8ee;padding:.6em 1em .6em 2em}ul.summary li{margin:.2em 0}.filter{margin:.6em 0 0 0}
ol.ex{margin:0;padding-left:1.3em}
"""


def _examples_html(data: ReportData, tag: str) -> str:
    return _example_list_html(data.examples.get(tag, []), tag) or '<span class="note">无</span>'


def _example_list_html(examples: list[dict], tag: str) -> str:
    """Numbered comments with `tag`'s evidence highlighted, score and groups beside; "" when none."""
    items = []
    for example in examples:
        context = " · ".join(f"{c}: {v}" for c, v in example.get("groups", {}).items())
        items.append(
            f'<li class="example">{_highlight(example["text"], example["evidence"], tag)}'
            f' <span class="note">(概率 {example["score"]:.2f}{"; " + html.escape(context) if context else ""})</span></li>'
        )
    return f'<ol class="ex">{"".join(items)}</ol>' if items else ""


def escalation_summary(data: ReportData) -> str | None:
    """One line on escalations for the top of the report; None when the file has no escalate column."""
    if data.escalate_known is None:
        return None
    if data.escalate_known == 0:
        return "打标模型没有“需升级处理”判断 (模型训练于该功能之前), 无法统计。"
    return (
        f"{data.escalated:,} 条评论需升级处理 (占有效评论 {_pct(data.escalated / data.escalate_known)}): "
        "威胁投诉监管或媒体、辱骂、安全或钱款损害、愤怒销户等, 应尽快由专人处理。"
    )


def _escalations_html(data: ReportData) -> str:
    summary = escalation_summary(data)
    if summary is None:
        return ""
    parts = [f"<h2>⚠ {ESCALATE_ZH}</h2>", f'<p class="alert">{html.escape(summary)}</p>']
    if data.escalations:
        shown = len(data.escalations)
        parts.append(f'<p class="note">按紧急程度 (模型概率) 排列{"的前 " + str(shown) + " 条" if shown < data.escalated else ""}; 标记处为判断依据。</p>')
        parts.append(_example_list_html(data.escalations, ESCALATE))
    return "\n".join(parts)


class _Sections:
    """Numbered section headings (一、二、...) in the order they are rendered."""

    NUMERALS = "一二三四五六七八九十"

    def __init__(self):
        self.count = 0

    def __call__(self, title: str) -> str:
        self.count += 1
        return f"{self.NUMERALS[self.count - 1] if self.count <= len(self.NUMERALS) else self.count}、{title}"


def _chart_div(options: dict[str, dict], name: str, height: int = 360) -> str:
    if name not in options:
        return ""
    return f'<div class="chart" id="chart-{html.escape(name)}" data-chart="{html.escape(name)}" style="height:{height}px" role="img" aria-label="{html.escape(options[name].get("_title", name))}"></div>'


def render_html(data: ReportData, title: str) -> str:
    """The self-contained page: tables, and interactive charts (hover values, a group filter)
    drawn by the vendored ECharts library from the numbers embedded in the page."""
    options = chart_options(data)
    heading = _Sections()
    problems = problem_table(data)
    rows = []
    for _, row in problems.iterrows():
        tag = row["标签"]
        examples = _examples_html(data, tag) if tag else '<span class="note">—</span>'
        rows.append(
            f'<tr><th>{html.escape(row["问题类型"])}</th><td class="num">{row["数量"]:,}</td><td class="num">{_pct(row["占比"])}</td>'
            f'<td class="num"><b>{_pct(row["占比估计"])}</b></td><td class="num">{_interval_text(row["区间下限"], row["区间上限"])}</td>'
            f'<td>{html.escape(row["具体场景"]) or "<span class=note>—</span>"}</td><td>{examples}</td></tr>'
        )
    parts = [
        f"<!DOCTYPE html><html lang='zh-CN'><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">数据: {html.escape(data.source)} · 共 {data.rows:,} 行, 其中有效评论 {data.scored:,} 条 (占比以有效评论为分母; 一条评论可有多个问题, 占比之和可超过 100%)'
        f' · 评论列: {html.escape(data.text_column)}{" (自动识别)" if data.text_column_guessed else ""}'
        f' · 模型版本: {html.escape(model_version_text(data))}'
        f' · 生成时间 {datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M")}</p>',
        "<h2>摘要</h2>",
        '<ul class="summary">' + "".join(f"<li>{html.escape(s)}</li>" for s in summary_sentences(data)) + "</ul>",
        _alerts_html(data),
        _escalations_html(data),
        f"<h2>{heading('问题类型分布')}</h2>",
        f'<p class="note">{html.escape(share_note(data))}</p>',
        "<table><thead><tr><th>问题类型</th><th>数量</th><th>原始占比</th><th>占比估计</th><th>95% 区间</th><th>具体场景</th><th>代表性评论</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>",
        _group_filter_html(data) if "problems" in options else "",
        _chart_div(options, "problems", 60 + 46 * (len(data.tags) + 1)),
        _other_themes_html(data, heading),
    ]
    if data.score_column:
        parts.append(f"<h2>{heading(f'满意度驱动因素 (按 {html.escape(data.score_column)})')}</h2>")
        parts.append(_drivers_html(data))
        parts.append(_chart_div(options, "drivers", 60 + 46 * len(data.tags)))
    parts += [
        f"<h2>{heading('情感分布')}</h2>",
        _html_table(sentiment_table(data).set_index("情感")[["数量", "占比"]], ["占比"], index_name="情感"),
        _chart_div(options, "sentiment", 300),
        "<h3>各问题类型的情感构成</h3>",
        _html_table(_sentiment_by_tag_table(data), ["负面", "中性", "正面"], index_name="问题类型"),
        f"<h2>{heading('问题共现')}</h2>",
        '<p class="note">同一条评论同时带有两个问题标签的条数 (对角线为该问题的总条数)。</p>',
        _html_table(cooccurrence_table(data), index_name=""),
        _chart_div(options, "cooccurrence", 80 + 48 * len(data.tags)),
    ]
    for column, table in data.groups.items():
        parts.append(f"<h2>{heading(f'按 {html.escape(column)} 分组')}</h2>")
        breakdown = breakdown_table(data, table)
        parts.append(_html_table(breakdown, [c for c in breakdown.columns if c != "评论数"], index_name=column))
        parts.append(_chart_div(options, f"group_{column}", 120 + 34 * len(table)))
    if data.trend is not None:
        parts.append(f"<h2>{heading(f'趋势 (按 {html.escape(str(data.date_column))})')}</h2>")
        breakdown = breakdown_table(data, data.trend)
        parts.append(_html_table(breakdown, [c for c in breakdown.columns if c != "评论数"], index_name="时间"))
        if data.unparsed_dates:
            parts.append(f'<p class="note">{data.unparsed_dates:,} 条评论的日期无法解析, 未计入趋势。</p>')
        parts.append(_chart_div(options, "trend", 380))
    parts.append(f"<h2>{heading('数据质量')}</h2>")
    parts.append(_quality_html(data))
    parts.append(charts_script(options))
    parts.append("</body></html>")
    page = "\n".join(p for p in parts if p)
    return page.replace("</title>", f"</title>{_embedded_font(page)}", 1)


def _other_themes_html(data: ReportData, heading) -> str:
    themes = data.themes.get("")
    if data.theme_embeddings is None:
        return ""
    parts = [f"<h2>{heading(f'{OTHER_ZH} 里有什么')}</h2>", f'<p class="note">{html.escape(_other_themes_note(data))}</p>']
    if not themes:
        return "".join(parts) + '<p class="note">未发现足够集中的主题。</p>'
    rows = "".join(
        f'<tr><th>{html.escape(t["label"])}</th><td class="num">{_pct(t["share"])}</td><td class="num">≈{t["estimate"]:,}</td>'
        f'<td>{html.escape("、".join(t["terms"]))}</td><td><ol>{"".join(f"<li>{html.escape(x)}</li>" for x in t["examples"])}</ol></td></tr>'
        for t in themes
    )
    return "".join(parts) + f"<table><thead><tr><th>主题</th><th>占其他类</th><th>约条数</th><th>关键词</th><th>代表性评论</th></tr></thead><tbody>{rows}</tbody></table>"


def _group_filter_html(data: ReportData) -> str:
    """A select that redraws the problem chart for one group (raw shares within the group); the
    option values index the chart's `filters` list (see kesheng.analysis.charts.group_filters)."""
    filters = group_filters(data)
    if not filters:
        return ""
    items = ['<option value="">全部评论</option>']
    items += [f'<option value="{i}">{html.escape(f["label"])}</option>' for i, f in enumerate(filters)]
    return f'<p class="filter"><label>筛选分组 <select id="group-filter">{"".join(items)}</select></label> <span class="note">分组内显示原始占比</span></p>'


def _alerts_html(data: ReportData) -> str:
    if data.date_column is None:
        return ""
    parts = []
    if data.alerts:
        parts.append('<div class="alert"><b>⚠ 显著上升</b><ul>' + "".join(f"<li>{html.escape(alert_sentence(a, data.label(a.tag), data.period))}</li>" for a in data.alerts) + "</ul>")
        parts.append(f'<p class="note">两比例单侧 z 检验, 对 {data.comparisons} 次比较 (问题 × 相邻时期) 做 Holm 校正, 族错误率 5%; 基于原始占比。</p></div>')
    for note in data.period_notes:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    return "\n".join(parts)


def drivers_table(data: ReportData) -> pd.DataFrame:
    """Per problem, ranked by points lost: mean score with and without it, the difference and its
    interval, points lost overall, and the regression estimate beside it (None when not fitted)."""
    rows = []
    for d in data.drivers:
        row = {
            "问题类型": data.label(d.tag), "提及条数": d.with_n, "有该问题均分": d.mean_with, "无该问题均分": d.mean_without,
            "差值": d.impact, "差值95%区间": _number_interval(d.ci_low, d.ci_high), "整体损失分": d.points_lost,
            "调整后差值": d.adjusted, "调整后95%区间": _number_interval(d.adjusted_low, d.adjusted_high),
        }
        if data.score_kind == "nps":
            row["有该问题NPS"] = d.nps_with
            row["无该问题NPS"] = d.nps_without
        rows.append(row)
    return pd.DataFrame(rows)


def _number_interval(low: float | None, high: float | None) -> str:
    return "—" if low is None or high is None else f"[{low:.2f}, {high:.2f}]"


def _kind_text(data: ReportData) -> str:
    names = {"csat": "CSAT 1-5 分", "nps": "NPS 0-10 分", "number": "数值"}
    return f"{names[data.score_kind]}{' (自动识别)' if data.score_kind_detected else ''}"


def _drivers_intro(data: ReportData) -> str:
    left = sum(data.score_issues.values())
    text = (
        f"评分列 {data.score_column} ({_kind_text(data)}): {data.driver_rows:,} 条有效评论带有可用评分, 平均 "
        f"{data.score_mean:.2f}" if data.score_mean is not None else f"评分列 {data.score_column} ({_kind_text(data)}): 没有可用评分"
    )
    if data.nps:
        text += f"; NPS {data.nps['nps']:.1f} (推荐者 {data.nps['promoters']:,}, 中立者 {data.nps['passives']:,}, 贬损者 {data.nps['detractors']:,})"
    if left:
        text += f"; {left:,} 条评分为空、非数字或超出范围, 不计入 (见数据质量)"
    return text + "。差值 = 有该问题的平均分 − 无该问题的平均分 (负数表示拉低满意度); 整体损失分 = 占比 × (−差值), 按它排序: 排在最前的最值得先解决。调整后差值来自同时包含所有问题的线性回归, 排除了问题共现的影响。"


def _drivers_html(data: ReportData) -> str:
    table = drivers_table(data)
    if table.empty or not data.driver_rows:
        return f'<p class="note">{html.escape(_drivers_intro(data))}</p>'
    if table["调整后差值"].isna().all():
        table = table.drop(columns=["调整后差值", "调整后95%区间"])
        note = '<p class="note">评分条数不足以拟合回归 (每个系数至少 20 条, 每个问题至少出现 10 次), 只显示简单差值。</p>'
    else:
        note = ""
    return f'<p class="note">{html.escape(_drivers_intro(data))}</p>' + _html_table(table.set_index("问题类型"), index_name="问题类型") + note


def _quality_rows(data: ReportData) -> list[tuple[str, int]]:
    names = {"blank": "评分为空", "not_a_number": "评分不是数字", "out_of_range": "评分超出范围"}
    return [(f"{names[k]} ({data.score_column})", data.score_issues[k]) for k in names if data.score_issues.get(k)]


def _embedded_font(page: str) -> str:
    """A @font-face with just the characters the page uses, from the bundled CJK font, so the
    report reads the same on a machine without a Chinese font (about 150 KB for a typical page)."""
    font_file = cjk_font_file()
    if font_file is None:
        return ""
    import io

    from fontTools import subset
    from fontTools.ttLib import TTFont

    text = _DATA_URI.sub("", page)
    options = subset.Options()
    options.layout_features = ["*"]
    font = TTFont(str(font_file), lazy=True)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text="".join(sorted(set(text))))
    subsetter.subset(font)
    font.flavor = "woff"  # zlib-compressed; woff2 would need brotli
    buffer = io.BytesIO()
    font.save(buffer)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<style>@font-face{{font-family:"Kesheng CJK";src:url(data:font/woff;base64,{encoded}) format("woff");}}</style>'


def _sentiment_by_tag_table(data: ReportData) -> pd.DataFrame:
    rows = {}
    for tag in data.tags:
        counts = data.sentiment_by_tag[tag]
        total = sum(counts.values()) or 1
        rows[data.label(tag)] = {SENTIMENT_ZH[s]: counts[s] / total for s in SENTIMENTS}
    return pd.DataFrame.from_dict(rows, orient="index")


def _rows_without_text(data: ReportData) -> int:
    return data.rows - data.scored - data.non_answers


def _quality_html(data: ReportData) -> str:
    lines = [f"<p>空评论或缺少评论的行: {_rows_without_text(data):,} (保留在文件中, 不计入占比)。</p>"]
    lines.append(f"<p>{NON_ANSWERS_ZH}: {data.non_answers:,} 条 (保留在文件中, 不计入问题与情感占比)。</p>")
    for name, count in _quality_rows(data):
        lines.append(f"<p>{html.escape(name)}: {count:,} 条 (不计入满意度驱动分析)。</p>")
    if data.notes:
        frame = pd.DataFrame({"行数": dict(data.notes.most_common())})
        lines.append(_html_table(frame, index_name="备注 (notes)"))
    return "".join(lines)


def render_markdown(data: ReportData, chart_files: dict[str, str], title: str) -> str:
    def img(name: str) -> str:
        return f"![{name}]({chart_files[name]})\n" if name in chart_files else ""

    problems = problem_table(data)
    out = [f"# {title}", ""]
    out.append(f"数据: {data.source} · 共 {data.rows:,} 行, 有效评论 {data.scored:,} 条 (占比以有效评论为分母, 可多选) · 评论列: {data.text_column} · 模型版本: {model_version_text(data)}")
    heading = _Sections()
    out += ["", "## 摘要", ""] + [f"- {sentence}" for sentence in summary_sentences(data)]
    if data.alerts:
        out += ["", "## ⚠ 显著上升", ""] + [f"- {alert_sentence(a, data.label(a.tag), data.period)}" for a in data.alerts]
        out += ["", f"(两比例单侧 z 检验, 对 {data.comparisons} 次比较做 Holm 校正, 族错误率 5%; 基于原始占比)"]
    if data.period_notes:
        out += [""] + [f"注: {note}" for note in data.period_notes]
    summary = escalation_summary(data)
    if summary is not None:
        out += ["", f"## ⚠ {ESCALATE_ZH}", "", summary, ""]
        out += [f"{i}. {' '.join(e['text'].split())} (概率 {e['score']:.2f})" for i, e in enumerate(data.escalations, start=1)]
    out += ["", f"## {heading('问题类型分布')}", "", share_note(data), ""]
    shown = problems.assign(**{"95% 区间": [_interval_text(lo, hi) for lo, hi in zip(problems["区间下限"], problems["区间上限"])]}).rename(columns={"占比": "原始占比"})
    out.append(_md_table(shown.set_index("问题类型")[["数量", "原始占比", "占比估计", "95% 区间", "具体场景"]], ["原始占比", "占比估计"], index_name="问题类型"))
    out += ["", img("problems")]
    for tag in sorted(data.tags, key=lambda t: -data.tag_counts[t]):
        examples = data.examples.get(tag, [])
        if examples:
            out.append(f"**{data.label(tag)}** 代表性评论:")
            out += [f"{i}. {' '.join(e['text'].split())} (概率 {e['score']:.2f})" for i, e in enumerate(examples, start=1)]
            out.append("")
    if data.theme_embeddings is not None:
        out += [f"## {heading(f'{OTHER_ZH} 里有什么')}", "", _other_themes_note(data), ""]
        themes = data.themes.get("")
        if themes:
            out += ["| 主题 | 占其他类 | 约条数 | 代表性评论 |", "|---|---:|---:|---|"]
            out += [f"| {t['label']} | {_pct(t['share'])} | ≈{t['estimate']:,} | " + "<br>".join(" ".join(x.split()).replace("|", "\\|") for x in t["examples"]) + " |" for t in themes]
        else:
            out.append("未发现足够集中的主题。")
        out.append("")
    if data.score_column:
        out += [f"## {heading(f'满意度驱动因素 (按 {data.score_column})')}", "", _drivers_intro(data), ""]
        table = drivers_table(data)
        if not table.empty and data.driver_rows:
            out += [_md_table(table.set_index("问题类型"), index_name="问题类型"), ""]
    out += [f"## {heading('情感分布')}", "", _md_table(sentiment_table(data).set_index("情感")[["数量", "占比"]], ["占比"], index_name="情感"), "", img("sentiment")]
    out += ["### 各问题类型的情感构成", "", _md_table(_sentiment_by_tag_table(data), ["负面", "中性", "正面"], index_name="问题类型"), ""]
    out += [f"## {heading('问题共现')}", "", _md_table(cooccurrence_table(data)), "", img("cooccurrence")]
    for column, table in data.groups.items():
        breakdown = breakdown_table(data, table)
        out += [f"## {heading(f'按 {column} 分组')}", "", _md_table(breakdown, [c for c in breakdown.columns if c != "评论数"], index_name=column), "", img(f"group_{column}")]
    if data.trend is not None:
        breakdown = breakdown_table(data, data.trend)
        out += [f"## {heading(f'趋势 (按 {data.date_column})')}", "", _md_table(breakdown, [c for c in breakdown.columns if c != "评论数"], index_name="时间"), ""]
        if data.unparsed_dates:
            out.append(f"{data.unparsed_dates:,} 条评论的日期无法解析, 未计入趋势。")
        out += [img("trend")]
    out += [f"## {heading('数据质量')}", "", f"空评论或缺少评论的行: {_rows_without_text(data):,}"]
    out.append(f"{NON_ANSWERS_ZH}: {data.non_answers:,} (不计入问题与情感占比)")
    out += [f"{name}: {count:,} (不计入满意度驱动分析)" for name, count in _quality_rows(data)]
    if data.notes:
        out += ["", _md_table(pd.DataFrame({"行数": dict(data.notes.most_common())}), index_name="备注 (notes)")]
    return "\n".join(out) + "\n"


def summary_sentences(data: ReportData) -> list[str]:
    """3-5 plain sentences from the numbers, for the top of the report: the largest problem, the
    biggest driver, the alerts, the escalations (templates only; no language model)."""
    out = [f"本次共分析 {data.scored:,} 条有效评论。"]
    ranked = sorted(data.tags, key=lambda t: -data.estimates[t].estimate if t in data.estimates else -data.share(data.tag_counts[t]))
    if ranked and data.tag_counts[ranked[0]]:
        top = ranked[0]
        e = data.estimates.get(top)
        if e is not None and e.method != "raw":
            out[0] = out[0][:-1] + f", 最突出的问题是「{data.label(top)}」: 校正模型误差后约占 {_pct(e.estimate)} (95% 区间 {_interval_text(e.ci_low, e.ci_high)}; 模型直接标出 {_pct(e.raw)})。"
        else:
            out[0] = out[0][:-1] + f", 最突出的问题是「{data.label(top)}」, 占 {_pct(data.share(data.tag_counts[top]))} (未校正模型误差)。"
        if len(ranked) > 1 and data.tag_counts[ranked[1]]:
            second = ranked[1]
            share = data.estimates[second].estimate if second in data.estimates else data.share(data.tag_counts[second])
            out.append(f"其次是「{data.label(second)}」, 约占 {_pct(share)}; {data.share(data.other) * 100:.0f}% 的评论不涉及服务问题。")
    else:
        out[0] = out[0][:-1] + ", 没有评论被标出服务问题。"
    if data.score_column:
        costly = [d for d in data.drivers if d.ci_high is not None and d.ci_high < 0]
        if costly:
            d = costly[0]
            out.append(
                f"对满意度影响最大的是「{data.label(d.tag)}」: 提及它的评论平均 {d.mean_with:.2f} 分, 其余 {d.mean_without:.2f} 分, "
                f"整体均分因此低 {d.points_lost:.2f} 分, 建议优先解决。"
            )
        elif data.driver_rows:
            out.append(f"在 {data.driver_rows:,} 条带评分的评论中, 没有哪个问题显著拉低 {data.score_column}。")
    if data.date_column is not None:
        if data.alerts:
            out.append("预警: " + "; ".join(alert_sentence(a, data.label(a.tag), data.period) for a in data.alerts[:2]) + "。")
        elif data.comparisons:
            out.append("与上一期相比, 没有问题的占比显著上升。")
    if data.escalate_known:
        out.append(f"{data.escalated:,} 条评论需升级处理 (占 {_pct(data.escalated / data.escalate_known)}), 应尽快由专人跟进。" if data.escalated else "没有评论需要升级处理。")
    return out[:5]


def _number(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), digits)


def _json_problems(data: ReportData) -> list[dict]:
    rows = []
    for _, row in problem_table(data).iterrows():
        tag = row["标签"] or None
        rows.append({
            "tag": tag, "zh": row["问题类型"], "count": int(row["数量"]), "share": _number(row["占比"]), "estimate": _number(row["占比估计"]),
            "ci_low": _number(row["区间下限"]), "ci_high": _number(row["区间上限"]), "method": row["方法"],
            "scenarios": [{"text": t, "count": n} for t, n in data.scenarios.get(tag, [])] if tag else [],
            "examples": [{"text": e["text"], "score": _number(e["score"])} for e in data.examples.get(tag, [])] if tag else [],
        })
    return rows


def _json_drivers(data: ReportData) -> dict | None:
    if not data.score_column:
        return None
    return {
        "score_column": data.score_column, "kind": data.score_kind, "kind_detected": data.score_kind_detected, "rows": data.driver_rows,
        "mean": _number(data.score_mean), "nps": None if data.nps is None else {k: _number(v) if k == "nps" else v for k, v in data.nps.items()},
        "drivers": [
            {
                "tag": d.tag, "zh": data.label(d.tag), "with_n": d.with_n, "mean_with": _number(d.mean_with), "without_n": d.without_n,
                "mean_without": _number(d.mean_without), "impact": _number(d.impact), "ci_low": _number(d.ci_low), "ci_high": _number(d.ci_high),
                "share": _number(d.share), "points_lost": _number(d.points_lost), "adjusted": _number(d.adjusted),
                "adjusted_ci_low": _number(d.adjusted_low), "adjusted_ci_high": _number(d.adjusted_high),
                "nps_with": _number(d.nps_with), "nps_without": _number(d.nps_without),
            }
            for d in data.drivers
        ],
    }


def _json_table(data: ReportData, table: pd.DataFrame) -> list[dict]:
    out = []
    for key in table.index:
        n = int(table.loc[key, "n"])
        out.append({
            "value": str(key), "n": n,
            "counts": {t: int(table.loc[key, t]) for t in data.tags} | {"other": int(table.loc[key, OTHER_ZH])},
            "shares": {t: _number(table.loc[key, t] / n if n else 0.0) for t in data.tags} | {"other": _number(table.loc[key, OTHER_ZH] / n if n else 0.0)},
            "negative_share": _number(table.loc[key, "negative"] / n if n else 0.0),
        })
    return out


def _json_alerts(data: ReportData) -> list[dict]:
    return [
        {
            "tag": a.tag, "zh": data.label(a.tag), "period": a.period, "previous": a.previous, "share": _number(a.share), "previous_share": _number(a.previous_share),
            "count": a.count, "n": a.n, "previous_count": a.previous_count, "previous_n": a.previous_n, "p_value": _number(a.p_value, 6),
            "p_adjusted": _number(a.p_adjusted, 6), "latest": a.latest, "text": alert_sentence(a, data.label(a.tag), data.period),
        }
        for a in data.alerts
    ]


# Each key of report.json and how it is built from the aggregated data; a new report section adds
# its entry here (the HTML and Markdown renderers show the same numbers).
JSON_SECTIONS: dict[str, Callable[[ReportData], Any]] = {
    "summary": summary_sentences,
    "model_version": lambda d: model_version_text(d),
    "model_versions": lambda d: [{"version": v or None, "rows": n} for v, n in d.model_versions.most_common()],
    "rows": lambda d: {"total": d.rows, "with_text": d.scored + d.non_answers, "without_text": _rows_without_text(d), "non_answers": d.non_answers, "scored": d.scored},
    "share_correction": lambda d: {"measured_on": d.share_rates.measured_on if d.share_rates else None, "strata": d.share_strata, "note": share_note(d)},
    "problems": _json_problems,
    "drivers": lambda d: (_json_drivers(d) or {}).get("drivers", []),
    "satisfaction": _json_drivers,
    "alerts": _json_alerts,
    "period_notes": lambda d: list(d.period_notes),
    "comparisons": lambda d: d.comparisons,
    "sentiment": lambda d: {s: d.sentiment[s] for s in SENTIMENTS},
    "cooccurrence": lambda d: {"tags": list(d.tags), "counts": d.cooccurrence.tolist() if d.cooccurrence is not None else []},
    "groups": lambda d: {column: _json_table(d, table) for column, table in d.groups.items()},
    "trend": lambda d: None if d.trend is None else {"date_column": d.date_column, "period": d.period, "unparsed_dates": d.unparsed_dates, "periods": _json_table(d, d.trend)},
    "escalations": lambda d: None if d.escalate_known is None else {"known": d.escalate_known, "escalated": d.escalated, "comments": [{"text": e["text"], "score": _number(e["score"])} for e in d.escalations]},
    "data_quality": lambda d: {"rows_without_text": _rows_without_text(d), "non_answers": d.non_answers, "notes": dict(d.notes), "score_issues": dict(d.score_issues)},
    "themes": lambda d: None if d.theme_embeddings is None else {
        "embeddings": d.theme_embeddings,
        "other": d.themes.get("", []),
        "scenarios": {tag: d.themes.get(tag, []) for tag in d.tags},
        "sample_sizes": {(tag or "other"): n for tag, n in d.theme_samples.items()},
        "notes": list(d.theme_notes),
    },
}


def report_json(data: ReportData, title: str = "") -> dict:
    """Everything the HTML report shows, as one JSON object (`-o report.json`)."""
    return {"title": title, "source": data.source, **{key: build(data) for key, build in JSON_SECTIONS.items()}}


@dataclass
class WrittenReport:
    files: list[Path]  # reports and chart files written
    missing_glyphs: list[str]  # characters no font could draw (empty when charts render fully)
    data: ReportData


def write_report(data: ReportData, outputs: Sequence[str | os.PathLike], title: str = ReportOptions.title, overwrite: bool = False) -> WrittenReport:
    """Write each output (.html self-contained with interactive charts; .md with a `<name>_files/`
    folder of PNG+SVG charts; .json with the numbers)."""
    targets = [Path(o) for o in outputs]
    for target in targets:
        if target.suffix.lower() not in (".html", ".htm", ".md", ".json"):
            raise ReportError(f"{target}: the report is written as .html, .md or .json")
        if target.exists() and not overwrite:
            raise ReportError(f"{target} exists; pass --overwrite to replace it")
    # Static charts (matplotlib) are drawn only for Markdown; the HTML page draws its own.
    charts, missing = render_charts(data) if any(t.suffix.lower() == ".md" for t in targets) else ({}, [])
    written = []
    for target in targets:
        if target.suffix.lower() == ".json":
            write_atomic(target, json.dumps(report_json(data, title), ensure_ascii=False, indent=2, allow_nan=False).encode("utf-8"))
        elif target.suffix.lower() == ".md":
            folder = target.with_name(f"{target.stem}_files")
            folder.mkdir(parents=True, exist_ok=True)
            files = {}
            for name, chart in charts.items():
                for ext, content in (("png", chart.png), ("svg", chart.svg)):
                    path = folder / f"{name}.{ext}"
                    write_atomic(path, content)
                    written.append(path)
                files[name] = f"{folder.name}/{name}.png"
            write_atomic(target, render_markdown(data, files, title).encode("utf-8"))
        else:
            write_atomic(target, render_html(data, title).encode("utf-8"))
        written.append(target)
    return WrittenReport(written, missing, data)
