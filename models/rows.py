"""The tagged-row schema: how a `Prediction` travels in files, and how it is read back.

One module for every writer and reader of tagged data (the local batch engine, the Ray engine,
the API and the report), so they cannot drift apart:

- **Flat rows** (CSV, TSV, XLSX, Parquet): after the carried input columns, per tag a 0/1
  column and a `<tag>_score` probability, then `sentiment`, `sentiment_score`, `escalate` (0/1)
  and `escalate_score`, `evidence` (a JSON list of spans), `notes` and `model_version`.
  An empty text has no sentiment and no escalate (empty cells), and neither has escalate a model
  trained before the escalate head existed: empty means unknown, never "no". Notes are joined with a line break;
  a line break inside a note is written as the two characters `\\n`, so a note can never
  contain the separator and `split_notes` gives back exactly the notes written.
- **JSONL records**: the carried input fields, then `id`, `tags`, `scores`, `sentiment`,
  `sentiment_scores`, `evidence` (a list of objects), `notes` (a list), `escalate` (true, false
  or null), `escalate_score` and `model_version`.

The model version on every row lets the report say which model tagged a file, and warn when
one file mixes versions.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from kesheng.models.prediction import Prediction
from kesheng.models.schema import ESCALATE

__all__ = [
    "MODEL_VERSION_COLUMN",
    "NOTE_SEPARATOR",
    "PREDICTION_KEYS",
    "column_kind",
    "evidence_spans",
    "file_metadata",
    "flat_from_record",
    "names_from_metadata",
    "flat_values",
    "join_notes",
    "jsonl_fields",
    "note_kind",
    "prediction_columns",
    "split_notes",
    "tag_columns",
]

MODEL_VERSION_COLUMN = "model_version"
# Keys a JSONL record gets from tagging; input fields with these names are renamed `input_<key>`.
PREDICTION_KEYS = ("id", "tags", "scores", "sentiment", "sentiment_scores", "evidence", "notes", ESCALATE, "escalate_score", MODEL_VERSION_COLUMN)
NOTE_SEPARATOR = "\n"
# File metadata keys (Parquet schema metadata, XLSX custom document properties).
TAXONOMY_KEY = "kesheng.tag_names_zh"
MODEL_VERSION_KEY = "kesheng.model_version"


def _escape_note(note: str) -> str:
    return note.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def _unescape_note(note: str) -> str:
    out, i = [], 0
    while i < len(note):
        if note[i] == "\\" and i + 1 < len(note):
            out.append({"n": "\n", "r": "\r", "\\": "\\"}.get(note[i + 1], note[i : i + 2]))
            i += 2
        else:
            out.append(note[i])
            i += 1
    return "".join(out)


def join_notes(notes: Sequence[str]) -> str:
    """Notes as one table cell (empty when there are none)."""
    return NOTE_SEPARATOR.join(_escape_note(n) for n in notes)


def split_notes(cell: Any) -> list[str]:
    """The notes of a table cell or a JSONL `notes` value, as written."""
    if isinstance(cell, list):
        return [str(n) for n in cell]
    if not isinstance(cell, str) or not cell:
        return []
    return [_unescape_note(n) for n in cell.split(NOTE_SEPARATOR)]


def note_kind(note: str) -> str:
    """What a note is about ("malformed row", "empty text", ...): the part before its first colon."""
    return note.split(":", 1)[0].strip()


def file_metadata(tag_names_zh: Mapping[str, str], model_version: str | None) -> dict[str, str]:
    """What a file format with metadata (Parquet, XLSX) carries besides the rows: the model version
    and the Chinese name of every tag, so a report names the tags as the tagging model did."""
    return {TAXONOMY_KEY: json.dumps(dict(tag_names_zh), ensure_ascii=False), MODEL_VERSION_KEY: model_version or ""}


def names_from_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """tag -> Chinese name from `file_metadata`; empty when the file carries none."""
    try:
        names = json.loads((metadata or {}).get(TAXONOMY_KEY) or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}


def prediction_columns(tag_names: Sequence[str]) -> list[str]:
    """The columns tagging adds to a flat row, in order."""
    names = tuple(tag_names)
    return [*names, *(f"{n}_score" for n in names), "sentiment", "sentiment_score", ESCALATE, "escalate_score", "evidence", "notes", MODEL_VERSION_COLUMN]


def tag_columns(columns: Sequence[str]) -> list[str]:
    """The tags of a tagged table: every column `X` that has a companion `X_score`."""
    present = set(columns)
    return [c for c in columns if f"{c}_score" in present and c not in ("sentiment", ESCALATE)]


def column_kind(name: str, tag_names: Sequence[str]) -> str:
    """The type of a prediction column: "int8" (tag and escalate flags), "float64" (scores) or "string"."""
    if name in tag_names or name == ESCALATE:
        return "int8"
    if name.endswith("_score"):
        return "float64"
    return "string"


def flat_values(prediction: Prediction, tag_names: Sequence[str], extra_notes: Sequence[str] = (), model_version: str | None = None) -> list:
    """The prediction as flat values in `prediction_columns` order."""
    return [
        *(int(name in prediction.tags) for name in tag_names),
        *(round(prediction.scores[name], 4) for name in tag_names),
        prediction.sentiment,
        round(prediction.sentiment_scores[prediction.sentiment], 4) if prediction.sentiment is not None else None,
        None if prediction.escalate is None else int(prediction.escalate),
        None if prediction.escalate_score is None else round(prediction.escalate_score, 4),
        json.dumps([e.to_dict() for e in prediction.evidence], ensure_ascii=False),
        join_notes([*extra_notes, *prediction.notes]),
        model_version,
    ]


def jsonl_fields(prediction: Prediction, extra_notes: Sequence[str] = (), model_version: str | None = None) -> dict:
    """The keys a JSONL record gets from a prediction (all of PREDICTION_KEYS but `id`)."""
    fields = prediction.to_dict()
    del fields["id"]
    fields["notes"] = [*extra_notes, *fields["notes"]]
    fields[MODEL_VERSION_COLUMN] = model_version
    return {key: fields[key] for key in PREDICTION_KEYS[1:]}


def flat_from_record(record: Mapping[str, Any], tag_names: Sequence[str]) -> dict:
    """A JSONL record as the flat row a table would hold (input fields first, as written)."""
    flat = {k: v for k, v in record.items() if k not in PREDICTION_KEYS or k == "id"}
    # A reader may fill a missing value with NaN: only the types tagging writes count.
    tags = set(record["tags"]) if isinstance(record.get("tags"), list) else set()
    scores = record["scores"] if isinstance(record.get("scores"), dict) else {}
    evidence = record["evidence"] if isinstance(record.get("evidence"), list) else []
    sentiment_scores = record["sentiment_scores"] if isinstance(record.get("sentiment_scores"), dict) else {}
    for name in tag_names:
        flat[name] = int(name in tags)
    for name in tag_names:
        flat[f"{name}_score"] = scores.get(name, 0.0)
    sentiment = record.get("sentiment")
    flat["sentiment"] = sentiment
    flat["sentiment_score"] = sentiment_scores.get(sentiment)
    escalate = record.get(ESCALATE)
    flat[ESCALATE] = int(escalate) if isinstance(escalate, bool) else None
    score = record.get("escalate_score")
    flat["escalate_score"] = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) and escalate is not None else None
    flat["evidence"] = json.dumps(evidence, ensure_ascii=False)
    flat["notes"] = join_notes(split_notes(record.get("notes")))
    flat[MODEL_VERSION_COLUMN] = record.get(MODEL_VERSION_COLUMN)
    return flat


def evidence_spans(value: Any) -> list[dict]:
    """The evidence of a flat row's JSON cell or a JSONL record's list; unreadable spans are skipped."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value else []
        except ValueError:
            return []
    return [s for s in value if isinstance(s, dict)] if isinstance(value, list) else []
