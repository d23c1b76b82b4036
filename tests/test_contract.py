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


SURVEY_NON_ANSWERS = ["无", "没有", "暂无", "/", "。。。", "123", "无意见", "没有了。", "不知道", "N/A", "none", "——"]
SURVEY_ANSWERS = ["挺好", "还行", "一般", "不满意", "很差", "没有人接电话", "无语", "没有回复", "👍", "😡😡"]


@pytest.mark.parametrize("text", SURVEY_NON_ANSWERS)
def test_a_survey_non_answer_gets_no_tags_neutral_and_a_note(any_model, text):
    from kesheng.models.base import NON_ANSWER_NOTE

    (p,) = any_model.predict([text])
    # every_tag_model tags everything it scores: an empty tag list means no model read the text.
    assert p.tags == [] and p.sentiment == "neutral" and p.evidence == []
    assert p.notes == [NON_ANSWER_NOTE]  # "none" is a non-answer, not an English comment
    assert p.escalate is False and all(score == 0.0 for score in p.scores.values())
    check_prediction(p, text, any_model.taxonomy_.names)


@pytest.mark.parametrize("text", SURVEY_ANSWERS)
def test_a_short_survey_answer_is_scored_by_the_model(any_model, text):
    from kesheng.models.base import NON_ANSWER_NOTE

    (p,) = any_model.predict([text])
    assert NON_ANSWER_NOTE not in p.notes


def test_non_answers_among_comments_keep_their_place(any_model):
    from kesheng.models.base import NON_ANSWER_NOTE

    texts = ["无", TEXTS[0], "/", TEXTS[1]]
    predictions = any_model.predict(texts)
    assert [NON_ANSWER_NOTE in p.notes for p in predictions] == [True, False, True, False]
    assert predictions[1::2] == any_model.predict(texts[1::2])


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


# Evidence is whole words: the per-character floor alone cut "客服电话" to "客服电".

WORD_TEXTS = [
    "客服态度很差，打客服电话没人接",
    "工作人员让我去别的营业厅办理，来回跑了三趟",
    "营业厅的工作人员态度恶劣，办个业务等了两个小时",
    "客服电话一直占线，打了十几次都没人接",
    "退款申请提交一个星期了还没退款，客服也不回复",
    "快递员不送货上门，还说我不在家，电话也不接",
    "第三次打电话了还是没人管，再不解决我就投诉到工信部！！！",
    "😡 @某某客服 你們的客服態度太差了！！！等了３０分鐘都沒人理",
]


def cut_words(text: str, evidence) -> list[tuple[str, str]]:
    """(evidence text, word) for each evidence start or end that falls strictly inside a jieba word of the text."""
    from kesheng.nlp import WordTokenizer, normalize

    normalized = normalize(text)
    words = [normalized.to_original(start, end) for _, start, end in WordTokenizer.shared().words(normalized.text)]
    return [(e.text, text[start:end]) for e in evidence for start, end in words if start < e.start < end or start < e.end < end]


def overlapping_spans(evidence) -> list[tuple[str, str, str]]:
    spans = sorted((e.tag, e.start, e.end, e.text) for e in evidence)
    return [(a[0], a[3], b[3]) for a, b in zip(spans, spans[1:]) if a[0] == b[0] and b[1] < a[2]]


@pytest.fixture(scope="module")
def bundled():
    from kesheng.stores.registry import load_model as load_registered

    return load_registered()


@pytest.mark.parametrize("text", WORD_TEXTS)
def test_bundled_model_evidence_never_cuts_a_word(bundled, text):
    (p,) = bundled.predict([text])
    assert p.evidence, "every sentence here is a complaint the bundled model explains"
    assert cut_words(text, p.evidence) == []
    assert overlapping_spans(p.evidence) == []


@pytest.mark.parametrize("text", WORD_TEXTS)
def test_evidence_never_cuts_a_word(any_model, text):
    (p,) = any_model.predict([text])
    assert cut_words(text, p.evidence) == []
    assert overlapping_spans(p.evidence) == []


@pytest.mark.parametrize(
    "runs, expected",
    [
        # "打客服电" ends inside 客服电话: widened to its end.
        ([(4, 7, 3.0)], [(3, 7, 3.0)]),
        # Starts inside 客服电话 and ends inside 没人接.
        ([(5, 9, 2.0)], [(3, 10, 2.0)]),
        # Already whole words: unchanged.
        ([(0, 2, 1.5), (3, 7, 0.5)], [(0, 2, 1.5), (3, 7, 0.5)]),
        # Whole words that touch read as one phrase: merged.
        ([(3, 7, 1.5), (7, 10, 0.5)], [(3, 10, 2.0)]),
        # "客服" and "话没" both widen into 客服电话, so they meet: one span carrying both weights.
        ([(3, 5, 1.0), (6, 8, 2.0)], [(3, 10, 3.0)]),
        # Apart before and after widening; text order, whatever the input order.
        ([(8, 9, 1.0), (0, 1, 2.0)], [(0, 2, 2.0), (7, 10, 1.0)]),
    ],
)
def test_snap_to_words_widens_runs_to_whole_words_and_merges_those_that_meet(runs, expected):
    from kesheng.models.evidence import snap_to_words

    # "客服打客服电话没人接": 客服 [0, 2) 打 [2, 3) 客服电话 [3, 7) 没人接 [7, 10)
    assert snap_to_words(runs, [0, 2, 3, 7], [2, 3, 7, 10]) == expected


def test_snap_to_words_leaves_characters_outside_words_alone():
    from kesheng.models.evidence import snap_to_words

    # Whitespace is no word: a run starting or ending on it keeps that edge.
    assert snap_to_words([(2, 4, 1.0)], [0, 3], [2, 5]) == [(2, 5, 1.0)]
