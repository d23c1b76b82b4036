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
import ctypes
import ctypes.util
import io
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Iterator

from kesheng.files.readers import TEXT_FORMATS, InputFileError, RowReader, cell_text, choose_text_column, file_fingerprint, format_of, open_reader, sample_rows
from kesheng.models import Prediction, TagClassifier
from kesheng.models.rows import PREDICTION_KEYS, flat_values, jsonl_fields, note_kind, prediction_columns
from kesheng.serve.batch.journal import BrokenPartial, PartialRun
from kesheng.serve.batch.writers import OutputPlan, PartsSink, TextSink, arrow_column, prediction_type
from kesheng.stores.registry import load_model

__all__ = [
    "InputFileError",
    "TagFileOptions",
    "TagFileResult",
    "tag_file",
    "tag_stream",
    "write_jsonl",
]

XLSX_MAX_DATA_ROWS = 1_048_575  # Excel's sheet limit minus the header row
UNREADABLE = "unreadable text"
# Outputs are UTF-8; the BOM variant exists because Excel guesses a legacy code page without it.
OUTPUT_ENCODINGS = ("utf-8", "utf-8-sig")


@dataclass
class TagFileOptions:
    text_field: str | None = None  # column / JSON field holding the comment; None: "text", else the column of longest strings (said in the result)
    id_field: str = "id"  # copied to JSONL output's "id"; where a row has none, the row the user sees (spreadsheet row, JSONL line)
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
    problem_rows: dict[str, list[int]] = field(default_factory=dict)  # first few rows per kind, as the user sees them (spreadsheet row, header = 1; JSONL line)
    seconds: float = 0.0
    text_field: str | None = None  # the column the comments were read from
    text_field_guessed: bool = False  # True when no column was named and none is called "text"


# What a chunk turns into; the same functions serve local workers and the distributed engine.


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


@dataclass
class Chunk:
    index: int  # chunk number from 0; chunk i holds rows [i * chunk_rows, (i + 1) * chunk_rows)
    rows: list[dict]
    notes: list[list[str]]  # per row, what the reader found wrong
    numbers: list[int]  # per row, the row the user sees (spreadsheet row, header = 1; JSONL line)


@dataclass
class ChunkResult:
    index: int
    rows: int
    payload: Any  # bytes (CSV/TSV/JSONL) or a pyarrow Table (Parquet/XLSX)
    problems: dict[str, list[int]]  # note kind -> row numbers in this chunk


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
                problems.setdefault(note_kind(note), []).append(chunk.numbers[offset])
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
            record = {"id": row.get(plan.id_field, chunk.numbers[offset])}
            for key in row if plan.carry_all else (c for c in plan.carried if c in row):
                if key == plan.id_field == "id":
                    continue
                record[f"input_{key}" if key in PREDICTION_KEYS else key] = row[key]
            record.update(jsonl_fields(prediction, row_notes, plan.model_version))
            lines.append(json.dumps(record, ensure_ascii=False, default=str))
        return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""

    def _delimited(self, chunk: Chunk, predictions: list[Prediction], notes: list[list[str]]) -> bytes:
        plan = self.plan
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=plan.delimiter)
        for row, prediction, row_notes in zip(chunk.rows, predictions, notes):
            writer.writerow([*(cell_text(row.get(c)) for c in plan.carried), *flat_values(prediction, plan.tag_names, row_notes, plan.model_version)])
        return buffer.getvalue().encode("utf-8")

    def _table(self, chunk: Chunk, predictions: list[Prediction], notes: list[list[str]]):
        import pyarrow as pa

        plan = self.plan
        columns: dict[str, Any] = {}
        for name in plan.carried:
            columns[name] = arrow_column([row.get(name) for row in chunk.rows], plan.arrow_schema, name)
        flat = [flat_values(p, plan.tag_names, n, plan.model_version) for p, n in zip(predictions, notes)]
        for position, name in enumerate(prediction_columns(plan.tag_names)):
            columns[name] = pa.array([values[position] for values in flat], type=prediction_type(name, plan.tag_names))
        return pa.table(columns) if columns else pa.table({})


# Worker processes: the model is loaded once per process by the initializer.

_worker_tagger: ChunkTagger | None = None


def _init_worker(model_dir: str | None, plan: OutputPlan, parent_pid: int) -> None:
    global _worker_tagger
    _die_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group, and a service manager's stop often every process of
    # the run: the parent stops the workers between chunks (see _stop_workers), so they ignore both.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _worker_tagger = ChunkTagger(load_model(model_dir), plan)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_CHECK_SECONDS = 1.0


def _die_with_parent(parent_pid: int) -> None:
    """A worker whose parent died (kill -9, OOM) exits at once instead of blocking on a pipe forever."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still covers it
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        # Elsewhere than Linux (or if prctl failed): an orphan is re-parented, so its ppid changes.
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="kesheng-parent-watch", daemon=True).start()


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
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(model_arg, plan, os.getpid()))
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
        # Interrupted (a signal, an error, the consumer gone): the chunks not yet given to a
        # worker are dropped rather than tagged for nothing.
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    # Chunks not started are dropped; each worker finishes the chunk it holds and exits. Killing
    # them mid-chunk instead could cut a result mid-write to the pipe, and the executor's thread
    # would then wait for the rest of it forever (so would the interpreter's exit). A second
    # signal does not wait: the parent dies at once and the workers with it (PR_SET_PDEATHSIG).
    pool.shutdown(wait=True, cancel_futures=True)


def _chunks(rows: Iterator[tuple[dict, list[str], int]], size: int, first_index: int) -> Iterator[Chunk]:
    index = first_index
    batch: list[dict] = []
    notes: list[list[str]] = []
    numbers: list[int] = []
    for row, row_notes, number in rows:
        batch.append(row)
        notes.append(row_notes)
        numbers.append(number)
        if len(batch) == size:
            yield Chunk(index, batch, notes, numbers)
            index += 1
            batch, notes, numbers = [], [], []
    if batch:
        yield Chunk(index, batch, notes, numbers)


# The plan: which columns go out, checked before anything is written.


def _plan(reader: RowReader, model: TagClassifier, out_fmt: str, options: TagFileOptions) -> OutputPlan:
    tag_names = tuple(model.taxonomy_.names)
    columns = reader.columns
    if options.keep_columns is None:
        carried = list(columns)
    else:
        unknown = [c for c in options.keep_columns if c not in columns]
        if unknown:
            raise InputFileError(f"{reader.path}: columns to keep {unknown} not found; columns are {columns}")
        wanted = {*options.keep_columns, options.text_field, options.id_field}
        carried = [c for c in columns if c in wanted]
    if out_fmt != "jsonl":
        clash = [c for c in prediction_columns(tag_names) if c in carried]
        if clash:
            raise InputFileError(f"{reader.path}: input already has columns {clash} that tagging would overwrite; choose the columns to carry with --keep")
    return OutputPlan(
        fmt=out_fmt,
        text_field=options.text_field,
        id_field=options.id_field,
        carried=tuple(carried),
        carry_all=options.keep_columns is None,
        tag_names=tag_names,
        model_version=model.meta_.get("model_version"),
        tag_names_zh=tuple((t.name, t.zh) for t in model.taxonomy_.tags),
        arrow_schema=reader.arrow_schema,
    )


def _with_text_field(source: Path, options: TagFileOptions) -> tuple[TagFileOptions, bool]:
    """Options naming the comments column, found the way every command finds it."""
    if options.text_field is not None:
        return options, False
    columns, rows = sample_rows(source, options.encoding, options.sheet)
    chosen, guessed = choose_text_column(columns, rows, exclude=(options.id_field,))
    return replace(options, text_field=chosen), guessed


def _open(source: Path, options: TagFileOptions) -> RowReader:
    try:
        return open_reader(source, options.text_field, options.encoding, options.sheet, options.strict)
    except UnicodeDecodeError as exc:  # only with an explicit --encoding that does not fit
        raise InputFileError(f"{source}: not {options.encoding} text ({exc.reason} at byte {exc.start})") from exc


def _resolve_model(model: TagClassifier | str | os.PathLike | None, workers: int) -> tuple[TagClassifier, Path | None]:
    if isinstance(model, TagClassifier):
        if workers > 1:
            raise ValueError("workers > 1 need a model directory (each worker process loads its own copy); pass the path")
        return model, None
    directory = Path(model) if model is not None else None
    return load_model(directory), directory


class _ProgressBar:
    """rows, rows/s and ETA on stderr; the ETA comes from the share of the file consumed.

    Sized to fit 80 columns whole (a cut-off "0:00:... ETA -:--:..." says nothing).
    """

    def __init__(self, enabled: bool, label: str, total: int | None, rows_before: int, console=None):
        self.enabled = enabled
        self.rows_before = rows_before
        self.started = time.perf_counter()
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=12),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]:>10,} rows {task.fields[rate]:>6,.0f} rows/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(compact=True),
            console=console if console is not None else Console(stderr=True),
            transient=False,
        )
        short = label if len(label) <= 18 else label[:17] + "…"
        self.task = self.progress.add_task(short, total=total, rows=rows_before, rate=0.0)
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
            raise InputFileError(f"the input has fewer rows than the {count} already tagged; pass --restart")
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
        raise InputFileError(f"{target} exists; pass --overwrite to replace it")
    if source.exists() and target.exists() and target.resolve() == source.resolve():
        raise InputFileError("output path is the input path; write to another file")
    if options.chunk_rows < 1 or options.workers < 1:
        raise InputFileError("chunk rows and workers must be at least 1")
    if options.output_encoding.lower().replace("_", "-") not in OUTPUT_ENCODINGS:
        raise InputFileError(f"output encoding {options.output_encoding!r}: use one of {list(OUTPUT_ENCODINGS)}")
    options, guessed = _with_text_field(source, options)
    loaded, model_dir = _resolve_model(model, options.workers)
    tag_names = tuple(loaded.taxonomy_.names)
    reader = _open(source, options)
    sink = None
    run = None
    try:
        plan = _plan(reader, loaded, out_fmt, options)
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
        run = PartialRun.begin(target, identity, options.restart, options.overwrite)
        resumed_rows = run.state["rows_done"]
        if out_fmt in TEXT_FORMATS:
            header = ""
            if out_fmt != "jsonl":
                buffer = io.StringIO()
                csv.writer(buffer, delimiter=plan.delimiter).writerow(plan.header())
                header = buffer.getvalue()
            bom = "\ufeff" if options.output_encoding.lower().replace("_", "-") == "utf-8-sig" and out_fmt != "jsonl" else ""
            sink = TextSink(run, (bom + header).encode("utf-8"))
        else:
            sink = PartsSink(run)
        rows = _skip(reader.rows(), resumed_rows)
        chunks = _chunks(rows, options.chunk_rows, run.state["chunks_done"])
        bar = _ProgressBar(options.progress, f"tagging {source.name}", reader.progress_total, resumed_rows)
        try:
            # closing(): an error or a signal while a chunk is written stops the workers now,
            # not whenever the suspended generator is collected.
            with closing(_tagged_chunks(chunks, loaded, model_dir, plan, options.workers)) as tagged:
                for result in tagged:
                    if out_fmt == "xlsx" and run.state["rows_done"] + result.rows > XLSX_MAX_DATA_ROWS:
                        raise InputFileError(f"{source} has more than {XLSX_MAX_DATA_ROWS:,} rows, the most an XLSX sheet holds; write CSV or Parquet")
                    sink.write(result.payload)
                    committed = sink.commit(result.index)
                    run.commit(result, committed)
                    bar.update(run.state["rows_done"], reader.progress_done())
        finally:
            bar.close()
        sink.finish(target, plan)
        sink = None
        run.remove()
    except InputFileError as exc:
        # A problem of the input itself: a rerun would stop at the same row, so keep nothing.
        if sink is not None:
            sink.close()
            sink = None
        if run is not None and not isinstance(exc, BrokenPartial):
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
        text_field=options.text_field,
        text_field_guessed=guessed,
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
        raise InputFileError(f"a stream takes one of {list(TEXT_FORMATS)}, not {out_fmt!r}")
    options, _ = _with_text_field(Path(input_path), options)
    loaded, model_dir = _resolve_model(model, options.workers)
    reader = _open(Path(input_path), options)
    written = 0
    try:
        plan = _plan(reader, loaded, out_fmt, options)
        if out_fmt != "jsonl":
            csv.writer(out, delimiter=plan.delimiter).writerow(plan.header())
        with closing(_tagged_chunks(_chunks(reader.rows(), options.chunk_rows, 0), loaded, model_dir, plan, options.workers)) as tagged:
            for result in tagged:
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
