"""Readers for the public corpora the team labels (texts are read from the user's copy).

Row ids:
- `stc3-<dialogue id>`: NTCIR-14 STC-3 DCH-1 dialogue; the comment is ALL customer turns of
  the dialogue joined with newlines (follow-up turns are where "still not solved" shows up),
  the helpdesk's replies left out;
- `waimai-<n>`, `hotel-<n>`, `shopping-<n>`: the `id` column of the review CSVs.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from kesheng.models.schema import DEFAULT_TAXONOMY, ESCALATE, SENTIMENTS, Taxonomy
from kesheng.training.data import DataValidationError, LabelConflict, LabeledSet, Problems, merge_field

__all__ = [
    "CORPUS_ENV",
    "CorpusError",
    "LabelConflict",
    "SOURCES",
    "SPLITS",
    "load_corpus_labels",
    "load_corpus_splits",
    "merge_label_rows",
    "read_corpus",
    "read_label_file",
    "resolve_corpus_dir",
    "source_of",
]

SPLITS = ("train", "dev", "test")
# Fields a label file may carry besides the tags and the sentiment.
LABEL_EXTRA_FIELDS = {"id", "sentiment", ESCALATE, "split", "note"}

CORPUS_ENV = "KESHENG_CORPUS_DIR"
SOURCES = {
    "stc3": "stc3_dch1_train.json",
    "waimai": "waimai_10k.csv",
    "hotel": "hotel_reviews.csv",
    "shopping": "online_shopping_10_cats.csv",
}


class CorpusError(ValueError):
    """A corpus file is missing or not in the expected format."""


def resolve_corpus_dir(corpus_dir: str | os.PathLike | None) -> Path:
    chosen = corpus_dir or os.environ.get(CORPUS_ENV)
    if not chosen:
        raise CorpusError(f"no corpus directory: pass --corpus-dir or set ${CORPUS_ENV}")
    path = Path(chosen)
    if not path.is_dir():
        raise CorpusError(f"corpus directory {path} does not exist")
    return path


def source_of(row_id: str) -> str:
    return row_id.split("-", 1)[0]


def _read_stc3(path: Path) -> dict[str, str]:
    try:
        dialogues = json.loads(path.read_text(encoding="utf-8"))
        texts = {}
        for dialogue in dialogues:
            turns = ["".join(t["utterances"]) for t in dialogue["turns"] if t["sender"] == "customer"]
            texts[f"stc3-{dialogue['id']}"] = "\n".join(turns)
        return texts
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CorpusError(f"{path}: not an STC-3 dialogue file (list of {{id, turns[{{sender, utterances}}]}}): {exc!r}") from exc


def _read_reviews(path: Path) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"id", "review"} <= set(reader.fieldnames):
                raise CorpusError(f"{path}: expected columns 'id' and 'review', found {reader.fieldnames}")
            return {row["id"]: row["review"] or "" for row in reader}
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 ({exc.reason})") from exc


def read_corpus(corpus_dir: str | os.PathLike | None, sources: list[str] | None = None) -> dict[str, str]:
    """id -> comment text for the requested sources (all by default)."""
    directory = resolve_corpus_dir(corpus_dir)
    texts: dict[str, str] = {}
    for source in sources or list(SOURCES):
        if source not in SOURCES:
            raise CorpusError(f"unknown source {source!r}; known: {sorted(SOURCES)}")
        path = directory / SOURCES[source]
        if not path.is_file():
            raise CorpusError(f"{directory}: missing {SOURCES[source]} (needed for {source}-* ids)")
        texts.update(_read_stc3(path) if source == "stc3" else _read_reviews(path))
    return texts


def read_label_file(path: str | os.PathLike, taxonomy: Taxonomy = DEFAULT_TAXONOMY) -> list[dict]:
    """Validated rows of a label file keyed by corpus id (no texts): every problem listed.

    A row labels any subset of the taxonomy's tags (a missing tag is unknown, -1) and may omit
    the sentiment (None); old tag names map through the taxonomy's `renamed`, retired tags are
    dropped, and any other field is an error. Rows come back with every current tag filled in.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: no such label file")
    problems = Problems(str(path))
    rows: list[dict] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.add("not valid JSON", f"line {number} ({exc.msg})", at=f"line {number}")
                continue
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                problems.add("not an object with a string 'id'", f"line {number}")
                continue
            where = f"line {number} (id {raw['id']})"
            row = {"id": raw["id"], "sentiment": raw.get("sentiment"), ESCALATE: raw.get(ESCALATE, -1), **{name: -1 for name in taxonomy.names}}
            if row[ESCALATE] is None:
                row[ESCALATE] = -1
            if "split" in raw:
                row["split"] = raw["split"]
            labeled = row["sentiment"] is not None or row[ESCALATE] in (0, 1)
            if row[ESCALATE] not in (-1, 0, 1) or isinstance(row[ESCALATE], bool):
                problems.add("escalate not 0/1 (null = not labeled)", f"{where}: {row[ESCALATE]!r}", at=where)
                row[ESCALATE] = -1
            unknown = sorted(k for k in raw if k not in LABEL_EXTRA_FIELDS and not taxonomy.is_label_name(k))
            if unknown:
                problems.add(
                    f"label names not in the taxonomy {list(taxonomy.names)} (add them as tags, or map them under "
                    "\"renamed\" or \"retired\")",
                    f"{where}: {unknown}",
                    at=where,
                )
            for key, value in raw.items():
                if key in LABEL_EXTRA_FIELDS or not taxonomy.is_label_name(key):
                    continue
                name = taxonomy.label_name(key)
                if name is None:
                    continue
                if value not in (0, 1, None):
                    problems.add(f"tag {key!r} not 0/1 (null = not labeled)", f"{where}: {value!r}", at=where)
                elif value is not None:
                    if row[name] not in (-1, value):
                        problems.add("a tag is given twice (old and new name) with different values", f"{where}: {name}", at=where)
                    row[name] = value
                    labeled = True
            if row["sentiment"] is not None and row["sentiment"] not in SENTIMENTS:
                problems.add(f"sentiment not in {list(SENTIMENTS)} (null = not labeled)", f"{where}: {row['sentiment']!r}", at=where)
            if "split" in row and row["split"] not in SPLITS:
                problems.add(f"split not in {list(SPLITS)}", f"{where}: {row['split']!r}", at=where)
            if not labeled:
                problems.add("no labels (no tag, no sentiment, no escalate)", where)
            if row["id"] in seen:
                problems.add("duplicate id", f"{where} repeats line {seen[row['id']]}", at=where)
            else:
                seen[row["id"]] = number
            rows.append(row)
    if not rows and not problems.rows:
        raise DataValidationError(f"{path}: no label rows")
    if problems.rows:
        raise DataValidationError(problems.message())
    return rows


def merge_label_rows(files: dict[str, list[dict]], taxonomy: Taxonomy) -> tuple[list[dict], list[LabelConflict]]:
    """Rows of several label files joined by id, each field merged by `merge_field` (agreeing
    labels kept, disagreeing ones left unlabeled and reported). Different splits for one id
    would leak test comments into training, so that is an error.
    """
    fields = (*taxonomy.names, "sentiment", ESCALATE)
    merged: dict[str, dict] = {}
    votes: dict[tuple[str, str], list[tuple[str, object]]] = defaultdict(list)
    problems = Problems("label files " + ", ".join(files))
    for source, rows in files.items():
        for row in rows:
            current = merged.setdefault(row["id"], dict(row))
            if "split" in row:
                if "split" in current and current["split"] != row["split"]:
                    problems.add("one id in two splits", f"{row['id']}: {current['split']} and {row['split']}")
                current["split"] = row["split"]
            for field in fields:
                if row.get(field, -1) not in (-1, None):
                    votes[(row["id"], field)].append((source, row[field]))
    if problems.rows:
        raise DataValidationError(problems.message())
    conflicts: list[LabelConflict] = []
    for row_id, row in merged.items():
        for field in fields:
            value, conflict = merge_field(row_id, field, votes.get((row_id, field), []))
            row[field] = value if value is not None else (None if field == "sentiment" else -1)
            conflicts += [conflict] if conflict else []
    return list(merged.values()), conflicts


def load_corpus_labels(
    label_path: str | os.PathLike | Sequence[str | os.PathLike],
    corpus_dir: str | os.PathLike | None,
    taxonomy: Taxonomy = DEFAULT_TAXONOMY,
    split: str | None = None,
) -> LabeledSet:
    """Join label file(s) (ids + labels) with the corpus texts; `split` keeps one split only.

    Rows without a split are training rows. Every id must resolve to a non-empty text.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data, splits = _join_corpus(label_path, corpus_dir, taxonomy)
    if split is None:
        return data
    return data.subset([i for i, s in enumerate(splits) if s == split])


def load_corpus_splits(
    label_paths: str | os.PathLike | Sequence[str | os.PathLike],
    corpus_dir: str | os.PathLike | None,
    taxonomy: Taxonomy = DEFAULT_TAXONOMY,
) -> dict[str, LabeledSet]:
    """{train, dev, test} -> rows of the label file(s), joined by id, reading the corpus once.

    Conflicts between files are in each split's warnings (and the fields left unlabeled).
    """
    data, splits = _join_corpus(label_paths, corpus_dir, taxonomy)
    return {name: data.subset([i for i, s in enumerate(splits) if s == name]) for name in SPLITS}


def _join_corpus(
    label_paths: str | os.PathLike | Sequence[str | os.PathLike], corpus_dir: str | os.PathLike | None, taxonomy: Taxonomy
) -> tuple[LabeledSet, list[str]]:
    """All rows of the label file(s) with their texts, and each row's split."""
    paths = [label_paths] if isinstance(label_paths, (str, os.PathLike)) else list(label_paths)
    files = {str(p): read_label_file(p, taxonomy) for p in paths}
    rows, conflicts = merge_label_rows(files, taxonomy)
    label_path = ", ".join(files)
    sources = sorted({source_of(r["id"]) for r in rows})
    unknown_sources = [s for s in sources if s not in SOURCES]
    if unknown_sources:
        raise DataValidationError(f"{label_path}: ids from unknown sources {unknown_sources}; known: {sorted(SOURCES)}")
    texts = read_corpus(corpus_dir, sources)
    problems = Problems(label_path)
    for row in rows:
        text = texts.get(row["id"])
        if text is None:
            problems.add(f"id not found in the corpus at {resolve_corpus_dir(corpus_dir)}", row["id"])
        elif not text.strip():
            problems.add("id has an empty text in the corpus", row["id"])
    if problems.rows:
        raise DataValidationError(problems.message())
    warnings = [f"conflicting labels, left unlabeled: {c.describe()}" for c in conflicts]
    data = LabeledSet(
        ids=[r["id"] for r in rows],
        texts=[texts[r["id"]] for r in rows],
        tags=np.array([[r[name] for name in taxonomy.names] for r in rows], dtype=np.int8).reshape(len(rows), len(taxonomy.names)),
        sentiments=[r["sentiment"] for r in rows],
        taxonomy=taxonomy,
        warnings=warnings,
        sources=[source_of(r["id"]) for r in rows],
        escalate=np.array([r[ESCALATE] for r in rows], dtype=np.int8),
    )
    return data, [r.get("split", "train") for r in rows]
