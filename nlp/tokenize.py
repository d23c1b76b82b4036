"""jieba word tokenization with a domain dictionary, offsets and negation scope.

Segmentation runs on jieba-rs (the `rjieba` binding) when it is installed: the same algorithm and
dictionary as jieba, about 6 times faster, and tokenization was 40% of the fast model's predict
time. On 30,000 real comments the two segment all but 12 (0.04%) identically: ties in a run of
one repeated character (擦擦擦擦, 最最最最) split the other way, and a few rare dictionary words
(较理想, 课前) are cut in two (`benchmarks/tokenizer_parity.py`). Without rjieba, jieba runs.
"""

from __future__ import annotations

import logging
import re
import threading
from importlib import resources
from typing import NamedTuple

import jieba

from kesheng.nlp.normalize import is_punctuation

try:
    import rjieba
except ImportError:  # a platform without its wheel: jieba's own (slower) segmentation
    rjieba = None

__all__ = ["BACKENDS", "NEGATORS", "Token", "WordTokenizer"]

jieba.setLogLevel(logging.WARNING)

# Words that flip the meaning of what follows: 不慢 is not slow, 没等多久 is no wait.
# Words that merely start with 不/没 (不耐烦, 没用, 不行) are dictionary words of their own and
# are therefore not negators.
NEGATORS = frozenset(
    "不 没 没有 无 未 别 勿 非 并不 并没有 从不 从没 从来不 从来没有 毫无 一点也不 一点都不 "
    "绝不 决不 不太 不算 不会 不用 无需 不必 没什么".split()
)
# Negation reaches a few words forward and never past a clause boundary.
NEGATION_SCOPE = 3

# Weibo emoticon codes such as [怒] or [微笑] carry sentiment and must stay one token.
_PROTECTED = re.compile(r"\[[\u4e00-\u9fffa-z]{1,6}\]")
# A user-dictionary line as jieba reads it: the word, then optionally a frequency and a POS tag.
_USER_DICT_LINE = re.compile(r"^(.+?)( [0-9]+)?( [a-z]+)?$")

BACKENDS = ("rjieba", "jieba")


class Token(NamedTuple):
    """A word of the normalized text: [start, end) into it; negated when inside a negation scope."""

    word: str
    start: int
    end: int
    negated: bool = False


class WordTokenizer:
    """jieba with the domain user dictionary, one private dictionary per instance.

    jieba's module-level tokenizer is global state; a private `jieba.Tokenizer` keeps the
    domain words from leaking into (or being changed by) other users of jieba in the process.
    """

    _shared: "WordTokenizer | None" = None
    _shared_lock = threading.Lock()

    def __init__(self, hmm: bool = False, user_dict: str | None = None, backend: str | None = None):
        self.hmm = hmm
        self.user_dict = user_dict
        self.backend = backend or ("rjieba" if rjieba is not None else "jieba")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r}: use one of {list(BACKENDS)}")
        if self.backend == "rjieba" and rjieba is None:
            raise ImportError("the rjieba backend needs the rjieba package: pip install rjieba")
        if user_dict is None:
            with resources.as_file(resources.files("kesheng.nlp") / "resources" / "userdict.txt") as path:
                self._load(str(path))
        else:
            self._load(user_dict)

    def _load(self, user_dict: str) -> None:
        if self.backend == "jieba":
            self._jieba = jieba.Tokenizer()
            self._jieba.initialize()
            self._jieba.load_userdict(user_dict)
            return
        self._rjieba = rjieba.Jieba()
        with open(user_dict, encoding="utf-8") as handle:
            for line in handle:
                match = _USER_DICT_LINE.match(line.strip().lstrip("\ufeff"))
                if match is None:
                    continue
                word, freq, tag = match.groups()
                # Without a frequency, both libraries give the word just enough to be cut whole.
                self._rjieba.add_word(word, int(freq) if freq else None, tag.strip() if tag else None)

    def __reduce__(self):
        # The Rust dictionary does not pickle: a copy sent to another process rebuilds it (0.15 s).
        return (type(self), (self.hmm, self.user_dict, self.backend))


    @classmethod
    def shared(cls, hmm: bool = False) -> "WordTokenizer":
        """Process-wide instance with the bundled dictionary: building one costs about a second."""
        with cls._shared_lock:
            if cls._shared is None or cls._shared.hmm != hmm:
                cls._shared = cls(hmm=hmm)
            return cls._shared

    def words(self, text: str) -> list[tuple[str, int, int]]:
        """Raw (word, start, end) triples, whitespace dropped, Weibo codes kept whole."""
        out: list[tuple[str, int, int]] = []
        last = 0
        for match in _PROTECTED.finditer(text):
            out.extend(self._segment(text[last : match.start()], last))
            out.append((match.group(), match.start(), match.end()))
            last = match.end()
        out.extend(self._segment(text[last:], last))
        return out

    def _segment(self, text: str, offset: int) -> list[tuple[str, int, int]]:
        if self.backend == "rjieba":
            # jieba-rs gives each word's character offsets itself.
            return [(word, start + offset, end + offset) for word, start, end in self._rjieba.tokenize(text, "default", self.hmm) if not word.isspace()]
        out = []
        position = offset
        for word in self._jieba.cut(text, HMM=self.hmm):
            end = position + len(word)
            if not word.isspace():
                out.append((word, position, end))
            position = end
        return out

    def tokenize(self, text: str) -> list[Token]:
        """Words with negation scope marked: words after a negator, up to a clause boundary."""
        # tuple.__new__ skips NamedTuple's Python-level constructor: a comment has dozens of words
        # and this loop was half the fast model's tokenization time.
        make = tuple.__new__
        tokens: list[Token] = []
        scope = 0
        for word, start, end in self.words(text):
            if word in NEGATORS:
                tokens.append(make(Token, (word, start, end, False)))
                scope = NEGATION_SCOPE
            elif not scope:
                tokens.append(make(Token, (word, start, end, False)))
            elif len(word) == 1 and is_punctuation(word):
                tokens.append(make(Token, (word, start, end, False)))
                scope = 0
            else:
                tokens.append(make(Token, (word, start, end, True)))
                scope -= 1
        return tokens
