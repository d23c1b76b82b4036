"""The predict contract every model type must keep, run on each of them (`any_model`)."""

import math

import pytest

from kesheng.models import Prediction, load_model
from kesheng.models.schema import SENTIMENTS
from tests.texts import BAD, TEXTS


def check_prediction(p: Prediction, text, names):
    assert isinstance(p, Prediction)
    if not text.strip():
        assert p.sentiment is None and p.sentiment_scores is None and p.tags == []
        assert p.escalate is None and p.escalate_score is None  # unknown, never "no"
        return
    # Every model type here was trained with escalate labels, so every scored text gets the flag.
    assert isinstance(p.escalate, bool) and 0.0 <= p.escalate_score <= 1.0
    assert set(p.scores) == set(names)
    assert all(0.0 <= v <= 1.0 and not math.isnan(v) for v in p.scores.values())
    assert set(p.sentiment_scores) == set(SENTIMENTS)
    assert sum(p.sentiment_scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert p.sentiment in SENTIMENTS
    assert p.sentiment == max(p.sentiment_scores, key=p.sentiment_scores.get)
    assert set(p.tags) <= set(names)
    utf16 = text.encode("utf-16-le")
    for e in p.evidence:
        assert e.tag in p.tags or (e.tag == "escalate" and p.escalate)
        assert 0 <= e.start < e.end <= len(text)
        assert text[e.start : e.end] == e.text
        # What a JavaScript client slices with the UTF-16 offsets is the same span.
        assert utf16[2 * e.start_utf16 : 2 * e.end_utf16].decode("utf-16-le") == e.text


def check_one_prediction_per_text_in_order(model) -> list[Prediction]:
    """The contract on good and bad texts, for any model type; returns the predictions."""
    names = model.taxonomy_.names
    texts = TEXTS + BAD + list(reversed(TEXTS))
    predictions = model.predict(texts)
    assert len(predictions) == len(texts)
    for text, p in zip(texts, predictions):
        check_prediction(p, text or "", names)
    # Order: the same text at two positions gets the same prediction.
    assert predictions[0] == predictions[-1]
    assert predictions[1] == predictions[-2]
    return predictions


def test_one_prediction_per_text_in_order(any_model):
    predictions = check_one_prediction_per_text_in_order(any_model)
    # Batch or one by one: same answers.
    assert [any_model.predict([t])[0] for t in TEXTS] == predictions[: len(TEXTS)]


@pytest.mark.parametrize("text", [None, "", "   \n\t "])
def test_missing_or_empty_text_gets_no_tags_and_a_note(any_model, text):
    (p,) = any_model.predict([text])
    # No sentiment either: a survey pivot must not count blank answers as neutral.
    assert p.tags == [] and p.sentiment is None and p.sentiment_scores is None and p.notes


def test_texts_without_known_words_are_not_scored(any_model):
    (p,) = any_model.predict(["ᚠᚢᚦ ᚨᚱᚲ"])  # runes: surely in no training text
    assert p.tags == [] and p.notes


def test_a_text_in_another_language_is_noted_as_unreliable(any_model):
    from kesheng.models.base import NOT_CHINESE_NOTE, NOT_SCORED

    english, chinese, number, mixed = any_model.predict(["The agent was rude and my refund is still missing", "退款还没到账", "123", "wifi太慢了"])
    # Never a silent "no problem": scored and noted as unreliable, or (no known token at all) not scored and noted so.
    noted_unreliable = NOT_CHINESE_NOTE in english.notes
    noted_unscored = any(note.endswith(NOT_SCORED) for note in english.notes)
    assert noted_unreliable != noted_unscored
    assert NOT_CHINESE_NOTE not in chinese.notes + number.notes + mixed.notes  # digits are not a language; one Chinese character is enough


def test_non_string_text_is_a_clear_error(any_model):
    with pytest.raises(TypeError, match="text #1"):
        any_model.predict(["好", 42])


def test_single_string_instead_of_list_is_a_clear_error(any_model):
    with pytest.raises(TypeError, match="list"):
        any_model.predict("等了半小时")


def test_evidence_offsets_index_the_original_text(any_model):
    text = "😡😡 @某某客服 你們的客服態度太差了！！！等了３０分鐘都沒人理 🙄"
    (p,) = any_model.predict([text])
    assert p.tags, "expected at least one tag for an obvious complaint"
    assert p.evidence
    for e in p.evidence:
        assert text[e.start : e.end] == e.text
        # Each emoji is two UTF-16 code units: the offsets a JavaScript client slices with.
        assert e.start_utf16 == len(text[: e.start].encode("utf-16-le")) // 2
        assert e.end_utf16 - e.start_utf16 == len(e.text.encode("utf-16-le")) // 2
    assert any(e.start >= 2 and e.start_utf16 == e.start + 2 for e in p.evidence if e.tag in p.tags)


def test_save_load_gives_identical_predictions(any_model, tmp_path):
    path = any_model.save(tmp_path / "copy")
    loaded = load_model(path)
    texts = TEXTS + [t for t in BAD if t is not None][:4]
    assert loaded.predict(texts) == any_model.predict(texts)
    assert loaded.thresholds_ == any_model.thresholds_
    assert loaded.taxonomy_ == any_model.taxonomy_


def test_to_dict_has_the_documented_keys(any_model):
    (p,) = any_model.predict(["等了半小时都没人接电话"])
    row = p.to_dict(id="T-1")
    assert list(row) == ["id", "tags", "scores", "sentiment", "sentiment_scores", "evidence", "notes", "escalate", "escalate_score"]
    assert row["id"] == "T-1"


@pytest.mark.parametrize("threshold, expected", [(0.0, True), (1.0, False)])
def test_the_escalate_threshold_decides_the_flag_and_an_override_is_never_saved(any_model, tmp_path, threshold, expected):
    text = "第三次打电话了还是没人管，再不解决我就投诉到工信部！！！"
    learned = any_model.escalate_threshold_
    try:
        any_model.override_escalate_threshold(threshold)
        (p,) = any_model.predict([text])
        assert p.escalate is expected and p.escalate_score < 1.0
        assert any(e.tag == "escalate" for e in p.evidence) is expected
        loaded = load_model(any_model.save(tmp_path / "copy"))
        assert loaded.escalate_threshold_ == learned and loaded.escalate_threshold_override is None
    finally:
        any_model.override_escalate_threshold(None)
    assert any_model.escalate_threshold == learned
