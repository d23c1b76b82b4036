import numpy as np
import pytest

from kesheng.training.config import ColumnMap
from kesheng.training.data import DataValidationError, group_split, load_labeled
from tests.labeled_rows import labeled, write_jsonl


def test_loads_jsonl_with_tag_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [labeled("等太久了", ["slow_response"], id="a"), labeled("很好", [], "positive", id="b")])
    data = load_labeled(path)
    assert data.ids == ["a", "b"]
    assert data.tags.tolist() == [[1, 0, 0, 0], [0, 0, 0, 0]]
    assert data.sentiments == ["negative", "positive"]


def test_loads_csv_with_column_mapping_and_tag_lists(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("uid,review,labels,polarity\n007,等太久了,slow_response|attitude,negative\n008,还行,,neutral\n", encoding="utf-8")
    data = load_labeled(path, ColumnMap(text="review", id="uid", sentiment="polarity", tags="labels"))
    assert data.ids == ["007", "008"]  # ids stay text, leading zeros kept
    assert data.tags.tolist() == [[1, 0, 1, 0], [0, 0, 0, 0]]


def test_missing_text_column_lists_available_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [labeled("好")])
    with pytest.raises(DataValidationError, match=r"text column 'review' not found; columns are \['text'"):
        load_labeled(path, ColumnMap(text="review"))


def test_every_problem_is_listed_with_rows(tmp_path):
    rows = [labeled("好", id=f"r{i}") for i in range(8)]
    rows[1]["sentiment"] = "angry"
    rows[2]["text"] = "  "
    rows[3]["opacity"] = 2
    rows[4]["id"] = "r0"
    rows += [labeled("重复文本", ["attitude"], id="x"), labeled("重复文本", [], id="y")]
    for i in range(5, 8):
        rows[i]["text"] = f"第{i}条"
    with pytest.raises(DataValidationError) as err:
        load_labeled(write_jsonl(tmp_path / "d.jsonl", rows))
    message = str(err.value)
    assert "sentiment not in" in message and "'angry'" in message and "row 2 (id r1)" in message
    assert "missing or empty text" in message and "row 3" in message
    assert "tag 'opacity' is not 0/1" in message
    assert "duplicate id" in message and "repeats id r0" in message
    assert "重复文本" not in message  # the same text labeled twice is merged by the one rule, not an error


def test_the_same_text_labeled_differently_follows_the_one_merge_rule(tmp_path):
    rows = [labeled("重复文本", ["attitude", "opacity"], id="x"), labeled("重复文本！", ["opacity"], sentiment="neutral", id="y")]
    data = load_labeled(write_jsonl(tmp_path / "d.jsonl", rows))
    names = list(data.taxonomy.names)
    # Agreeing fields are kept, disputed ones are left unlabeled in both copies and reported.
    assert data.tags[:, names.index("opacity")].tolist() == [1, 1]
    assert data.tags[:, names.index("attitude")].tolist() == [-1, -1]
    assert data.sentiments == [None, None]
    assert any("attitude" in w and "left unlabeled" in w for w in data.warnings)
    assert any("sentiment" in w for w in data.warnings)


def test_unknown_tag_in_tag_list(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "乱收费", "tags": ["billing"], "sentiment": "negative"}])
    with pytest.raises(DataValidationError, match="unknown tag.*'billing'"):
        load_labeled(path)


def test_many_problems_show_first_rows_and_count(tmp_path):
    rows = [labeled(f"第{i}条", sentiment="bad", id=str(i)) for i in range(12)]
    with pytest.raises(DataValidationError, match=r"\(12 in all\)"):
        load_labeled(write_jsonl(tmp_path / "d.jsonl", rows))


def test_no_tag_labels_at_all(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "好", "sentiment": "positive"}])
    with pytest.raises(DataValidationError, match="no tag labels"):
        load_labeled(path)


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("d.jsonl", "", "empty file"),
        ("d.jsonl", '{"text": "好", "sentiment": \n', "not valid JSON"),
        ("d.docx", "x", "unsupported file type"),
    ],
)
def test_broken_files(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataValidationError, match=match):
        load_labeled(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataValidationError, match="no such file"):
        load_labeled(tmp_path / "absent.jsonl")


def test_identical_duplicates_are_reported_not_dropped(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [labeled("太慢了", ["slow_response"], id="a"), labeled("太慢了！", ["slow_response"], id="b")])
    data = load_labeled(path)
    assert len(data) == 2 and data.warnings and "duplicate text" in data.warnings[0]


def test_split_is_reproducible_grouped_and_stratified(tmp_path):
    rows = []
    for i in range(200):
        tags = ["slow_response"] if i % 4 == 0 else []
        rows.append(labeled(f"评论{i % 150}号", tags, id=str(i)))
    # Rows i and i+150 share a text; give them the same labels so the file is valid.
    for i in range(150, 200):
        rows[i] = labeled(rows[i - 150]["text"], ["slow_response"] if (i - 150) % 4 == 0 else [], id=str(i))
    data = load_labeled(write_jsonl(tmp_path / "d.jsonl", rows))
    rest, held = group_split(data, 0.2, seed=1)
    assert (rest, held) == group_split(data, 0.2, seed=1)
    assert sorted(rest + held) == list(range(200))
    assert {data.texts[i] for i in rest}.isdisjoint({data.texts[i] for i in held})
    share = data.tags[held, 0].mean()
    assert abs(share - data.tags[:, 0].mean()) < 0.1
    assert 30 <= len(held) <= 50
    assert group_split(data, 0.2, seed=2) != (rest, held)
    assert np.asarray(data.tags).dtype == np.int8


def test_labeled_csv_in_gb18030_reads_like_tag_reads_it(tmp_path):
    # One reader stack for every command: a survey tool's GB18030 export is read, not refused.
    path = tmp_path / "gbk.csv"
    path.write_bytes("text,sentiment,slow_response,unresolved,attitude,opacity\n等了半小时,negative,1,0,0,0\n服务很好,positive,0,0,0,0\n".encode("gb18030"))
    data = load_labeled(path)
    assert data.texts == ["等了半小时", "服务很好"] and data.tags[0].tolist() == [1, 0, 0, 0]


def test_a_malformed_labeled_row_is_an_error_naming_it(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,sentiment,slow_response\n好,positive,0\n坏,negative,1,extra\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match="row 3"):
        load_labeled(path)


def test_chinese_tag_and_sentiment_names_are_read_as_label_studio_imports_are(tmp_path):
    rows = [{"text": "等了一个小时没人理", "tags": ["响应缓慢", "服务态度"], "sentiment": "负面"}, {"text": "很满意", "tags": [], "sentiment": "正面"}]
    data = load_labeled(write_jsonl(tmp_path / "zh.jsonl", rows))
    assert data.tags.tolist() == [[1, 0, 1, 0], [0, 0, 0, 0]] and data.sentiments == ["negative", "positive"]
    columns = tmp_path / "zh.csv"
    columns.write_text("text,sentiment,响应缓慢,信息不透明\n等了很久,中性,1,0\n", encoding="utf-8")
    data = load_labeled(columns)
    assert data.tags[0, 0] == 1 and data.tags[0, 3] == 0 and data.sentiments == ["neutral"]


def test_a_row_with_two_problems_counts_once(tmp_path):
    rows = [labeled("好", id=f"r{i}") for i in range(3)]
    for row in rows:
        row["sentiment"], row["opacity"] = "angry", 2  # two problems on every row
    with pytest.raises(DataValidationError) as err:
        load_labeled(write_jsonl(tmp_path / "d.jsonl", rows))
    assert "3 rows with problems" in str(err.value)
