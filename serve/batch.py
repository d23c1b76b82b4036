"""Tag JSONL/CSV/TSV files: streamed in chunks, one output row per input row, in order.

Output is written to a temporary file beside the target and renamed at the end, so an
interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from models import Prediction, TagClassifier

__all__ = ["BatchInputError", "TagFileOptions", "tag_file"]

CHUNK_ROWS = 2000
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}


class BatchInputError(ValueError):
    """The input or output file cannot be used; the message says why."""


@dataclass
class TagFileOptions:
    text_field: str = "text"  # JSONL field / CSV column holding the comment
    id_field: str = "id"  # JSONL field / CSV column copied to the output's id; row number when absent
    overwrite: bool = False  # replace an existing output file


def _format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BatchInputError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(FORMATS)}")
    return fmt


def _jsonl_rows(handle: IO[str], path: Path, options: TagFileOptions) -> Iterator[dict]:
    checked = False
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BatchInputError(f"{path}: line {number} is not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(row, dict):
            raise BatchInputError(f"{path}: line {number} is a JSON {type(row).__name__}, expected an object")
        if not checked:
            if options.text_field not in row:
                raise BatchInputError(f"{path}: field {options.text_field!r} not found; line 1 has fields {sorted(row)}")
            checked = True
        yield row


def _csv_reader(handle: IO[str], path: Path, fmt: str, options: TagFileOptions) -> csv.DictReader:
    reader = csv.DictReader(handle, delimiter="\t" if fmt == "tsv" else ",")
    if reader.fieldnames is None:
        raise BatchInputError(f"{path}: empty file, no header row")
    if options.text_field not in reader.fieldnames:
        raise BatchInputError(f"{path}: column {options.text_field!r} not found; columns are {reader.fieldnames}")
    return reader


def _chunks(rows: Iterator[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _text_of(row: dict, field: str):
    value = row.get(field)
    return value if value is None or isinstance(value, str) else str(value)


def prediction_columns(model: TagClassifier) -> list[str]:
    names = model.taxonomy_.names
    return [*names, *(f"{n}_score" for n in names), "sentiment", "sentiment_score", "evidence", "notes"]


def _flat(prediction: Prediction, model: TagClassifier) -> dict:
    row = {}
    for name in model.taxonomy_.names:
        row[name] = int(name in prediction.tags)
        row[f"{name}_score"] = round(prediction.scores[name], 4)
    row["sentiment"] = prediction.sentiment
    row["sentiment_score"] = round(prediction.sentiment_scores[prediction.sentiment], 4)
    row["evidence"] = json.dumps([e.to_dict() for e in prediction.evidence], ensure_ascii=False)
    row["notes"] = "; ".join(prediction.notes)
    return row


def _jsonl_line(prediction: Prediction, row_id) -> str:
    return json.dumps(prediction.to_dict(id=row_id), ensure_ascii=False) + "\n"


def tag_stream(model: TagClassifier, input_path: str | Path, out: IO[str], out_fmt: str, options: TagFileOptions = TagFileOptions()) -> int:
    """Tag every row of input_path, writing `out_fmt` rows to `out`; returns the rows written."""
    source = Path(input_path)
    in_fmt = _format_of(source)
    if not source.is_file():
        raise BatchInputError(f"{source}: no such file")
    written = 0
    try:
        with open(source, encoding="utf-8-sig", newline="") as handle:
            if in_fmt == "jsonl":
                rows: Iterator[dict] = _jsonl_rows(handle, source, options)
                input_columns: list[str] = []
            else:
                reader = _csv_reader(handle, source, in_fmt, options)
                rows = iter(reader)
                input_columns = list(reader.fieldnames or [])
            writer = None
            if out_fmt != "jsonl":
                added = prediction_columns(model)
                clash = [c for c in added if c in input_columns]
                if clash:
                    raise BatchInputError(f"{source}: input already has columns {clash} that tagging would overwrite")
                writer = csv.DictWriter(out, fieldnames=input_columns + added, delimiter="\t" if out_fmt == "tsv" else ",", extrasaction="ignore")
                writer.writeheader()
            for chunk in _chunks(rows, CHUNK_ROWS):
                predictions = model.predict([_text_of(row, options.text_field) for row in chunk])
                for offset, (row, prediction) in enumerate(zip(chunk, predictions, strict=True)):
                    if writer is None:
                        out.write(_jsonl_line(prediction, row.get(options.id_field, written + offset)))
                    else:
                        writer.writerow({**row, **_flat(prediction, model)})
                written += len(chunk)
    except UnicodeDecodeError as exc:
        raise BatchInputError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return written


def tag_file(model: TagClassifier, input_path: str | Path, output_path: str | Path, options: TagFileOptions = TagFileOptions()) -> int:
    """Tag every row of input_path into output_path; returns the number of rows written."""
    source, target = Path(input_path), Path(output_path)
    _format_of(source)
    out_fmt = _format_of(target)
    if target.exists() and not options.overwrite:
        raise BatchInputError(f"{target} exists; pass --overwrite to replace it")
    if target.resolve() == source.resolve():
        raise BatchInputError("output path is the input path; write to another file")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            written = tag_stream(model, source, out, out_fmt, options)
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return written


def write_jsonl(predictions: list[Prediction], ids: list, stream: IO[str] = sys.stdout) -> None:
    for row_id, prediction in zip(ids, predictions, strict=True):
        stream.write(_jsonl_line(prediction, row_id))
