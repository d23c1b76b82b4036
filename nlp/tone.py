"""Tone and stakes signals that word and character n-grams miss.

Escalation (../shared/LABELING.md, `escalate`) is about tone and stakes. Three of its signals do
not survive normalization or are too varied for n-grams learned from a few hundred positives:

- runs of ！ and ？ (normalization collapses a run to one mark, and n-grams skip punctuation);
- profanity spelled with Latin letters or homophones (tmd, sb, 尼玛, 草泥马, 煞笔): each spelling
  is rare, together they are one signal;
- @-mentions (normalization removes them as noise) and naming a regulator, the media, a
  lawyer or the police: "@工信部" is the threat itself.

Each mark is a (feature, start, end) in ORIGINAL-text offsets; the featurizer maps them to the
normalized text. Feature names start with "t:".
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["TONE_FEATURES", "tone_marks"]

# Letters only count as a word on their own ("sb" in "usb" is not an insult).
_LATIN_PROFANITY = r"(?<![a-z])(?:tmd|tm|sb|nmb|cnm|nnd|mlgb|nmsl|rnm|wtf|fuck\w*|shit|2b|bitch)(?![a-z])"
_CHINESE_PROFANITY = (
    "他妈|他媽|她妈|特么|特麽|tm的|尼玛|你妈|泥马|草泥马|卧槽|我操|操你|艹|日你|傻逼|傻b|傻x|傻叉|煞笔|沙比|傻比|"
    "脑残|狗日|狗屎|王八蛋|混蛋|畜生|畜牲|去死|人渣|吃屎|婊子|贱人|不要脸|无耻|流氓|土匪|强盗|骗子"
)
_PROFANITY = re.compile(f"{_LATIN_PROFANITY}|{_CHINESE_PROFANITY}")
# Digits only count on their own ("3150元" is a price, not the 3·15 consumer-rights line).
_AUTHORITY = re.compile(
    r"工信部|工业和信息化部|通信管理局|通管局|消协|消费者协会|工商局|工商部门|市场监管|质监局|银监|银保监|保监会|"
    r"民航局|央视|cctv|人民日报|电视台|记者|媒体|曝光|律师|起诉|法院|打官司|报警|警察|公安|派出所|"
    r"(?<!\d)(?:12315|12345|12321|12300|315|110)(?!\d)"
)
_MENTION = re.compile(r"@[^\s@:：,，。!！?？]{1,30}")
_MARK_RUN = re.compile(r"[!?]{2,}")

TONE_FEATURES = ("t:!!", "t:!!!", "t:??", "t:?!", "t:profanity", "t:authority", "t:@mention", "t:@authority")


def tone_marks(original: str) -> list[tuple[str, int, int]]:
    """The tone features of a text, each with its [start, end) in `original`."""
    # NFKC keeps the length of ！？ and ASCII letters (one character each), so offsets still
    # index `original`; characters it would expand are compared as they are.
    folded = original.translate(_FOLDED)
    marks: list[tuple[str, int, int]] = []
    for run in _MARK_RUN.finditer(folded):
        a, b = run.span()
        chars = set(run.group())
        if chars == {"!"}:
            marks.append(("t:!!", a, b))
            if b - a >= 3:
                marks.append(("t:!!!", a, b))
        elif chars == {"?"}:
            marks.append(("t:??", a, b))
        else:
            marks.append(("t:?!", a, b))
    for match in _PROFANITY.finditer(folded):
        marks.append(("t:profanity", *match.span()))
    mentioned: list[tuple[int, int]] = []
    for match in _MENTION.finditer(folded):
        a, b = match.span()
        marks.append(("t:@mention", a, b))
        mentioned.append((a, b))
    for match in _AUTHORITY.finditer(folded):
        a, b = match.span()
        marks.append(("t:authority", a, b))
        if any(ma <= a and b <= mb for ma, mb in mentioned):
            marks.append(("t:@authority", a, b))
    return marks


def _fold(ch: str) -> str:
    folded = unicodedata.normalize("NFKC", ch).lower()
    return folded if len(folded) == 1 else ch.lower() if len(ch.lower()) == 1 else ch


class _FoldTable(dict):
    """`_fold` of each code point, computed once: `str.translate` then folds a whole text in C
    instead of normalizing it one character at a time in Python (a third of tone_marks' time)."""

    def __missing__(self, code: int) -> str:
        self[code] = folded = _fold(chr(code))
        return folded


_FOLDED = _FoldTable()
