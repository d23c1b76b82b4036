"""The survey non-answer detector (kesheng.nlp.non_answer): what says nothing, and what does."""

import pytest

from kesheng.nlp.non_answer import is_non_answer, non_answer_phrases

NON_ANSWERS = [
    # listed phrases, as typed in survey fields
    "无", "没有", "没", "暂无", "暂时没有", "无意见", "没意见", "没有意见", "无建议", "没有建议", "暂无建议",
    "没什么", "没什么意见", "没什么建议", "没什么说的", "不知道", "不清楚", "说不上来", "无所谓", "没了", "就这些",
    "无其他", "其他无", "无补充", "没有补充", "略", "同上", "如上", "空", "否", "未填", "无内容",
    "n/a", "N/A", "na", "none", "None", "NIL", "no", "null",
    # with punctuation, whitespace and trailing particles around them
    "无。", " 暂无 ", "没有了", "没有啊！", "没有呢~", "没什么的", "无哈", "n / a", "None.", "无。。。",
    # full-width and traditional characters fold like any comment
    "ＮＯＮＥ", "沒有", "暫無",
    # no letter, Chinese character or emoji
    "/", "//", "123", "1234567890", "。。。", "...", "——", "-", "?", "12:30", "\x00\x01",
]
ANSWERS = [
    # short answers with an opinion
    "挺好", "还行", "一般", "不满意", "很差", "好", "无语", "ok",
    # a listed phrase inside a comment is a comment
    "没有人接电话", "没有回复", "无，谢谢", "暂无信号", "没有解决", "不知道怎么退款", "没什么用",
    # emoji and emoticons carry a feeling
    "👍", "😡😡", "/👍", "❤", ":)", ":(", "^_^", ">_<", "-_-", "[怒]",
    # letters of another language are a comment, noted as not Chinese by the model
    "The agent was rude", "nope, still broken",
]


@pytest.mark.parametrize("text", NON_ANSWERS)
def test_texts_that_say_nothing_are_non_answers(text):
    assert is_non_answer(text)


@pytest.mark.parametrize("text", ANSWERS)
def test_texts_with_an_opinion_or_a_subject_are_answers(text):
    assert not is_non_answer(text)


@pytest.mark.parametrize("text", ["", " ", "\n\t "])
def test_empty_text_is_missing_not_a_non_answer(text):
    assert not is_non_answer(text)


def test_every_listed_phrase_is_read_from_the_file_and_detected():
    phrases = non_answer_phrases()
    assert {"无", "没有", "暂无", "na", "none"} <= phrases
    assert not any(phrase.startswith("#") for phrase in phrases)  # the file's comment lines are not phrases
    assert all(is_non_answer(phrase) for phrase in phrases)


@pytest.mark.parametrize("text", [t for t in NON_ANSWERS + ANSWERS if any(c.isalpha() for c in t)])
def test_the_quick_letter_check_agrees_with_comparing_the_normalized_text(text):
    from kesheng.nlp.non_answer import _core

    # The check skips normalizing texts with a letter no phrase has: it must never skip a non-answer.
    assert is_non_answer(text) == (_core(text) in non_answer_phrases())
