"""File tagging at scale: every format, order, workers, resume after a crash, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kesheng.serve.batch import InputFileError, TagFileOptions, tag_file
from kesheng.serve.batch.journal import partial_dir_for
from tests.batch_helpers import read_output, survey_rows, write_rows

FORMATS = ["csv", "tsv", "jsonl", "xlsx", "parquet"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rows():
    return survey_rows(40)


@pytest.mark.parametrize("in_fmt", FORMATS)
@pytest.mark.parametrize("out_fmt", FORMATS)
def test_every_format_round_trip(model, tmp_path, rows, in_fmt, out_fmt):
    source = write_rows(tmp_path / f"in.{in_fmt}", rows)
    target = tmp_path / f"out.{out_fmt}"
    result = tag_file(model, source, target, TagFileOptions(id_field="resp_id", chunk_rows=7))
    assert result.rows == len(rows)
    out = read_output(target, model.taxonomy_.names)
    assert len(out) == len(rows)
    id_key = "id" if out_fmt == "jsonl" else "resp_id"
    assert [r[id_key] for r in out] == [r["resp_id"] for r in rows]
    assert [r["channel"] for r in out] == [r["channel"] for r in rows]
    expected = model.predict([r["text"] or None for r in rows])
    for row, written, prediction in zip(rows, out, expected):
        if row["text"]:
            assert (written["text"] or "") == row["text"]
            assert written["tags"] == prediction.tags
            assert written["sentiment"] == prediction.sentiment
        else:
            assert written["tags"] == [] and ("empty text" in written["notes"] or "missing text" in written["notes"])
            # No sentiment for a blank answer: an empty cell (null), so a pivot cannot count it as neutral.
            blank = "" if out_fmt in ("csv", "tsv") else None  # an empty cell in text tables, null elsewhere
            assert written["sentiment"] == blank and written.get("sentiment_score", blank) == blank
    assert not partial_dir_for(target).exists()


def test_parquet_output_keeps_parquet_column_types(model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"n": pa.array([1, 2, 3], pa.int32()), "text": ["等了很久", None, "好"]}), source)
    tag_file(model, source, tmp_path / "out.parquet", TagFileOptions(chunk_rows=2))
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.field("n").type == pa.int32()
    assert table.column("n").to_pylist() == [1, 2, 3]
    assert table.schema.field("slow_response").type == pa.int8()


def test_keep_columns_carries_only_the_named_ones(model, tmp_path, rows):
    source = write_rows(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    tag_file(model, source, out, TagFileOptions(keep_columns=("resp_id",)))
    header = out.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:2] == ["resp_id", "text"] and "channel" not in header


@pytest.mark.slow
def test_two_workers_give_the_same_file_in_order(model_dir, tmp_path):
    source = write_rows(tmp_path / "in.csv", survey_rows(300))
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    tag_file(model_dir, source, one, TagFileOptions(chunk_rows=13))
    result = tag_file(model_dir, source, two, TagFileOptions(chunk_rows=13, workers=2))
    assert result.rows == 300
    assert one.read_bytes() == two.read_bytes()


def test_workers_need_a_model_directory(model, tmp_path, rows):
    source = write_rows(tmp_path / "in.csv", rows)
    with pytest.raises(ValueError, match="model directory"):
        tag_file(model, source, tmp_path / "out.csv", TagFileOptions(workers=2))


class Crash(Exception):
    pass


def _crash_after(model, monkeypatch, calls: int):
    real = type(model).predict
    seen = []

    def predict(texts):
        seen.append(1)
        if len(seen) > calls:
            raise Crash("simulated crash")
        return real(model, texts)

    monkeypatch.setattr(model, "predict", predict)


@pytest.mark.parametrize("out_fmt", ["csv", "jsonl", "parquet", "xlsx"])
def test_resume_after_a_crash_continues_and_equals_a_clean_run(model, tmp_path, monkeypatch, out_fmt):
    source = write_rows(tmp_path / "in.csv", survey_rows(100))
    target = tmp_path / f"out.{out_fmt}"
    options = TagFileOptions(id_field="resp_id", chunk_rows=10)
    with monkeypatch.context() as patch:
        _crash_after(model, patch, calls=3)
        with pytest.raises(Crash):
            tag_file(model, source, target, options)
    assert not target.exists()
    partial = partial_dir_for(target)
    state = json.loads((partial / "progress.json").read_text(encoding="utf-8"))
    assert state["chunks_done"] == 3 and state["rows_done"] == 30
    if out_fmt in ("csv", "jsonl"):
        with open(partial / "data", "ab") as torn:  # a chunk half-written when the process died
            torn.write(b"R99999,half a row")
    else:
        (partial / "part-0000003.parquet").write_bytes(b"not parquet: written after the last commit")
    result = tag_file(model, source, target, options)
    assert result.resumed_rows == 30 and result.rows == 100
    clean = tmp_path / f"clean.{out_fmt}"
    tag_file(model, source, clean, options)
    if out_fmt in ("csv", "jsonl"):
        assert target.read_bytes() == clean.read_bytes()
    else:
        names = model.taxonomy_.names
        assert read_output(target, names) == read_output(clean, names)
    assert not partial.exists()


def test_resume_refuses_a_changed_input_until_restart(model, tmp_path, monkeypatch):
    source = write_rows(tmp_path / "in.csv", survey_rows(50))
    target = tmp_path / "out.csv"
    options = TagFileOptions(chunk_rows=10)
    with monkeypatch.context() as patch:
        _crash_after(model, patch, calls=2)
        with pytest.raises(Crash):
            tag_file(model, source, target, options)
    write_rows(source, survey_rows(60))
    with pytest.raises(InputFileError, match=r"different input.*--restart"):
        tag_file(model, source, target, options)
    with pytest.raises(InputFileError, match=r"settings.chunk_rows"):
        write_rows(source, survey_rows(50))
        tag_file(model, source, target, TagFileOptions(chunk_rows=20))
    write_rows(source, survey_rows(60))
    result = tag_file(model, source, target, TagFileOptions(chunk_rows=10, restart=True))
    assert result.resumed_rows == 0 and result.rows == 60


@pytest.mark.slow
def test_resume_after_the_process_is_killed(model_dir, tmp_path):
    """A real crash: SIGKILL in the middle of a two-worker run, then the same call again."""
    source = write_rows(tmp_path / "in.csv", survey_rows(8000))
    target = tmp_path / "out.csv"
    script = (
        "import sys; from kesheng.serve.batch import tag_file, TagFileOptions; "
        "tag_file(sys.argv[1], sys.argv[2], sys.argv[3], TagFileOptions(chunk_rows=100, workers=2))"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(model_dir), str(source), str(target)], cwd=ROOT, start_new_session=True)
    progress = partial_dir_for(target) / "progress.json"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if progress.exists() and json.loads(progress.read_text(encoding="utf-8") or "{}").get("chunks_done", 0) >= 5:
                break
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the whole group: the workers die too
        process.wait()
    assert not target.exists()
    result = tag_file(model_dir, source, target, TagFileOptions(chunk_rows=100, workers=2))
    assert 500 <= result.resumed_rows < 8000 and result.rows == 8000
    clean = tmp_path / "clean.csv"
    tag_file(model_dir, source, clean, TagFileOptions(chunk_rows=100))
    assert target.read_bytes() == clean.read_bytes()


# Bad input: a clear message, nothing written, nothing lost.


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_text_column_lists_the_available_ones(model, tmp_path, rows, fmt):
    source = write_rows(tmp_path / f"in.{fmt}", rows)
    with pytest.raises(InputFileError, match=r"'comment' not found.*resp_id.*channel"):
        tag_file(model, source, tmp_path / "out.csv", TagFileOptions(text_field="comment"))
    assert not (tmp_path / "out.csv").exists() and not partial_dir_for(tmp_path / "out.csv").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_file_is_a_clear_error(model, tmp_path, fmt):
    source = tmp_path / f"in.{fmt}"
    source.write_bytes(b"")
    with pytest.raises(InputFileError, match="empty file"):
        tag_file(model, source, tmp_path / "out.csv")


@pytest.mark.parametrize("out_fmt", FORMATS)
def test_header_only_input_gives_an_output_with_no_rows(model, tmp_path, out_fmt):
    source = tmp_path / "in.csv"
    source.write_text("id,text\n", encoding="utf-8")
    target = tmp_path / f"out.{out_fmt}"
    assert tag_file(model, source, target).rows == 0
    assert target.exists() and read_output(target, model.taxonomy_.names) == []


def test_malformed_csv_rows_are_kept_and_marked(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,text,channel\n1,等了很久,app\n2,字段太多,app,多余1,多余2\n3,字段太少\n4,正常,门店\n", encoding="utf-8")
    target = tmp_path / "out.csv"
    result = tag_file(model, source, target)
    out = read_output(target, model.taxonomy_.names)
    assert [r["id"] for r in out] == ["1", "2", "3", "4"]
    # One numbering everywhere: the row a spreadsheet shows, the header being row 1.
    assert "row 3 has 5 fields, the header has 3" in out[1]["notes"] and "多余1" in out[1]["notes"] and "多余2" in out[1]["notes"]
    assert "row 4 has 2 fields" in out[2]["notes"] and out[2]["text"] == "字段太少"
    assert out[0]["notes"] == "" and out[3]["notes"] == ""
    assert result.problems["malformed row"] == 2 and result.problem_rows["malformed row"] == [3, 4]
    with pytest.raises(InputFileError, match="row 3 has 5 fields"):
        tag_file(model, source, tmp_path / "strict.csv", TagFileOptions(strict=True))
    assert not (tmp_path / "strict.csv").exists() and not partial_dir_for(tmp_path / "strict.csv").exists()


def test_unreadable_text_values_are_kept_and_marked(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "好"}\n[1, 2]\n{"text": {"nested": 1}}\n{"text": 42}\n', encoding="utf-8")
    out = read_output(tag_file(model, source, tmp_path / "out.jsonl") and tmp_path / "out.jsonl", model.taxonomy_.names)
    assert len(out) == 4
    assert "is a JSON list, expected an object" in out[1]["notes"]
    assert "unreadable text: a JSON object" in out[2]["notes"] and out[2]["text"] == {"nested": 1}
    # A number is read as its text and reaches the model with no reader note.
    assert out[3]["notes"] == "; ".join(model.predict(["42"])[0].notes)


@pytest.mark.parametrize(
    "encoding, label",
    [("gb18030", "GB18030"), ("utf-8-sig", "UTF-8-SIG"), ("utf-16", "UTF-16"), ("utf-8", "UTF-8")],
)
def test_encoding_is_detected_and_named(model, tmp_path, encoding, label):
    source = tmp_path / "in.csv"
    source.write_bytes("id,text\n1,客服态度太差了\n2,等了一个小时\n".encode(encoding))
    result = tag_file(model, source, tmp_path / "out.csv")
    assert result.encoding.startswith(label) and result.replaced_bytes == 0
    assert [r["text"] for r in read_output(tmp_path / "out.csv", model.taxonomy_.names)] == ["客服态度太差了", "等了一个小时"]


def test_undecodable_file_names_the_encodings_tried(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"id,text\n1," + bytes([0x81, 0x20, 0xFF, 0xFE, 0x80]) * 50 + b"\n")
    with pytest.raises(InputFileError, match=r"UTF-8: \d+ bad bytes.*GB18030.*--encoding"):
        tag_file(model, source, tmp_path / "out.csv")
    result = tag_file(model, source, tmp_path / "out.csv", TagFileOptions(encoding="utf-8"))
    assert result.replaced_bytes > 0 and result.problems["unreadable text"] == 1
    assert "U+FFFD" in read_output(tmp_path / "out.csv", model.taxonomy_.names)[0]["notes"]


def test_a_few_corrupt_bytes_in_utf8_are_replaced_and_marked(model, tmp_path):
    good = "".join(f"{i},{'服务很好，下次还来' * 3}\n" for i in range(100))
    source = tmp_path / "in.csv"
    source.write_bytes(b"id,text\n" + good.encode("utf-8") + b"100,\xe5\xbe bad\n")
    result = tag_file(model, source, tmp_path / "out.csv")
    assert result.encoding == "UTF-8" and result.replaced_bytes == 2
    out = read_output(tmp_path / "out.csv", model.taxonomy_.names)
    assert len(out) == 101 and "unreadable text" in out[100]["notes"] and out[0]["notes"] == ""


def test_existing_output_is_refused_unless_overwrite(model, tmp_path, rows):
    source = write_rows(tmp_path / "in.parquet", rows)
    target = tmp_path / "out.xlsx"
    target.write_bytes(b"keep me")
    with pytest.raises(InputFileError, match="exists; pass --overwrite"):
        tag_file(model, source, target)
    assert target.read_bytes() == b"keep me"
    assert tag_file(model, source, target, TagFileOptions(overwrite=True)).rows == len(rows)


@pytest.mark.parametrize("fmt", ["xlsx", "parquet"])
def test_damaged_binary_files_are_a_clear_error(model, tmp_path, fmt):
    source = tmp_path / f"in.{fmt}"
    source.write_bytes(b"PK\x03\x04 this is not really a workbook" if fmt == "xlsx" else b"PAR1 truncated")
    with pytest.raises(InputFileError, match=f"not a readable {'XLSX' if fmt == 'xlsx' else 'Parquet'}"):
        tag_file(model, source, tmp_path / "out.csv")


def test_tagged_columns_in_the_input_are_not_overwritten(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text,sentiment\n好,positive\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"\['sentiment'\].*--keep"):
        tag_file(model, source, tmp_path / "out.csv")


def test_unsupported_extension_lists_formats(model, tmp_path):
    with pytest.raises(InputFileError, match=r"unsupported file type '.txt'.*\.parquet"):
        tag_file(model, tmp_path / "in.txt", tmp_path / "out.csv")


def test_progress_bar_shows_rows_rate_and_eta(model, tmp_path, capsys):
    source = write_rows(tmp_path / "in.csv", survey_rows(30))
    tag_file(model, source, tmp_path / "out.csv", TagFileOptions(progress=True, chunk_rows=10))
    err = capsys.readouterr().err
    assert "rows/s" in err and "ETA" in err and "30 rows" in err


def test_cli_tags_xlsx_to_parquet_with_workers_and_reports_encoding(model_dir, tmp_path):
    from typer.testing import CliRunner

    from kesheng.cli.main import app

    source = write_rows(tmp_path / "in.csv", survey_rows(30))
    source.write_bytes(source.read_text(encoding="utf-8").encode("gb18030"))
    target = tmp_path / "out.parquet"
    result = CliRunner().invoke(app, ["tag", "--model", str(model_dir), "-i", str(source), "-o", str(target), "--keep", "resp_id,channel", "--chunk-rows", "8"])
    assert result.exit_code == 0, result.output
    assert "as GB18030" in result.output and "tagged 30 rows" in result.output
    assert "rows with 'empty text' kept and marked" in result.output
    import pyarrow.parquet as pq

    assert pq.read_table(target).column_names[:3] == ["resp_id", "channel", "text"]


def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(model, tmp_path, rows):
    import fcntl

    source = write_rows(tmp_path / "in.csv", rows)
    target = tmp_path / "out.csv"
    partial = partial_dir_for(target)
    partial.mkdir()
    with open(partial / "lock", "a+") as held:  # what a running `kesheng tag` holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(InputFileError, match="another kesheng tag is writing"):
            tag_file(model, source, target)
    assert tag_file(model, source, target).rows == len(rows)


def test_rows_are_numbered_as_a_spreadsheet_shows_them(model, tmp_path):
    # A quoted line break and a blank line: file lines and spreadsheet rows differ; messages use rows.
    source = tmp_path / "in.csv"
    source.write_text('id,text\n1,"两行\n的评论"\n\n2,\n3,多,余\n', encoding="utf-8")
    result = tag_file(model, source, tmp_path / "out.csv")
    out = read_output(tmp_path / "out.csv", model.taxonomy_.names)
    assert result.problem_rows == {"empty text": [4], "malformed row": [5]}
    assert "row 5 has 3 fields" in out[2]["notes"]


def test_progress_bar_fits_80_columns_whole():
    import io

    from rich.console import Console

    from kesheng.serve.batch.tagging import _ProgressBar

    screen = io.StringIO()
    bar = _ProgressBar(True, "tagging a_rather_long_survey_export_name.csv", 1_000_000, 0, console=Console(file=screen, width=80, force_terminal=True))
    bar.update(123_456, 250_000)
    bar.close()
    last = [line for line in screen.getvalue().replace("\r", "\n").splitlines() if "ETA" in line][-1]
    plain = __import__("re").sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", last)
    assert len(plain.rstrip()) <= 80 and "123,456 rows" in plain and "ETA" in plain and "..." not in plain


def test_tag_and_report_find_the_comments_column_the_same_way(model, tmp_path):
    from typer.testing import CliRunner

    from kesheng.cli.main import app

    rows = [{"resp_id": f"R{i}", "channel": "app", "answer": f"等了{i}个小时客服都不回复，太慢了"} for i in range(12)]
    source = write_rows(tmp_path / "in.csv", rows)
    runner = CliRunner()
    tagged = runner.invoke(app, ["tag", "-i", str(source), "-o", str(tmp_path / "t.csv")])
    assert tagged.exit_code == 0, tagged.output
    assert "comments read from column 'answer'" in tagged.output
    report = runner.invoke(app, ["report", "-i", str(tmp_path / "t.csv"), "-o", str(tmp_path / "r.md")])
    assert report.exit_code == 0 and "comments read from column 'answer'" in report.output


# Clean stops: `kesheng tag` on SIGTERM/SIGINT, and workers that outlive no parent.


def _start_tag(model_dir, source: Path, target: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "kesheng", "tag", "--model", str(model_dir), "-i", str(source), "-o", str(target),
               "-w", "2", "--chunk-rows", "100", "--no-progress"]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _children_once_committed(process: subprocess.Popen, target: Path, chunks: int = 3) -> set[int]:
    """The run's child processes, read once `chunks` chunks are committed (the workers are busy then)."""
    import psutil

    progress = partial_dir_for(target) / "progress.json"
    deadline = time.time() + 120
    family: set[int] = set()
    while time.time() < deadline:
        family |= {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
        if progress.exists() and json.loads(progress.read_text(encoding="utf-8") or "{}").get("chunks_done", 0) >= chunks:
            return family
        assert process.poll() is None, "the run ended before it could be stopped"
        time.sleep(0.02)
    raise AssertionError("no chunk was committed")


def _alive(pids: set[int], wait_seconds: float) -> set[int]:
    """The processes among `pids` still running after up to `wait_seconds` (polled; zombies count as gone)."""
    import psutil

    deadline = time.time() + wait_seconds
    while True:
        alive = set()
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.add(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_tag_stops_on_a_signal_keeps_committed_rows_and_leaves_no_worker(model_dir, tmp_path, sig, code):
    source = write_rows(tmp_path / "in.csv", survey_rows(8000))
    target = tmp_path / "out.csv"
    process = _start_tag(model_dir, source, target)
    family = _children_once_committed(process, target)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"interrupted by {sig.name}; the ") and "rows tagged so far are kept" in lines[0], stderr
    assert not _alive(family, 10)
    assert not target.exists() and partial_dir_for(target).exists()
    result = tag_file(model_dir, source, target, TagFileOptions(chunk_rows=100, workers=2))
    assert result.resumed_rows >= 300 and result.rows == 8000
    clean = tmp_path / "clean.csv"
    tag_file(model_dir, source, clean, TagFileOptions(chunk_rows=100))
    assert target.read_bytes() == clean.read_bytes()


@pytest.mark.slow
def test_workers_exit_when_the_parent_is_killed(model_dir, tmp_path):
    source = write_rows(tmp_path / "in.csv", survey_rows(8000))
    target = tmp_path / "out.csv"
    process = _start_tag(model_dir, source, target)
    family = _children_once_committed(process, target, chunks=1)
    assert len(family) >= 2
    process.kill()  # only the parent: nobody stops the workers but themselves
    process.communicate(timeout=60)
    leftover = _alive(family, 10)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert not leftover
