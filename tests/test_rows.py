"""The tagged-row schema: notes survive a table cell, JSONL records flatten to table rows."""

import json

import pytest

from kesheng.models.rows import (
    MODEL_VERSION_COLUMN,
    flat_from_record,
    flat_values,
    join_notes,
    jsonl_fields,
    note_kind,
    prediction_columns,
    split_notes,
    tag_columns,
)

TAGS = ("slow_response", "unresolved", "attitude", "opacity")


@pytest.mark.parametrize(
    "notes",
    [
        [],
        ["empty text"],
        ["malformed row: line 7 has 6 fields, the header 4; extra fields: [\"a; b\"]", "unreadable text: undecodable bytes"],
        ["raw line: 第一行\n第二行 \\n 不是换行", "line\r\nbreaks"],
    ],
)
def test_notes_round_trip_through_one_cell(notes):
    cell = join_notes(notes)
    assert "\n" not in cell or len(notes) > 1
    assert split_notes(cell) == notes


def test_note_kind_is_the_part_before_the_first_colon():
    # The old "; " separator split this note in two and counted a phantom "extra fields" row.
    assert [note_kind(n) for n in split_notes(join_notes(["malformed row: x; extra fields: [1]"]))] == ["malformed row"]


def test_flat_row_and_jsonl_record_describe_the_same_prediction(model):
    prediction = model.predict(["等了半小时都没人接电话，问题到现在还没解决"])[0]
    columns = prediction_columns(TAGS)
    flat = dict(zip(columns, flat_values(prediction, TAGS, ["empty text"], "v1")))
    record = {"id": 7, "channel": "app", **jsonl_fields(prediction, ["empty text"], "v1")}
    assert record["notes"] == ["empty text"] and record[MODEL_VERSION_COLUMN] == "v1"
    back = flat_from_record(record, TAGS)
    assert back["channel"] == "app" and back["id"] == 7
    assert {c: back[c] for c in columns if c != "evidence"} == {c: flat[c] for c in columns if c != "evidence"}
    assert json.loads(back["evidence"]) == json.loads(flat["evidence"])


def test_escalate_columns_say_unknown_as_an_empty_cell_never_as_no(model):
    known, empty = model.predict(["再不解决我就投诉到工信部！！！", ""])
    columns = prediction_columns(TAGS)
    assert columns.index("escalate") == columns.index("sentiment_score") + 1 and "escalate_score" in columns
    flat = dict(zip(columns, flat_values(known, TAGS)))
    assert flat["escalate"] in (0, 1) and flat["escalate_score"] == round(known.escalate_score, 4)
    blank = dict(zip(columns, flat_values(empty, TAGS)))
    assert blank["escalate"] is None and blank["escalate_score"] is None
    record = jsonl_fields(empty)
    assert record["escalate"] is None and flat_from_record(record, TAGS)["escalate"] is None
    # "escalate" is a flag with a score, not a tag: a reader never mistakes it for one.
    assert tag_columns(columns) == list(TAGS)
