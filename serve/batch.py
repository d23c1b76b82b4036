"""Tag survey exports at scale: CSV, TSV, JSONL, XLSX or Parquet in, any of them out.

The input is streamed in chunks of `chunk_rows` rows; each chunk is tagged (in this process
or by a pool of worker processes that each load the model once) and committed in input order
to a sidecar directory beside the output, `.<output name>.kesheng-partial/`:

    progress.json   what the run is (input SHA-256, settings, model version) and how far it got
    data            CSV/TSV/JSONL output written so far (only the committed bytes count)
    part-*.parquet  XLSX/Parquet output: one file per committed chunk, merged at the end

Rerunning an interrupted command verifies progress.json against the input and the settings and
continues after the last committed chunk. The final file appears under its name only when it
is complete (rename of a finished file), and the sidecar is removed.

Every input row gives one output row, in order. Rows whose text is empty, missing or
unreadable, and malformed rows, are kept: their `notes` say what was wrong.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from models import Prediction, TagClassifier, load_model
from serve.batch_formats import TEXT_FORMATS, BatchInputError, RowReader, cell_text, file_fingerprint, format_of, open_reader

__all__ = [
    "BatchInputError",
    "TagFileOptions",
    "TagFileResult",
    "partial_dir_for",
    "prediction_columns",
    "prediction_values",
    "tag_file",
    "tag_stream",
    "write_jsonl",
]

PROGRESS_FILE = "progress.json"
LOCK_FILE = "lock"
DATA_FILE = "data"
PROGRESS_VERSION = 1
XLSX_MAX_DATA_ROWS = 1_048_575  # Excel's sheet limit minus the header row
# Fields a JSONL output row gets from the prediction; input fields with these names are renamed.
PREDICTION_KEYS = ("id", "tags", "scores", "sentiment", "sentiment_scores", "evidence", "notes")
UNREADABLE = "unreadable text"
# Outputs are UTF-8; the BOM variant exists because Excel guesses a legacy code page without it.
OUTPUT_ENCODINGS = ("utf-8", "utf-8-sig")


@dataclass
class TagFileOptions:
    text_field: str = "text"  # column / JSON field holding the comment
    id_field: str = "id"  # copied to JSONL output's "id"; the row number (from 0) where a row has none
    keep_columns: tuple[str, ...] | None = None  # input columns copied to the output; None keeps all (text and id always kept)
    overwrite: bool = False  # replace an existing output file
    workers: int = 1  # processes running the model; 1 tags in this process, more need a model directory
    chunk_rows: int = 2000  # rows tagged and committed together: the unit of progress and of resume
    encoding: str | None = None  # text inputs; None tries UTF-8, UTF-8-SIG, UTF-16 (BOM) and GB18030
    sheet: str | None = None  # XLSX input sheet; None reads the first sheet
    strict: bool = False  # stop at the first malformed row instead of keeping it with a note
    restart: bool = False  # discard an interrupted run of this output instead of resuming it
    output_encoding: str = "utf-8"  # CSV/TSV/JSONL output; "utf-8-sig" makes Excel show Chinese CSV correctly
    progress: bool = False  # draw a progress bar (rows, rows/s, ETA) on stderr


@dataclass
class TagFileResult:
    rows: int  # rows in the output, equal to the rows of the input
    resumed_rows: int  # rows taken over from an interrupted run
    encoding: str | None  # how a text input was decoded, e.g. "GB18030"; None for XLSX/Parquet
    replaced_bytes: int  # undecodable input bytes shown as U+FFFD (their rows are marked)
    problems: dict[str, int] = field(default_factory=dict)  # rows per kind of note ("malformed row", "empty text", ...)
    problem_rows: dict[str, list[int]] = field(default_factory=dict)  # first few row numbers (from 0) per kind
    seconds: float = 0.0


def partial_dir_for(target: Path) -> Path:
    return target.parent / f".{target.name}.kesheng-partial"


# What a chunk turns into; the same functions serve local workers and the distributed engine.


def prediction_columns(tag_names: Sequence[str]) -> list[str]:
    names = tuple(tag_names)
    return [*names, *(f"{n}_score" for n in names), "sentiment", "sentiment_score", "evidence", "notes"]


def prediction_values(prediction: Prediction, tag_names: Sequence[str], extra_notes: Sequence[str] = ()) -> list:
    """The prediction as flat values in `prediction_columns` order (tabular outputs)."""
    return [
        *(int(name in prediction.tags) for name in tag_names),
        *(round(prediction.scores[name], 4) for name in tag_names),
        prediction.sentiment,
        round(prediction.sentiment_scores[prediction.sentiment], 4),
        json.dumps([e.to_dict() for e in prediction.evidence], ensure_ascii=False),
        "; ".join([*extra_notes, *prediction.notes]),
    ]


def text_for_model(value: Any) -> tuple[str | None, list[str]]:
    """What the model gets for a cell, and notes when the cell cannot be read as text."""
    if value is None or isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
    elif isinstance(value, (dict, list)):
        return None, [f"{UNREADABLE}: a JSON {'object' if isinstance(value, dict) else 'list'}, not a string"]
    else:
        text = cell_text(value) or None
    if text is not None and "\ufffd" in text:
        return text, [f"{UNREADABLE}: undecodable bytes shown as U+FFFD"]
    return text, []


@dataclass(frozen=True)
class OutputPlan:
    """Everything a worker needs to turn input rows into output rows; sent once per worker."""

    fmt: str  # output format
    text_field: str
    id_field: str
    carried: tuple[str, ...]  # input columns copied to tabular outputs, in order
    carry_all: bool  # JSONL output copies every field of each row; tabular outputs note fields beyond `carried`
    tag_names: tuple[str, ...]
    arrow_schema: Any = None  # Parquet input: the types its columns keep in Parquet/XLSX output

    @property
    def delimiter(self) -> str:
        return "\t" if self.fmt == "tsv" else ","

    def header(self) -> list[str]:
        return [*self.carried, *prediction_columns(self.tag_names)]


@dataclass
class Chunk:
    index: int  # chunk number from 0; chunk i holds rows [i * chunk_rows, (i + 1) * chunk_rows)
    first_row: int  # row number of the first row: ids of rows without an id column
    rows: list[dict]
    notes: list[list[str]]  # per row, what the reader found wrong


@dataclass
class ChunkResult:
    index: int
    rows: int
    payload: Any  # bytes (CSV/TSV/JSONL) or a pyarrow Table (Parquet/XLSX)
    problems: dict[str, list[int]]  # note kind -> row numbers in this chunk


def _note_kind(note: str) -> str:
    return note.split(":", 1)[0]


class ChunkTagger:
    """Turns chunks into output payloads with one model; one instance per worker process."""

    def __init__(self, model: TagClassifier, plan: OutputPlan):
        self.model = model
        self.plan = plan
        # Only JSONL rows can carry keys beyond the first row's; a set keeps the per-row check O(columns).
        self._check_extra = plan.carry_all and plan.fmt != "jsonl"
        self._carried = frozenset(plan.carried)

    def __call__(self, chunk: Chunk) -> ChunkResult:
        plan = self.plan
        texts, notes = [], []
        for row, row_notes in zip(chunk.rows, chunk.notes):
            text, text_notes = text_for_model(row.get(plan.text_field))
            extra = [k for k in row if k not in self._carried] if self._check_extra else []
            if extra:
                fields = json.dumps({k: row[k] for k in extra}, ensure_ascii=False, default=str)
                text_notes.append(f"extra fields: fields not in the first row, kept here: {fields}")
            texts.append(text)
            notes.append([*row_notes, *text_notes])
        predictions = self.model.predict(texts)
        problems: dict[str, list[int]] = {}
        for offset, (row_notes, prediction) in enumerate(zip(notes, predictions, strict=True)):
            for note in [*row_notes, *prediction.notes]:
                problems.setdefault(_note_kind(note), []).append(chunk.first_row + offset)
        if plan.fmt == "jsonl":
            payload = self._jsonl(chunk, predictions, notes)
        elif plan.fmt in TEXT_FORMATS:
            payload = self._delimited(chunk, predictions, notes)
        else:
            payload = self._table(chunk, predictions, notes)
        return ChunkResult(chunk.index, len(chunk.rows), payload, problems)

    def _jsonl(self, chunk: Chunk, predictions: list[Prediction], notes: list[list[str]]) -> bytes:
        plan = self.plan
        lines = []
        for offset, (row, prediction, row_notes) in enumerate(zip(chunk.rows, predictions, notes)):
            record = {"id": row.get(plan.id_field, chunk.first_row + offset)}
            for key in row if plan.carry_all else (c for c in plan.carried if c in row):
                if key == plan.id_field == "id":
                    continue
                record[f"input_{key}" if key in PREDICTION_KEYS else key] = row[key]
            predicted = prediction.to_dict()
            del predicted["id"]
            predicted["notes"] = [*row_notes, *predicted["notes"]]
            record.update(predicted)
            lines.append(json.dumps(record, ensure_ascii=False, default=str))
        return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""

    def _delimited(self, chunk: Chunk, predictions: list[Prediction], notes: list[list[str]]) -> bytes:
        plan = self.plan
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=plan.delimiter)
        for row, prediction, row_notes in zip(chunk.rows, predictions, notes):
            writer.writerow([*(cell_text(row.get(c)) for c in plan.carried), *prediction_values(prediction, plan.tag_names, row_notes)])
        return buffer.getvalue().encode("utf-8")

    def _table(self, chunk: Chunk, predictions: list[Prediction], notes: list[list[str]]):
        import pyarrow as pa

        plan = self.plan
        columns: dict[str, Any] = {}
        for name in plan.carried:
            columns[name] = _arrow_column([row.get(name) for row in chunk.rows], plan.arrow_schema, name)
        flat = [prediction_values(p, plan.tag_names, n) for p, n in zip(predictions, notes)]
        for position, name in enumerate(prediction_columns(plan.tag_names)):
            columns[name] = pa.array([values[position] for values in flat], type=_prediction_type(name, plan.tag_names))
        return pa.table(columns) if columns else pa.table({})


def _prediction_type(name: str, tag_names: Sequence[str]):
    import pyarrow as pa

    if name in tag_names:
        return pa.int8()
    if name.endswith("_score"):
        return pa.float64()
    return pa.string()


def _arrow_column(values: list, schema, name: str):
    import pyarrow as pa

    if schema is not None and name in schema.names:
        return pa.array(values, type=schema.field(name).type)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else cell_text(v) for v in values], type=pa.string())


# Worker processes: the model is loaded once per process by the initializer.

_worker_tagger: ChunkTagger | None = None


def _init_worker(model_dir: str | None, plan: OutputPlan) -> None:
    global _worker_tagger
    _worker_tagger = ChunkTagger(load_model(model_dir), plan)


def _tag_in_worker(chunk: Chunk) -> ChunkResult:
    assert _worker_tagger is not None, "worker used before its initializer ran"
    return _worker_tagger(chunk)


def _tagged_chunks(chunks: Iterator[Chunk], model: TagClassifier, model_dir: Path | None, plan: OutputPlan, workers: int) -> Iterator[ChunkResult]:
    """Chunk results in input order; at most 2 chunks per worker are in flight (bounded memory)."""
    if workers <= 1:
        tagger = ChunkTagger(model, plan)
        for chunk in chunks:
            yield tagger(chunk)
        return
    # spawn, not fork: the parent may hold Arrow thread pools and a progress thread.
    context = multiprocessing.get_context("spawn")
    model_arg = str(model_dir) if model_dir is not None else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(model_arg, plan)) as pool:
        pending: deque = deque()
        try:
            for chunk in chunks:
                pending.append(pool.submit(_tag_in_worker, chunk))
                del chunk
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _chunks(rows: Iterator[tuple[dict, list[str]]], size: int, first_index: int, first_row: int) -> Iterator[Chunk]:
    index, row_number = first_index, first_row
    batch: list[dict] = []
    notes: list[list[str]] = []
    for row, row_notes in rows:
        batch.append(row)
        notes.append(row_notes)
        if len(batch) == size:
            yield Chunk(index, row_number, batch, notes)
            index, row_number = index + 1, row_number + size
            batch, notes = [], []
    if batch:
        yield Chunk(index, row_number, batch, notes)


# The plan: which columns go out, checked before anything is written.


def _plan(reader: RowReader, tag_names: tuple[str, ...], out_fmt: str, options: TagFileOptions) -> OutputPlan:
    columns = reader.columns
    if options.keep_columns is None:
        carried = list(columns)
    else:
        unknown = [c for c in options.keep_columns if c not in columns]
        if unknown:
            raise BatchInputError(f"{reader.path}: columns to keep {unknown} not found; columns are {columns}")
        wanted = {*options.keep_columns, options.text_field, options.id_field}
        carried = [c for c in columns if c in wanted]
    if out_fmt != "jsonl":
        clash = [c for c in prediction_columns(tag_names) if c in carried]
        if clash:
            raise BatchInputError(f"{reader.path}: input already has columns {clash} that tagging would overwrite; choose the columns to carry with --keep")
    return OutputPlan(
        fmt=out_fmt,
        text_field=options.text_field,
        id_field=options.id_field,
        carried=tuple(carried),
        carry_all=options.keep_columns is None,
        tag_names=tag_names,
        arrow_schema=reader.arrow_schema,
    )


def _open(source: Path, options: TagFileOptions) -> RowReader:
    try:
        return open_reader(source, options.text_field, options.encoding, options.sheet, options.strict)
    except UnicodeDecodeError as exc:  # only with an explicit --encoding that does not fit
        raise BatchInputError(f"{source}: not {options.encoding} text ({exc.reason} at byte {exc.start})") from exc


def _resolve_model(model: TagClassifier | str | os.PathLike | None, workers: int) -> tuple[TagClassifier, Path | None]:
    if isinstance(model, TagClassifier):
        if workers > 1:
            raise ValueError("workers > 1 need a model directory (each worker process loads its own copy); pass the path")
        return model, None
    directory = Path(model) if model is not None else None
    return load_model(directory), directory


# Where committed output lives until the run is complete.


class _PartialRun:
    """The sidecar directory of one output: verified identity, committed chunks, problem counts."""

    def __init__(self, directory: Path, state: dict, lock):
        self.directory = directory
        self.state = state
        self.lock = lock

    @classmethod
    def begin(cls, target: Path, identity: dict, restart: bool, overwrite: bool) -> "_PartialRun":
        directory = partial_dir_for(target)
        directory.mkdir(parents=True, exist_ok=True)
        lock = _lock(directory, target)
        try:
            return cls._begin_locked(target, directory, identity, restart, overwrite, lock)
        except BaseException:
            lock.close()
            raise

    @classmethod
    def _begin_locked(cls, target: Path, directory: Path, identity: dict, restart: bool, overwrite: bool, lock) -> "_PartialRun":
        if target.exists() and not overwrite:
            # Another run finished this output between the caller's check and the lock.
            raise BatchInputError(f"{target} exists; pass --overwrite to replace it")
        if restart:
            for stale in directory.iterdir():
                if stale.name != LOCK_FILE:
                    stale.unlink()
        if (directory / PROGRESS_FILE).exists():
            try:
                state = json.loads((directory / PROGRESS_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise BatchInputError(f"{directory}: unreadable progress of an interrupted run ({exc}); pass --restart to discard it") from exc
            if state.get("identity") != identity:
                differs = _differences(state.get("identity") or {}, identity)
                raise BatchInputError(
                    f"{directory} holds an interrupted run with a different {', '.join(differs)}; "
                    "rerun with the same input and options to resume it, or pass --restart to discard it"
                )
            return cls(directory, state, lock)
        run = cls(directory, {"version": PROGRESS_VERSION, "identity": identity, "chunks_done": 0, "rows_done": 0, "data_bytes": 0, "problems": {}}, lock)
        run.save()
        return run

    def save(self) -> None:
        temporary = self.directory / f"{PROGRESS_FILE}.tmp"
        temporary.write_text(json.dumps(self.state, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, self.directory / PROGRESS_FILE)

    def commit(self, result: ChunkResult, data_bytes: int) -> None:
        state = self.state
        state["chunks_done"] = result.index + 1
        state["rows_done"] += result.rows
        state["data_bytes"] = data_bytes
        for kind, rows in result.problems.items():
            entry = state["problems"].setdefault(kind, {"count": 0, "rows": []})
            entry["count"] += len(rows)
            entry["rows"] = (entry["rows"] + rows)[:10]
        self.save()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.release()

    def release(self) -> None:
        self.lock.close()


def _lock(directory: Path, target: Path):
    """An exclusive lock on the sidecar: two runs appending to one output would interleave rows."""
    handle = open(directory / LOCK_FILE, "a+")
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one run per output is then up to the user
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise BatchInputError(f"another kesheng tag is writing {target} right now ({directory} is locked); wait for it to finish or stop it") from None
    return handle


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    found = []
    for key in keys:
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            found += _differences(old[key], new[key], f"{prefix}{key}.")
        elif old.get(key) != new.get(key):
            found.append(f"{prefix}{key} ({old.get(key)!r} then, {new.get(key)!r} now)")
    return found or ["format"]


class _BrokenPartial(BatchInputError):
    """The sidecar's files disagree with its progress record (deleted or edited by hand)."""


class _TextSink:
    """CSV/TSV/JSONL: one growing file; bytes past the last commit are cut off on resume."""

    def __init__(self, run: _PartialRun, header: bytes):
        self.path = run.directory / DATA_FILE
        committed = run.state["data_bytes"]
        if committed and (not self.path.exists() or self.path.stat().st_size < committed):
            raise _BrokenPartial(f"{run.directory}: the output written so far is shorter than its progress record; pass --restart")
        with open(self.path, "ab") as handle:
            handle.truncate(committed)
        self.handle = open(self.path, "ab")
        self.size = committed
        if committed == 0 and header:
            self.write(header)

    def write(self, payload: bytes) -> None:
        self.handle.write(payload)
        self.size += len(payload)

    def commit(self, index: int | None = None) -> int:
        """Make the written bytes durable; returns the committed size (`index` is the parts sink's)."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        return self.size

    def finish(self, target: Path, plan: OutputPlan) -> None:
        self.commit()
        self.handle.close()
        os.replace(self.path, target)

    def close(self) -> None:
        self.handle.close()


class _PartsSink:
    """Parquet/XLSX cannot be appended to after a crash: each chunk becomes a Parquet part."""

    def __init__(self, run: _PartialRun):
        self.directory = run.directory
        done = run.state["chunks_done"]
        for stale in self.directory.glob("part-*"):
            if stale.suffix != ".parquet" or int(stale.stem.split("-")[1]) >= done:
                stale.unlink()
        if len(self.parts()) != done:
            raise _BrokenPartial(f"{run.directory}: {len(self.parts())} output parts for {done} committed chunks; pass --restart")
        self.pending = None

    def write(self, payload) -> None:
        self.pending = payload

    def commit(self, index: int) -> int:
        import pyarrow.parquet as pq

        temporary = self.directory / f"part-{index:07d}.tmp"
        pq.write_table(self.pending, temporary)
        os.replace(temporary, self.directory / f"part-{index:07d}.parquet")
        self.pending = None
        return 0

    def parts(self) -> list[Path]:
        return sorted(self.directory.glob("part-*.parquet"))

    def finish(self, target: Path, plan: OutputPlan) -> None:
        if not self.parts():
            # An input with a header and no rows still gets typed columns.
            self.write(_empty_payload(plan))
            self.commit(0)
        temporary = self.directory / f"final{target.suffix}"
        if plan.fmt == "parquet":
            _merge_parquet(self.parts(), temporary, plan)
        else:
            _merge_xlsx(self.parts(), temporary, plan)
        os.replace(temporary, target)

    def close(self) -> None:
        pass


def _unified_schema(parts: list[Path], plan: OutputPlan):
    """One type per column over all parts; a column typed differently in two parts becomes text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in parts]
    fields = []
    for name in plan.header():
        seen = {s.field(name).type for s in schemas if name in s.names} - {pa.null()}
        if plan.arrow_schema is not None and name in plan.arrow_schema.names:
            chosen = plan.arrow_schema.field(name).type
        elif len(seen) == 1:
            chosen = seen.pop()
        elif name in plan.tag_names or name.endswith("_score"):
            chosen = _prediction_type(name, plan.tag_names)
        else:
            chosen = pa.string()
        fields.append(pa.field(name, chosen))
    return pa.schema(fields)


def _conform(table, schema):
    import pyarrow as pa

    columns = []
    for target_field in schema:
        column = table.column(target_field.name)
        if column.type == target_field.type:
            columns.append(column)
        elif column.type == pa.null():
            columns.append(pa.nulls(len(column), target_field.type))
        elif target_field.type == pa.string():
            columns.append(pa.array([None if v is None else cell_text(v) for v in column.to_pylist()], type=pa.string()))
        else:
            columns.append(column.cast(target_field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _merge_parquet(parts: list[Path], destination: Path, plan: OutputPlan) -> None:
    import pyarrow.parquet as pq

    schema = _unified_schema(parts, plan)
    with pq.ParquetWriter(destination, schema) as writer:
        for part in parts:
            writer.write_table(_conform(pq.read_table(part), schema))


def _xlsx_value(value, illegal_characters):
    if isinstance(value, str):
        return illegal_characters.sub("", value)
    if isinstance(value, (dict, list, bytes)):
        return cell_text(value)
    if getattr(value, "tzinfo", None) is not None:
        return value.replace(tzinfo=None)  # Excel has no time zones
    return value


def _merge_xlsx(parts: list[Path], destination: Path, plan: OutputPlan) -> None:
    import pyarrow.parquet as pq
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    book = Workbook(write_only=True)
    sheet = book.create_sheet("tagged")
    header = plan.header()
    sheet.append(header)
    for part in parts:
        table = pq.read_table(part)
        for batch in table.to_batches(max_chunksize=2000):
            for row in batch.to_pylist():
                sheet.append([_xlsx_value(row.get(name), ILLEGAL_CHARACTERS_RE) for name in header])
    book.save(destination)


def _empty_payload(plan: OutputPlan):
    """A zero-row Parquet part, so that an input with a header and no rows still gets typed columns."""
    import pyarrow as pa

    return pa.table({name: pa.array([], type=_column_type_for_empty(plan, name)) for name in plan.header()})


def _column_type_for_empty(plan: OutputPlan, name: str):
    import pyarrow as pa

    if plan.arrow_schema is not None and name in plan.arrow_schema.names:
        return plan.arrow_schema.field(name).type
    if name in plan.carried:
        return pa.string()
    return _prediction_type(name, plan.tag_names)


class _ProgressBar:
    """rows, rows/s and ETA on stderr; the ETA comes from the share of the file consumed."""

    def __init__(self, enabled: bool, label: str, total: int | None, rows_before: int):
        self.enabled = enabled
        self.rows_before = rows_before
        self.started = time.perf_counter()
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]:>12,} rows  {task.fields[rate]:>8,.0f} rows/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.progress.add_task(label, total=total, rows=rows_before, rate=0.0)
        self.progress.start()

    def update(self, rows_done: int, units_done: int) -> None:
        if self.enabled:
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            self.progress.update(self.task, completed=units_done, rows=rows_done, rate=(rows_done - self.rows_before) / elapsed)

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()


def _skip(rows: Iterator, count: int) -> Iterator:
    for _ in range(count):
        if next(rows, None) is None:
            raise BatchInputError(f"the input has fewer rows than the {count} already tagged; pass --restart")
    return rows


def tag_file(
    model: TagClassifier | str | os.PathLike | None,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    options: TagFileOptions = TagFileOptions(),
) -> TagFileResult:
    """Tag every row of input_path into output_path (formats from the file names).

    `model` is a loaded model (one process only) or a model directory (None: the default model).
    An interrupted run is resumed by calling again with the same arguments. Worker processes are
    spawned, so a script that asks for workers > 1 must call this under `if __name__ == "__main__":`.
    """
    started = time.perf_counter()
    source, target = Path(input_path), Path(output_path)
    format_of(source)
    out_fmt = format_of(target)
    if target.exists() and not options.overwrite:
        raise BatchInputError(f"{target} exists; pass --overwrite to replace it")
    if source.exists() and target.exists() and target.resolve() == source.resolve():
        raise BatchInputError("output path is the input path; write to another file")
    if options.chunk_rows < 1 or options.workers < 1:
        raise BatchInputError("chunk rows and workers must be at least 1")
    if options.output_encoding.lower().replace("_", "-") not in OUTPUT_ENCODINGS:
        raise BatchInputError(f"output encoding {options.output_encoding!r}: use one of {list(OUTPUT_ENCODINGS)}")
    loaded, model_dir = _resolve_model(model, options.workers)
    tag_names = tuple(loaded.taxonomy_.names)
    reader = _open(source, options)
    sink = None
    run = None
    try:
        plan = _plan(reader, tag_names, out_fmt, options)
        settings = {k: v for k, v in asdict(options).items() if k not in ("overwrite", "workers", "restart", "progress", "encoding")}
        settings["keep_columns"] = list(options.keep_columns) if options.keep_columns is not None else None
        identity = {
            "input": file_fingerprint(source),
            "encoding": reader.decoding.encoding if reader.decoding else None,
            "settings": settings,
            "output_format": out_fmt,
            "model": {"version": loaded.meta_.get("model_version"), "tags": list(tag_names)},
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        run = _PartialRun.begin(target, identity, options.restart, options.overwrite)
        resumed_rows = run.state["rows_done"]
        if out_fmt in TEXT_FORMATS:
            header = ""
            if out_fmt != "jsonl":
                buffer = io.StringIO()
                csv.writer(buffer, delimiter=plan.delimiter).writerow(plan.header())
                header = buffer.getvalue()
            bom = "\ufeff" if options.output_encoding.lower().replace("_", "-") == "utf-8-sig" and out_fmt != "jsonl" else ""
            sink = _TextSink(run, (bom + header).encode("utf-8"))
        else:
            sink = _PartsSink(run)
        rows = _skip(reader.rows(), resumed_rows)
        chunks = _chunks(rows, options.chunk_rows, run.state["chunks_done"], resumed_rows)
        bar = _ProgressBar(options.progress, f"tagging {source.name}", reader.progress_total, resumed_rows)
        try:
            for result in _tagged_chunks(chunks, loaded, model_dir, plan, options.workers):
                if out_fmt == "xlsx" and run.state["rows_done"] + result.rows > XLSX_MAX_DATA_ROWS:
                    raise BatchInputError(f"{source} has more than {XLSX_MAX_DATA_ROWS:,} rows, the most an XLSX sheet holds; write CSV or Parquet")
                sink.write(result.payload)
                committed = sink.commit(result.index)
                run.commit(result, committed)
                bar.update(run.state["rows_done"], reader.progress_done())
        finally:
            bar.close()
        sink.finish(target, plan)
        sink = None
        run.remove()
    except BatchInputError as exc:
        # A problem of the input itself: a rerun would stop at the same row, so keep nothing.
        if sink is not None:
            sink.close()
            sink = None
        if run is not None and not isinstance(exc, _BrokenPartial):
            run.remove()
        raise
    finally:
        if sink is not None:
            sink.close()
        reader.close()
        if run is not None:
            run.release()
    problems = run.state["problems"]
    return TagFileResult(
        rows=run.state["rows_done"],
        resumed_rows=resumed_rows,
        encoding=reader.decoding.label if reader.decoding else None,
        replaced_bytes=reader.decoding.replaced_bytes if reader.decoding else 0,
        problems={kind: entry["count"] for kind, entry in problems.items()},
        problem_rows={kind: entry["rows"] for kind, entry in problems.items()},
        seconds=time.perf_counter() - started,
    )


def tag_stream(
    model: TagClassifier | str | os.PathLike | None,
    input_path: str | os.PathLike,
    out: IO[str],
    out_fmt: str = "jsonl",
    options: TagFileOptions = TagFileOptions(),
) -> int:
    """Tag every row of input_path, writing CSV/TSV/JSONL rows to a text stream; returns the row count."""
    if out_fmt not in TEXT_FORMATS:
        raise BatchInputError(f"a stream takes one of {list(TEXT_FORMATS)}, not {out_fmt!r}")
    loaded, model_dir = _resolve_model(model, options.workers)
    reader = _open(Path(input_path), options)
    written = 0
    try:
        plan = _plan(reader, tuple(loaded.taxonomy_.names), out_fmt, options)
        if out_fmt != "jsonl":
            csv.writer(out, delimiter=plan.delimiter).writerow(plan.header())
        for result in _tagged_chunks(_chunks(reader.rows(), options.chunk_rows, 0, 0), loaded, model_dir, plan, options.workers):
            out.write(result.payload.decode("utf-8"))
            written += result.rows
    finally:
        reader.close()
    return written


def write_jsonl(predictions: list[Prediction], ids: list, stream: IO[str] | None = None) -> None:
    # sys.stdout is looked up per call: a default bound at import would miss a redirected stdout.
    stream = stream if stream is not None else sys.stdout
    for row_id, prediction in zip(ids, predictions, strict=True):
        stream.write(json.dumps(prediction.to_dict(id=row_id), ensure_ascii=False) + "\n")
