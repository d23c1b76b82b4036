"""Label sources beyond labeled files: the API's feedback store, Label Studio and Argilla exports.

Each reader returns a LabeledSet in the training taxonomy, with -1 / None for what a source did
not judge. Several annotations of one comment (several annotators, or the same comment in
several sources) are merged field by field; where they disagree the field is reported as a
conflict and left unlabeled.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from kesheng.models.schema import ESCALATE, ESCALATE_ZH, SENTIMENTS, Taxonomy, UnknownLabelError, sentiment_name
from kesheng.stores.feedback import FeedbackStore, FeedbackStoreError
from kesheng.training.config import LabelSource
from kesheng.training.data import DataValidationError, LabelConflict, LabeledSet, Problems, dedupe_key, load_labeled, merge_field

__all__ = ["CollectedLabels", "collect_labels", "load_label_source", "merge_by_text"]



@dataclass
class _Annotation:
    """One annotator's judgment of one comment, in the taxonomy."""

    key: str  # the comment's id in its source
    text: str
    tags: dict[str, int]  # judged tags only
    sentiment: str | None
    escalate: int | None = None  # 1 / 0; None: not judged


def load_label_source(source: LabelSource, taxonomy: Taxonomy) -> tuple[LabeledSet, list[LabelConflict]]:
    path = Path(source.path)
    if not path.is_file():
        raise DataValidationError(f"{path}: no such {source.kind} file")
    reader = {"feedback": _read_feedback, "label_studio": _read_label_studio, "argilla": _read_argilla}[source.kind]
    problems = Problems(f"{path} ({source.kind})")
    annotations = list(reader(path, source, taxonomy, problems))
    if problems.rows:
        raise DataValidationError(problems.message())
    if not annotations:
        raise DataValidationError(f"{path}: no labeled comments in this {source.kind} export")
    return _combine(annotations, taxonomy, f"{source.kind}:{path.name}")


def merge_by_text(sets: Iterable[LabeledSet], taxonomy: Taxonomy) -> tuple[LabeledSet, list[LabelConflict]]:
    """One row per distinct comment text (after normalization) across sources; conflicts reported."""
    annotations = []
    for labeled in sets:
        for i in range(len(labeled)):
            tags = {name: int(labeled.tags[i, j]) for j, name in enumerate(taxonomy.names) if labeled.tags[i, j] >= 0}
            source = labeled.sources[i] if labeled.sources else "labels"
            escalate = int(labeled.escalate[i]) if labeled.escalate[i] >= 0 else None
            annotations.append((source, _Annotation(labeled.ids[i], labeled.texts[i], tags, labeled.sentiments[i], escalate)))
    groups: dict[str, list[tuple[str, _Annotation]]] = defaultdict(list)
    for source, annotation in annotations:
        groups[dedupe_key(annotation.text)].append((source, annotation))
    return _rows(list(groups.values()), taxonomy)


def _combine(annotations: list[_Annotation], taxonomy: Taxonomy, source: str) -> tuple[LabeledSet, list[LabelConflict]]:
    groups: dict[str, list[tuple[str, _Annotation]]] = defaultdict(list)
    for annotation in annotations:
        groups[annotation.key].append((source, annotation))
    return _rows(list(groups.values()), taxonomy)


def _rows(groups: list[list[tuple[str, _Annotation]]], taxonomy: Taxonomy) -> tuple[LabeledSet, list[LabelConflict]]:
    """One row per group of annotations of one comment, each field merged by `merge_field`."""
    ids, texts, sentiments, sources = [], [], [], []
    tags = np.full((len(groups), len(taxonomy.names)), -1, dtype=np.int8)
    escalate = np.full(len(groups), -1, dtype=np.int8)
    conflicts: list[LabelConflict] = []
    for row, group in enumerate(groups):
        first_source, first = group[0]
        ids.append(first.key)
        texts.append(first.text)
        sources.append(first_source)
        for j, name in enumerate(taxonomy.names):
            value, conflict = merge_field(first.key, name, [(s, a.tags[name]) for s, a in group if name in a.tags])
            tags[row, j] = -1 if value is None else value
            conflicts += [conflict] if conflict else []
        value, conflict = merge_field(first.key, "sentiment", [(s, a.sentiment) for s, a in group if a.sentiment is not None])
        sentiments.append(value)
        conflicts += [conflict] if conflict else []
        value, conflict = merge_field(first.key, ESCALATE, [(s, a.escalate) for s, a in group if a.escalate is not None])
        escalate[row] = -1 if value is None else value
        conflicts += [conflict] if conflict else []
    warnings = [f"conflicting labels, left unlabeled: {c.describe()}" for c in conflicts]
    return LabeledSet(ids, texts, tags, sentiments, taxonomy, warnings, sources, escalate), conflicts


def _tag_names(values: Iterable, taxonomy: Taxonomy, where: str, problems: Problems) -> dict[str, int] | None:
    """Chosen labels (machine or Chinese names, old names via `renamed`) -> every tag judged."""
    judged = {name: 0 for name in taxonomy.names}
    for value in values:
        try:
            name = taxonomy.label_name(str(value))
        except UnknownLabelError:
            problems.add(f"label not in the taxonomy {list(taxonomy.names)} (Chinese names are accepted too)", f"{where}: {value!r}", at=where)
            return None
        if name is not None:
            judged[name] = 1
    return judged


def _sentiment(value, where: str, problems: Problems) -> str | None:
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else (None if not value else value)
    if value in (None, ""):
        return None
    name = sentiment_name(value)
    if name is None:
        problems.add(f"sentiment not in {list(SENTIMENTS)} or their Chinese names", f"{where}: {value!r}", at=where)
    return name


# The choices an annotation tool offers for escalate (the labeling config kesheng writes uses
# "yes"/"no"); 0/1, true/false and the Chinese names are read too.
_ESCALATE_YES = {"yes", "1", "true", ESCALATE, ESCALATE_ZH, "需升级", "是"}
_ESCALATE_NO = {"no", "0", "false", "无需升级", "不需升级", "否"}


def _escalate(value, where: str, problems: Problems) -> int | None:
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else (None if not value else value)
    if value in (None, ""):
        return None
    if isinstance(value, bool) or value in (0, 1):
        return int(value)
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in _ESCALATE_YES:
        return 1
    if text in _ESCALATE_NO:
        return 0
    problems.add("escalate not yes/no (or 1/0, 需升级处理/无需升级)", f"{where}: {value!r}", at=where)
    return None


def _read_feedback(path: Path, source: LabelSource, taxonomy: Taxonomy, problems: Problems):
    try:
        store = FeedbackStore(path)
    except FeedbackStoreError as exc:
        raise DataValidationError(str(exc)) from exc
    with store:
        for record in store.records():
            where = f"feedback #{record.seq}"
            judged: dict[str, int] = {}
            try:
                for label in record.judged_tags:
                    name = taxonomy.label_name(label)
                    if name is not None:
                        judged[name] = int(label in record.tags)
            except UnknownLabelError as exc:
                problems.add("labels for a tag the taxonomy does not define (rename or retire it)", f"{where}: {exc}", at=where)
                continue
            key = record.comment_id or f"feedback-{record.seq}"
            yield _Annotation(key, record.text, judged, record.sentiment, None if record.escalate is None else int(record.escalate))


def _load_json_records(path: Path) -> list:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise DataValidationError(f"{path}: neither a JSON array nor JSON lines ({exc.msg}, line {exc.lineno})") from exc
    if isinstance(data, dict):
        data = data.get("records", data.get("tasks", [data]))
    if not isinstance(data, list):
        raise DataValidationError(f"{path}: expected a list of records")
    return data


def _json_objects(path: Path, noun: str, problems: Problems):
    """(number, "task 12", object) for each JSON object of an export; anything else is a problem."""
    for n, item in enumerate(_load_json_records(path), start=1):
        where = f"{noun} {item.get('id', n) if isinstance(item, dict) else n}"
        if isinstance(item, dict):
            yield n, where, item
        else:
            problems.add("not a JSON object", where)


def _read_label_studio(path: Path, source: LabelSource, taxonomy: Taxonomy, problems: Problems):
    """Label Studio's JSON export (tasks with annotations) or JSON-MIN export (one flat row per annotation)."""
    for n, where, task in _json_objects(path, "task", problems):
        if "annotations" in task:
            data = task.get("data") or {}
            text = data.get(source.text_field)
            key = str(data.get("id", task.get("id", n)))
            judgments = []
            for annotation in task["annotations"]:
                if annotation.get("was_cancelled"):
                    continue
                chosen: dict[str, list] = defaultdict(list)
                for result in annotation.get("result", []):
                    choices = (result.get("value") or {}).get("choices")
                    if choices is not None:
                        chosen[result.get("from_name")].extend(choices)
                judgments.append((chosen.get(source.tags_field, []), chosen.get(source.sentiment_field), chosen.get(source.escalate_field)))
        else:  # JSON-MIN: the choices are flattened into the row
            text = task.get(source.text_field)
            key = str(task.get("id", n))
            raw_tags = task.get(source.tags_field, [])
            if isinstance(raw_tags, dict):
                raw_tags = raw_tags.get("choices", [])
            judgments = [([raw_tags] if isinstance(raw_tags, str) else raw_tags, task.get(source.sentiment_field), task.get(source.escalate_field))]
        if not isinstance(text, str) or not text.strip():
            problems.add(f"no text in field {source.text_field!r}", where)
            continue
        for raw_tags, raw_sentiment, raw_escalate in judgments:
            tags = _tag_names(raw_tags, taxonomy, where, problems)
            if tags is not None:
                yield _Annotation(key, text, tags, _sentiment(raw_sentiment, where, problems), _escalate(raw_escalate, where, problems))


def _read_argilla(path: Path, source: LabelSource, taxonomy: Taxonomy, problems: Problems):
    """Argilla 2.x record exports, nested (`fields`/`responses`) or flattened (`tags.responses`)."""
    for n, where, record in _json_objects(path, "record", problems):
        fields = record.get("fields") or {}
        text = fields.get(source.text_field, record.get(source.text_field))
        key = str(record.get("id", n))
        if isinstance(record.get("responses"), dict):
            submitted = {
                question: [r.get("value") for r in answers if r.get("status", "submitted") == "submitted"]
                for question, answers in record["responses"].items()
            }
        else:
            submitted = {
                question: list(record.get(f"{question}.responses") or [])
                for question in (source.tags_field, source.sentiment_field, source.escalate_field)
            }
            statuses = record.get(f"{source.tags_field}.responses.status")
            if statuses:
                submitted[source.tags_field] = [
                    v for v, s in zip(submitted[source.tags_field], statuses) if s == "submitted"
                ]
        if not isinstance(text, str) or not text.strip():
            problems.add(f"no text in field {source.text_field!r}", where)
            continue
        tag_answers = submitted.get(source.tags_field, [])
        sentiment_answers = submitted.get(source.sentiment_field, [])
        escalate_answers = submitted.get(source.escalate_field, [])
        for k in range(max(len(tag_answers), len(sentiment_answers), len(escalate_answers))):
            tags: dict[str, int] | None = {}
            if k < len(tag_answers):
                answer = tag_answers[k]
                tags = _tag_names([answer] if isinstance(answer, str) else (answer or []), taxonomy, where, problems)
            if tags is None:
                continue
            sentiment = _sentiment(sentiment_answers[k], where, problems) if k < len(sentiment_answers) else None
            escalate = _escalate(escalate_answers[k], where, problems) if k < len(escalate_answers) else None
            yield _Annotation(key, text, tags, sentiment, escalate)


@dataclass
class CollectedLabels:
    """Every label source read as training would, merged by comment text."""

    merged: LabeledSet  # one row per distinct comment
    n_sources: int  # label files, stores and exports read
    conflicts: list[str]  # fields the sources disagree on (left unlabeled when training), described


def collect_labels(
    taxonomy: Taxonomy,
    corpus_labels: Sequence[str] = (),
    labeled_files: Sequence[str] = (),
    sources: Sequence[LabelSource] = (),
    corpus_dir: str | None = None,
) -> CollectedLabels:
    """Read label files by corpus id, labeled files with texts and tool exports; merge them by text."""
    from kesheng.training.corpus import load_corpus_labels

    parts: list[LabeledSet] = []
    conflicts: list[str] = []
    if corpus_labels:
        corpus_part = load_corpus_labels(list(corpus_labels), corpus_dir, taxonomy)
        parts.append(corpus_part)
        conflicts += corpus_part.warnings
    parts += [load_labeled(path, taxonomy=taxonomy) for path in labeled_files]
    for source in sources:
        part, found = load_label_source(source, taxonomy)
        parts.append(part)
        conflicts += [f"{source.path}: {c.describe()}" for c in found]
    if not parts:
        raise DataValidationError("give at least one label source")
    merged, across = merge_by_text(parts, taxonomy)
    conflicts += [f"across sources: {c.describe()}" for c in across]
    return CollectedLabels(merged, len(parts), conflicts)
