"""Survey non-answers: "无", "没有", "暂无", "/", "。。。", "123".

A required free-text field of a survey fills up with texts that carry no opinion. A model scores
them anyway ("无" comes out negative, "。。。" positive), which puts them into the problem and
sentiment figures; an analyst needs them counted apart instead. A text is a non-answer when it has
no letter, Chinese character or emoji (digits, punctuation and symbols only), or when, without
whitespace, punctuation and trailing particles, it is exactly one phrase of
resources/non_answers.txt. Anything else, however short ("一般", "无语", "👍"), is an answer.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from kesheng.nlp.normalize import char_table, is_emoji, is_punctuation, normalize

__all__ = ["is_non_answer", "non_answer_phrases"]

# Letters of any script, Chinese characters included: what makes a text more than symbols.
_LETTER = re.compile(r"[^\W\d_]")
# Emoticons without letters say how the customer feels (":)", "^_^", ">_<"), so they are answers.
_EMOTICON = re.compile(r"[:;=][-'^]?[()\[\]{}|/\\*]|[()\[\]{}][-'^]?[:;=]|\^[_\-.]?\^|[-=>@][_.][-=<@]")
# Sentence-final particles change the tone of 没有 ("没有啊", "没有了"), not what it says.
_TRAILING_PARTICLES = "了啊呢的哈吧呀啦嘛哦喔噢额呃"
# Longer than any listed phrase with generous punctuation around it: an answer, without normalizing it.
_LONGEST_CHECKED = 64


def _core(text: str) -> str:
    """The text as phrases are compared: normalized (lower case, simplified characters), without
    whitespace or punctuation anywhere ("n / a" is "na"), without trailing particles."""
    kept = "".join(c for c in normalize(text).text if not c.isspace() and not is_punctuation(c))
    return kept.rstrip(_TRAILING_PARTICLES)


@lru_cache(maxsize=1)
def _letter_outside_phrases() -> re.Pattern[str]:
    """Matches a letter that no listed phrase or particle is written with, in any case, width or
    traditional form: one such letter makes a text an answer without normalizing it, which keeps a
    report of a million comments from normalizing each of them."""
    letters = set("".join(non_answer_phrases())) | set(_TRAILING_PARTICLES)
    letters |= {chr(code) for code, folded in char_table().items() if folded in letters}
    return re.compile(f"[^{re.escape(''.join(sorted(letters)))}\\W\\d_]")


@lru_cache(maxsize=1)
def non_answer_phrases() -> frozenset[str]:
    text = (resources.files("kesheng.nlp") / "resources" / "non_answers.txt").read_text(encoding="utf-8")
    # Listed phrases go through the same folding as texts, so "n/a" in the file matches "N/A" and "n / a".
    return frozenset(_core(phrase) for line in text.splitlines() if not line.startswith("#") for phrase in line.split())


def is_non_answer(text: str) -> bool:
    """True when `text` says nothing to tag; False for empty or whitespace-only text, which is
    missing rather than a non-answer."""
    if not text or text.isspace():
        return False
    if _LETTER.search(text):
        if len(text) > _LONGEST_CHECKED or _letter_outside_phrases().search(text):
            return False
        return _core(text) in non_answer_phrases()
    return not any(is_emoji(c) for c in text) and _EMOTICON.search(text) is None
