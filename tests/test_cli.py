"""The `kesheng` command through its entry point, and file tagging."""

import csv
import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from kesheng.cli.main import app
from tests.labeled_rows import labeled, write_jsonl

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_tag_arguments_print_one_json_line_each(model_dir):
    result = run("tag", "--model", model_dir, "等了半小时都没人接电话", "", "菜有点咸")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["id"] for row in lines] == [0, 1, 2]
    assert lines[1]["tags"] == [] and lines[1]["notes"] == ["empty text"]


def test_tag_jsonl_file_with_custom_fields(model_dir, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"ticket": "T-1", "body": "客服态度太差了"}, {"ticket": "T-2", "body": None}, {"ticket": "T-3"}])
    out = tmp_path / "out.jsonl"
    result = run("tag", "--model", model_dir, "-i", source, "-o", out, "--text-field", "body", "--id-field", "ticket")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["T-1", "T-2", "T-3"]
    assert rows[1]["notes"] == ["missing text"] and rows[2]["notes"] == ["missing text"]


def test_tag_csv_keeps_every_input_column(model_dir, tmp_path):
    source = tmp_path / "survey.csv"
    source.write_text("\ufeffresp_id,channel,review\n1,app,送餐太慢了\n2,phone,\n3,store,\"含,逗号的\n多行评论\"\n", encoding="utf-8")
    out = tmp_path / "tagged.csv"
    result = run("tag", "--model", model_dir, "-i", source, "-o", out, "--text-column", "review")
    assert result.exit_code == 0, result.output
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["resp_id"] for r in rows] == ["1", "2", "3"]
    assert rows[2]["review"] == "含,逗号的\n多行评论"
    for column in ("channel", "slow_response", "slow_response_score", "sentiment", "evidence", "notes"):
        assert column in rows[0]
    assert rows[1]["notes"] == "empty text"


def test_wrong_column_lists_available(model_dir, tmp_path):
    source = tmp_path / "s.csv"
    source.write_text("id,comment\n1,好\n", encoding="utf-8")
    result = run("tag", "--model", model_dir, "-i", source, "-o", tmp_path / "o.csv", "--text-column", "review")
    assert result.exit_code == 2
    assert "column 'review' not found; columns are ['id', 'comment']" in result.output


def test_existing_output_is_not_overwritten(model_dir, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "好"}])
    out = tmp_path / "out.jsonl"
    out.write_text("keep me", encoding="utf-8")
    result = run("tag", "--model", model_dir, "-i", source, "-o", out)
    assert result.exit_code == 2 and "exists" in result.output
    assert out.read_text(encoding="utf-8") == "keep me"
    assert run("tag", "--model", model_dir, "-i", source, "-o", out, "--overwrite").exit_code == 0


def test_broken_jsonl_with_strict_names_the_line_and_writes_nothing(model_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "好"}\n{"text": \n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run("tag", "--model", model_dir, "-i", source, "-o", out, "--strict")
    assert result.exit_code == 2 and "line 2 is not valid JSON" in result.output
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.*"))


def test_broken_jsonl_line_is_kept_and_marked_by_default(model_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "好"}\n{"text": \n{"text": "等太久了"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run("tag", "--model", model_dir, "-i", source, "-o", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3]  # rows without an id get their line, as every message names them
    assert "line 2 is not valid JSON" in rows[1]["notes"][0] and '{"text": ' in rows[1]["notes"][0]
    assert "1 row with 'malformed row' kept and marked in notes (row 2)" in result.output


def test_gb18030_input_is_detected_and_named(model_dir, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes("text\n等太久了\n".encode("gb18030"))
    out = tmp_path / "o.csv"
    result = run("tag", "--model", model_dir, "-i", source, "-o", out)
    assert result.exit_code == 0, result.output
    assert "as GB18030" in result.output
    assert "等太久了" in out.read_text(encoding="utf-8")


def test_corrupt_model_is_a_clear_error(model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "meta.json").write_text("{", encoding="utf-8")
    result = run("tag", "--model", broken, "好")
    assert result.exit_code == 2 and "corrupt JSON" in result.output


def test_train_and_evaluate_commands(tmp_path, caplog):
    caplog.set_level("INFO", logger="kesheng.training.train")
    rows = []
    for i in range(30):
        rows.append(labeled(f"等了{i + 20}分钟还没送到", ["slow_response"], id=f"s{i}"))
        rows.append(labeled(f"第{i}次打电话客服还是不耐烦", ["attitude", "unresolved"], id=f"a{i}"))
        rows.append(labeled(f"这家店的菜第{i}次吃了，好吃", [], "positive", id=f"p{i}"))
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "m"
    result = run("train", "--data", data, "--output", out)
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.output and (out / "weights.safetensors").exists()
    # Each stage says what it is doing, so minutes of training are not minutes of silence.
    stages = [line for line in caplog.messages if line.startswith("stage ")]
    assert [line.split(":")[0] for line in stages] == [f"stage {i}/6" for i in range(1, 7)]
    metrics = tmp_path / "metrics.json"
    result = run("evaluate", "--model", out, "--data", data, "--output", metrics)
    assert result.exit_code == 0, result.output
    assert json.loads(metrics.read_text(encoding="utf-8"))["n"] == 90
    assert run("train", "--data", data, "--output", out).exit_code == 2  # exists


def test_train_reports_bad_labels(tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", [labeled("好", sentiment="great")])
    result = run("train", "--data", data, "--output", tmp_path / "m")
    assert result.exit_code == 2 and "sentiment not in" in result.output


def test_console_script_entry_point(model_dir):
    """The installed `kesheng` script, as a user runs it."""
    script = shutil.which("kesheng") or shutil.which("kesheng", path=str(__import__("pathlib").Path(sys.executable).parent))
    if script is None:
        pytest.fail("kesheng console script is not installed (pip install -e .)")
    done = subprocess.run([script, "tag", "--model", str(model_dir), "退款申请一周了还没处理"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == 0


def test_help_is_whole_at_80_columns():
    from typer.testing import CliRunner

    from kesheng.cli.main import app

    result = CliRunner().invoke(app, ["tag", "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert "kesheng[distributed]" in result.output  # not swallowed as markup
    assert "<bool>" not in result.output and "…" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


@pytest.mark.slow
def test_tag_to_a_full_stdout_is_one_line(model_dir, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text\n等了很久没人回复\n服务很好\n", encoding="utf-8")
    for args in (["-i", str(source)], ["等了很久没人回复"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [sys.executable, "-m", "kesheng", "tag", "--model", str(model_dir), *args],
                stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
            )
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == ["error: cannot write to stdout (No space left on device)"]


def test_tag_that_cannot_write_its_output_does_not_claim_rows_were_kept(model_dir, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text\n等了很久没人回复\n", encoding="utf-8")
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("", encoding="utf-8")
    result = run("tag", "--model", model_dir, "-i", source, "-o", blocker / "out.csv")
    assert result.exit_code == 1
    assert "no row was written" in result.output and "kept" not in result.output
