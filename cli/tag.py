"""`kesheng tag`: comments on the command line, or every row of a file (local or Ray)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from kesheng.cli.options import MODEL_OPTION, fail, load, split_commas
from kesheng.cli.options import count as plural


def tag(
    texts: list[str] = typer.Argument(None, help="Comments to tag; one JSON line is printed per comment."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="File to tag: CSV, TSV, JSONL, XLSX or Parquet."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Where to write (CSV/TSV/JSONL/XLSX/Parquet, by extension; a directory with --engine ray); stdout as JSONL when omitted."
    ),
    text_column: Optional[str] = typer.Option(None, "--text-column", "--text-field", help="Field/column holding the comment (default: \"text\", else the column of longest text, said on stderr)."),
    id_column: str = typer.Option("id", "--id-column", "--id-field", help="Field/column copied to the output id."),
    keep: list[str] = typer.Option(None, "--keep", "-k", help="Input columns to carry over (repeat or comma-separate; default: all)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Processes running the model (each loads it once)."),
    chunk_rows: int = typer.Option(2000, "--chunk-rows", min=1, help="Rows per chunk: the unit of work, memory and resume."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Input text encoding (default: detect UTF-8, UTF-8-SIG, UTF-16 BOM, GB18030)."),
    sheet: Optional[str] = typer.Option(None, "--sheet", help="XLSX sheet to read (default: the first)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first malformed row instead of keeping it with a note."),
    restart: bool = typer.Option(False, "--restart", help="Discard an interrupted run of this output instead of resuming it."),
    excel_bom: bool = typer.Option(False, "--excel-bom", help="Start CSV/TSV output with a UTF-8 BOM so that Excel shows Chinese correctly."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal)."),
    engine: str = typer.Option("local", "--engine", help="local, or ray (Ray Data: a cluster, or this machine; pip install kesheng[distributed])."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --engine ray: cluster address (default: $RAY_ADDRESS or a local Ray)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    model_dir: Optional[Path] = MODEL_OPTION,
):
    """Tag comments given as arguments, or every row of a file (resumable: rerun to continue)."""
    from kesheng.serve.batch.tagging import InputFileError, TagFileOptions, tag_file, tag_stream, write_jsonl

    if bool(texts) == bool(input):
        fail("give comments as arguments or --input FILE (exactly one of them)")
    if texts:
        model = load(model_dir)
        with _stops_cleanly(None), _stdout_errors():
            write_jsonl(model.predict(list(texts)), list(range(len(texts))), _Stdout())
            _Stdout().flush()
        return
    keep_columns = split_commas(keep)
    options = TagFileOptions(
        text_field=text_column,
        id_field=id_column,
        keep_columns=keep_columns,
        overwrite=overwrite,
        workers=workers,
        chunk_rows=chunk_rows,
        encoding=encoding,
        sheet=sheet,
        strict=strict,
        restart=restart,
        output_encoding="utf-8-sig" if excel_bom else "utf-8",
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    if engine == "ray":
        _tag_with_ray(input, output, options, model_dir, ray_address)
        return
    if engine != "local":
        fail(f"unknown engine {engine!r}: use local or ray")
    from concurrent.futures.process import BrokenProcessPool

    from kesheng.models import ModelLoadError

    with _stops_cleanly(output):
        try:
            if output is None:
                with _stdout_errors():
                    tag_stream(model_dir, input, _Stdout(), "jsonl", options)
                    _Stdout().flush()
                return
            result = tag_file(model_dir, input, output, options)
        except (InputFileError, ModelLoadError) as exc:
            fail(str(exc))
        except (BrokenProcessPool, OSError) as exc:
            typer.echo(f"error: stopped: {type(exc).__name__}: {exc}; {_kept(output)}", err=True)
            raise typer.Exit(code=1) from None
    if result.text_field_guessed:
        typer.echo(f"comments read from column {result.text_field!r} (choose another with --text-column)", err=True)
    if result.encoding:
        typer.echo(f"read {input} as {result.encoding}" + (f" ({result.replaced_bytes} undecodable bytes replaced)" if result.replaced_bytes else ""), err=True)
    if result.resumed_rows:
        typer.echo(f"resumed an interrupted run: {result.resumed_rows:,} rows were already tagged", err=True)
    for kind, count in sorted(result.problems.items()):
        rows = ", ".join(map(str, result.problem_rows.get(kind, [])[:5]))
        typer.echo(f"{plural(count, 'row')} with {kind!r} kept and marked in notes ({'row' if count == 1 else 'rows'} {rows}{', ...' if count > 5 else ''})", err=True)
    rate = (result.rows - result.resumed_rows) / result.seconds if result.seconds else 0.0
    typer.echo(f"tagged {plural(result.rows, 'row')} -> {output} ({result.seconds:.1f}s, {rate:,.0f} rows/s)", err=True)


class _Stopped(BaseException):
    """SIGTERM or SIGINT: a BaseException, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame) -> None:
    # A second signal while stopping takes the default action: it ends the process at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    raise _Stopped(signum)


@contextlib.contextmanager
def _stops_cleanly(output: Optional[Path]):
    """SIGTERM/SIGINT: workers stopped, committed rows kept, one line, exit 128 + signal (130, 143)."""
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except (_Stopped, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, _Stopped) else signal.SIGINT
        kept = _kept(output) if output is not None else "the lines written to stdout so far are complete"
        typer.echo(f"interrupted by {signal.Signals(signum).name}; {kept}", err=True)
        raise typer.Exit(code=128 + signum) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _kept(output: Optional[Path]) -> str:
    """What an interrupted run leaves: only rows the journal committed count."""
    from kesheng.serve.batch.journal import committed_rows

    rows = committed_rows(output) if output is not None else 0
    if rows:
        return f"the {plural(rows, 'row')} tagged so far are kept: rerun the same command to continue where it stopped"
    return "no row was written"


class _StdoutFailed(Exception):
    """Writing to stdout failed (a full disk, a closed pipe); not an error of the input."""


class _Stdout:
    """sys.stdout, whose write errors are told apart from errors reading the input."""

    def write(self, text: str) -> int:
        try:
            return sys.stdout.write(text)
        except OSError as exc:
            raise _StdoutFailed(exc.strerror or str(exc)) from exc

    def flush(self) -> None:
        try:
            sys.stdout.flush()
        except OSError as exc:
            raise _StdoutFailed(exc.strerror or str(exc)) from exc


@contextlib.contextmanager
def _stdout_errors():
    """A full disk or a closed pipe behind stdout: one line, not a traceback (and none at exit)."""
    try:
        yield
    except _StdoutFailed as exc:
        # The interpreter's final flush goes nowhere instead of failing again with a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        fail(f"cannot write to stdout ({exc})")


def _tag_with_ray(input: Path, output: Optional[Path], options, model_dir: Optional[Path], address: Optional[str]) -> None:
    from kesheng.serve.batch.tagging import InputFileError

    if output is None:
        fail("--engine ray writes a directory of part files: give --output DIR")
    try:
        from kesheng.serve.batch.distributed import DistributedOptions, tag_with_ray
    except ImportError as exc:
        fail(f"--engine ray needs Ray Data: pip install 'kesheng[distributed]' ({exc})")
    try:
        count = tag_with_ray(input, output, DistributedOptions.from_tag_options(options, model_dir=model_dir, address=address))
    except InputFileError as exc:
        fail(str(exc))
    typer.echo(f"tagged {plural(count, 'row')} -> {output}/", err=True)


