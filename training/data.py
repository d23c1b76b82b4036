"""Labeled data: load JSONL/CSV with `datasets`, validate, split reproducibly.

Every problem is reported with the offending rows (first few + count), and nothing is
silently dropped: a file either loads whole or fails with the full list of problems.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from kesheng.files.readers import InputFileError, open_reader
from kesheng.models.schema import DEFAULT_TAXONOMY, ESCALATE, SENTIMENTS, Taxonomy, sentiment_name
from kesheng.nlp import normalize
from kesheng.nlp.normalize import is_emoji
from kesheng.training.config import ColumnMap

__all__ = ["DataValidationError", "LabelConflict", "LabeledSet", "group_split", "load_labeled", "merge_field", "read_rows"]

_TRUE = {1, "1", True, "true", "True", "yes"}
_FALSE = {0, "0", False, "false", "False", "no"}
SHOW_ROWS = 5


class DataValidationError(ValueError):
    """The labeled data has problems; the message lists each with example rows."""


@dataclass
class LabeledSet:
    ids: list[str]
    texts: list[str]
    tags: np.ndarray  # (n, n_tags) int8 in taxonomy order: 1, 0, or -1 = not labeled (partial labels)
    sentiments: list[str | None]  # None = sentiment not labeled
    taxonomy: Taxonomy
    warnings: list[str]
    sources: list[str] | None = None  # where each row comes from (stc3, waimai, seed...), for per-source metrics
    escalate: np.ndarray | None = None  # (n,) int8: 1, 0, or -1 = not labeled; None = no row labeled

    def __post_init__(self):
        if self.escalate is None:
            self.escalate = np.full(len(self.ids), -1, dtype=np.int8)
        self.escalate = np.asarray(self.escalate, dtype=np.int8)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_escalate(self) -> bool:
        """Whether any row is labeled for escalate (else a model trained on it gets no escalate head)."""
        return bool((self.escalate >= 0).any())

    def subset(self, indices: Sequence[int]) -> "LabeledSet":
        idx = list(indices)
        return LabeledSet(
            [self.ids[i] for i in idx],
            [self.texts[i] for i in idx],
            self.tags[idx],
            [self.sentiments[i] for i in idx],
            self.taxonomy,
            [],
            [self.sources[i] for i in idx] if self.sources is not None else None,
            self.escalate[idx],
        )

    @staticmethod
    def concat(parts: Sequence["LabeledSet"]) -> "LabeledSet":
        return LabeledSet(
            [i for p in parts for i in p.ids],
            [t for p in parts for t in p.texts],
            np.concatenate([p.tags for p in parts]) if parts else np.zeros((0, 0), np.int8),
            [s for p in parts for s in p.sentiments],
            parts[0].taxonomy,
            [w for p in parts for w in p.warnings],
            [s for p in parts for s in (p.sources or ["file"] * len(p))],
            np.concatenate([p.escalate for p in parts]) if parts else None,
        )


class Problems:
    """Problems found in a file, listed per kind with the rows they are on."""

    def __init__(self, source: str):
        self.source = source
        self.rows: dict[str, list[str]] = defaultdict(list)
        self._at: set[str] = set()

    def add(self, kind: str, row: str, at: str | None = None) -> None:
        """`row`: what to show (the row and the bad value); `at`: the row itself, so that a row
        with two problems is counted once (defaults to `row`)."""
        self.rows[kind].append(row)
        self._at.add(at if at is not None else row)

    def message(self) -> str:
        count = len(self._at)
        lines = [f"{self.source}: {count} row{'' if count == 1 else 's'} with problems"]
        for kind, rows in self.rows.items():
            shown = ", ".join(rows[:SHOW_ROWS]) + (f", ... ({len(rows)} in all)" if len(rows) > SHOW_ROWS else "")
            lines.append(f"  - {kind}: {shown}")
        return "\n".join(lines)


@dataclass(frozen=True)
class LabelConflict:
    """Annotations of one comment disagree on one field; the field is left unlabeled."""

    id: str
    field: str  # a tag name, "sentiment" or "escalate"
    values: tuple  # the differing values, in source order
    sources: tuple[str, ...]

    def describe(self) -> str:
        given = ", ".join(f"{v!r} in {s}" for v, s in zip(self.values, self.sources))
        return f"{self.id}: {self.field} = {given}"


def merge_field(comment_id: str, field: str, votes: Sequence[tuple[str, object]]) -> tuple[object | None, LabelConflict | None]:
    """THE label-merge rule, used wherever several annotations of one comment meet (label files
    joined by id, tool exports and the feedback store merged by text, repeated texts in one file):
    the labeled values of a field (`votes`: source, value; unlabeled values left out) are kept
    when they agree; when they disagree the field is left unlabeled (None) and the conflict is
    returned for the caller to report. No annotation outranks another."""
    values = {value for _, value in votes}
    if len(values) <= 1:
        return (values.pop() if values else None), None
    return None, LabelConflict(comment_id, field, tuple(v for _, v in votes), tuple(s for s, _ in votes))


def dedupe_key(text: str) -> str:
    """Texts that differ only in width, script, case, spacing or punctuation are one text."""
    return "".join(ch for ch in normalize(text).text if ch.isalnum() or is_emoji(ch))


def read_rows(path: Path, text_field: str | None = None) -> list[dict]:
    """Every row of a CSV, TSV, JSONL, XLSX or Parquet file, read by the reader stack `kesheng tag`
    uses (so the encoding is detected the same way); for training a malformed row is an error
    naming it, never a guess. `text_field`: a column the file must have."""
    try:
        reader = open_reader(Path(path), text_field, strict=True)
        try:
            return [row for row, _, _ in reader.rows()]
        finally:
            reader.close()
    except InputFileError as exc:
        raise DataValidationError(str(exc)) from exc


def load_labeled(
    path: str | Path,
    columns: ColumnMap = ColumnMap(),
    taxonomy: Taxonomy = DEFAULT_TAXONOMY,
) -> LabeledSet:
    """Load one labeled file. Tags come from one 0/1 column per tag or a `tags` list column."""
    path = Path(path)
    rows = read_rows(path)
    if not rows:
        raise DataValidationError(f"{path}: no rows")
    available = list(rows[0].keys())
    if columns.text not in available:
        raise DataValidationError(f"{path}: text column {columns.text!r} not found; columns are {available}")
    if columns.group is not None and columns.group not in available:
        raise DataValidationError(f"{path}: group column {columns.group!r} not found; columns are {available}")
    # A tag column may be a current tag, an old name (renamed) or a retired tag; tags without a
    # column are unknown (-1) for this file: a file labeling one new tag is a valid source.
    tag_columns = {c: taxonomy.label_name(c) for c in available if taxonomy.is_label_name(c)}
    tag_columns = {c: name for c, name in tag_columns.items() if name is not None}
    reserved = {columns.text, columns.id, columns.sentiment, columns.tags, columns.group, columns.escalate, "split", "source"}
    orphans = [c for c in available if c not in reserved and not taxonomy.is_label_name(c) and _looks_like_labels(rows, c)]
    if orphans:
        raise DataValidationError(
            f"{path}: columns {orphans} hold 0/1 labels but the taxonomy has no such tag (tags: {list(taxonomy.names)}); "
            "add them to the taxonomy, map them under \"renamed\", or list them under \"retired\" to drop them"
        )
    has_sentiment = columns.sentiment in available
    has_escalate = columns.escalate in available
    # A file labeling only escalate (or only sentiment + escalate) leaves every tag unknown.
    per_tag = bool(tag_columns) or (has_escalate and columns.tags not in available)
    if not per_tag and columns.tags not in available:
        raise DataValidationError(
            f"{path}: no tag labels: need 0/1 columns named after tags of {list(taxonomy.names)}, "
            f"a list column {columns.tags!r}, or an {columns.escalate!r} column; columns are {available}"
        )
    problems = Problems(str(path))
    escalate = np.full(len(rows), -1, dtype=np.int8)
    ids: list[str] = []
    texts: list[str] = []
    tags = np.full((len(rows), len(taxonomy.names)), -1 if per_tag else 0, dtype=np.int8)
    sentiments: list[str | None] = []
    for n, row in enumerate(rows):
        raw_id = row.get(columns.id)
        row_id = str(raw_id) if raw_id not in (None, "") else f"row-{n + 1}"
        where = f"row {n + 1} (id {row_id})"
        ids.append(row_id)
        text = row.get(columns.text)
        if not isinstance(text, str) or not text.strip():
            problems.add(f"missing or empty text in column {columns.text!r}", where)
            text = ""
        texts.append(text)
        sentiment = row.get(columns.sentiment) if has_sentiment else None
        if sentiment in (None, ""):
            sentiment = None
        elif sentiment_name(sentiment) is None:
            problems.add(f"sentiment not in {list(SENTIMENTS)} or their Chinese names (empty = not labeled)", f"{where}: {sentiment!r}", at=where)
            sentiment = None
        else:
            sentiment = sentiment_name(sentiment)
        sentiments.append(sentiment)
        value = row.get(columns.escalate) if has_escalate else None
        if value in _TRUE:
            escalate[n] = 1
        elif value in _FALSE:
            escalate[n] = 0
        elif value not in (None, ""):
            problems.add(f"{columns.escalate!r} is not 0/1 (empty = not labeled)", f"{where}: {value!r}", at=where)
        if per_tag:
            for column, name in tag_columns.items():
                value = row.get(column)
                j = taxonomy.names.index(name)
                if value in _TRUE:
                    tags[n, j] = 1
                elif value in _FALSE:
                    tags[n, j] = max(tags[n, j], 0)
                elif value not in (None, ""):
                    problems.add(f"tag {column!r} is not 0/1 (empty = not labeled)", f"{where}: {value!r}", at=where)
        else:
            value = row.get(columns.tags)
            if isinstance(value, str):
                value = [v for v in value.replace(";", ",").replace("|", ",").split(",") if v.strip()]
            if not isinstance(value, list):
                problems.add(f"column {columns.tags!r} is not a list of tag names", f"{where}: {value!r}", at=where)
                continue
            for label in value:
                label = str(label).strip()
                if not taxonomy.is_label_name(label):
                    problems.add(f"unknown tag (the taxonomy's tags: {list(taxonomy.names)})", f"{where}: {label!r}", at=where)
                elif (name := taxonomy.label_name(label)) is not None:
                    tags[n, taxonomy.names.index(name)] = 1
    seen: dict[str, int] = {}
    for n, row_id in enumerate(ids):
        if row_id in seen:
            problems.add("duplicate id", f"row {n + 1} repeats id {row_id} of row {seen[row_id] + 1}", at=f"row {n + 1}")
        else:
            seen[row_id] = n
    warnings = []
    by_text: dict[str, list[int]] = defaultdict(list)
    for n, text in enumerate(texts):
        if text:
            by_text[dedupe_key(text)].append(n)
    for members in by_text.values():
        if len(members) < 2:
            continue
        pairs = f"ids {[ids[m] for m in members][:SHOW_ROWS]}"
        conflicts = []
        for j, name in enumerate(taxonomy.names):
            value, conflict = merge_field(ids[members[0]], name, [(ids[m], int(tags[m, j])) for m in members if tags[m, j] >= 0])
            tags[members, j] = -1 if value is None else value
            conflicts += [conflict] if conflict else []
        value, conflict = merge_field(ids[members[0]], "sentiment", [(ids[m], sentiments[m]) for m in members if sentiments[m] is not None])
        for m in members:
            sentiments[m] = value
        conflicts += [conflict] if conflict else []
        value, conflict = merge_field(ids[members[0]], ESCALATE, [(ids[m], int(escalate[m])) for m in members if escalate[m] >= 0])
        escalate[members] = -1 if value is None else value
        conflicts += [conflict] if conflict else []
        if conflicts:
            warnings += [f"{path}: the same text labeled differently, left unlabeled: {c.describe()}" for c in conflicts]
        else:
            warnings.append(f"{path}: duplicate text with identical labels, {pairs} (kept; splits keep them together)")
    if problems.rows:
        raise DataValidationError(problems.message())
    group = columns.group or "source"
    sources = [str(row.get(group) or path.stem) for row in rows]
    return LabeledSet(ids, texts, tags, sentiments, taxonomy, warnings, sources, escalate)


def _looks_like_labels(rows: list[dict], column: str) -> bool:
    values = {row.get(column) for row in rows}
    return bool(values) and values <= (_TRUE | _FALSE | {None, ""}) and bool(values & {1, "1", True})


def group_split(data: LabeledSet, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split row indices into (rest, held_out) of about `fraction`, reproducibly.

    Identical texts (after normalization) stay on one side so that a held-out score is never
    inflated by a copy in training; each label combination is split in proportion so rare
    tags appear on both sides.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be in (0, 1), got {fraction}")
    groups: dict[str, list[int]] = defaultdict(list)
    for n, text in enumerate(data.texts):
        groups[dedupe_key(text)].append(n)
    strata: dict[tuple, list[list[int]]] = defaultdict(list)
    for members in groups.values():
        first = members[0]
        strata[(tuple(data.tags[first].tolist()), data.sentiments[first] or "")].append(members)
    rng = random.Random(seed)
    rest: list[int] = []
    held: list[int] = []
    carry = 0.0
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        # Carry the rounding remainder across strata so small strata still add up to `fraction`.
        want = len(members) * fraction + carry
        take = int(want)
        carry = want - take
        for k, group in enumerate(members):
            (held if k < take else rest).extend(group)
    return sorted(rest), sorted(held)
