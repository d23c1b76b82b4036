"""The words and two-word phrases of a comment that can name what it is about.

Theme labels and problem scenarios are made of these terms ("包装破损", "配送超时"): jieba
words of the normalized text without stopwords, particles, numbers and single characters, plus
each pair of adjacent content words joined, since a phrase names a scenario better than either
word ("电话" + "打不通").
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from kesheng.nlp.normalize import is_cjk, normalize
from kesheng.nlp.tokenize import WordTokenizer

__all__ = ["content_terms", "stopwords"]

# One character is too vague to name a theme, except adjectives that carry a whole complaint.
_SINGLE_CHARACTER_TERMS = frozenset("慢贵脏差冷凉咸淡辣甜酸苦吵乱旧破臭少硬软油腻馊丑假漏烂坏")
_NUMBER_LIKE = re.compile(r"^[\d.,%:/\-+]+|^[零一二三四五六七八九十百千万两几半]+[个次天分元块斤件年月日号小时本份瓶盒袋双条只台部箱张]")
_LONGEST_PHRASE = 8  # characters; a longer join of two words is usually two clauses, not a phrase


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    text = (resources.files("kesheng.nlp") / "resources" / "stopwords.txt").read_text(encoding="utf-8")
    return frozenset(word for line in text.splitlines() if not line.startswith("#") for word in line.split())


def _is_content(word: str, stop: frozenset[str]) -> bool:
    if word in stop or _NUMBER_LIKE.match(word):
        return False
    if len(word) == 1:
        return word in _SINGLE_CHARACTER_TERMS
    if any(is_cjk(c) for c in word):
        return True
    return word.isalpha() and len(word) >= 3  # Latin words: "wifi", "app"; not "ok", "le"


def content_terms(text: str, tokenizer: WordTokenizer | None = None) -> tuple[str, ...]:
    """Content words then adjacent-word phrases of `text`, in order of appearance (duplicates kept)."""
    if tokenizer is None:
        return _shared_terms(text)
    return _terms(text, tokenizer)


@lru_cache(maxsize=2**16)
def _shared_terms(text: str) -> tuple[str, ...]:
    # Theme discovery reads each text twice (its vector, then its theme's name): segment once.
    return _terms(text, WordTokenizer.shared())


def _terms(text: str, tokenizer: WordTokenizer) -> tuple[str, ...]:
    stop = stopwords()
    words = [word for word, _, _ in tokenizer.words(normalize(text).text)]
    kept = [word if _is_content(word, stop) else None for word in words]
    terms = [word for word in kept if word]
    terms += [a + b for a, b in zip(kept, kept[1:]) if a and b and len(a) + len(b) <= _LONGEST_PHRASE]
    return tuple(terms)
