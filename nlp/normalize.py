"""Normalization that remembers where every output character came from.

Evidence spans are found in the normalized text but must index the text the customer wrote,
so every step keeps, for each output character, the [start, end) range of original characters
it stands for. Steps that delete or collapse characters merge ranges; steps that map one
character to one character keep them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = ["NormalizedText", "char_table", "normalize"]


@dataclass(frozen=True)
class NormalizedText:
    """Normalized text plus, for each of its characters, the original [start, end) range."""

    original: str
    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a half-open span of the normalized text to a span of the original text."""
        if not 0 <= start < end <= len(self.text):
            raise ValueError(f"span [{start}, {end}) outside normalized text of length {len(self.text)}")
        return self.starts[start], self.ends[end - 1]


# Weibo links and mentions address the company, they say nothing about the service.
# A mention ends at whitespace or punctuation; "@了半天没人理" is a verb, not a mention.
_URL = re.compile(r"(?:https?://|www\.)[\w\-./?%&=#:~+]*[\w/]", re.ASCII | re.IGNORECASE)
_MENTION = re.compile(r"@(?![了过])[\w\u4e00-\u9fff\-]{1,30}")
# Emoji modifiers change nothing a classifier can use and split one emoji into several.
_EMOJI_MODIFIERS = re.compile("[\u200d\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200e\u200f\u2060\ufeff]")
_REPEATED_PUNCT = re.compile(r"([!?.,~;:\-…。，、；：～])\1+")
_WHITESPACE = re.compile(r"\s+")


def _fullwidth_to_halfwidth(code: int) -> int:
    if 0xFF01 <= code <= 0xFF5E:
        return code - 0xFEE0
    if code == 0x3000:
        return 0x20
    return code


@lru_cache(maxsize=1)
def char_table() -> dict[int, str]:
    """One-character translation table: full-width ASCII, traditional->simplified, controls.

    The traditional->simplified pairs come from OpenCC's character dictionary. Characters that
    are also valid simplified characters (著, 乾, 瞭 ...) are left alone: converting them needs
    phrase context, and a wrong conversion is worse than none.
    """
    dictionary = resources.files("opencc") / "dictionary"
    simplified_keys = set()
    for line in (dictionary / "STCharacters.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            simplified_keys.add(line.split("\t", 1)[0])
    table: dict[int, str] = {}
    for line in (dictionary / "TSCharacters.txt").read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != 2 or len(parts[0]) != 1:
            continue
        trad, candidates = parts[0], parts[1].split(" ")
        # 乾 -> "干 乾": when the character itself is a candidate, only context can decide.
        simp = candidates[0]
        if trad not in simplified_keys and trad not in candidates and len(simp) == 1:
            table[ord(trad)] = simp
    for code in range(0xFF01, 0xFF5F):
        table[code] = chr(_fullwidth_to_halfwidth(code)).lower()
    table[0x3000] = " "
    for code in range(ord("A"), ord("Z") + 1):
        table[code] = chr(code + 32)
    # Control characters become spaces so that words on either side stay apart.
    for code in list(range(0, 32)) + list(range(127, 160)):
        table[code] = " "
    for code in (0x2028, 0x2029):
        table[code] = " "
    return table


class _Builder:
    """Text plus per-character original ranges, rewritten step by step."""

    __slots__ = ("text", "starts", "ends")

    def __init__(self, text: str):
        self.text = text
        self.starts = list(range(len(text)))
        self.ends = list(range(1, len(text) + 1))

    def translate(self, table: dict[int, str]) -> None:
        # The table maps one character to exactly one character, so ranges do not move.
        self.text = self.text.translate(table)

    def sub(self, pattern: re.Pattern[str], replacement) -> None:
        """Replace every match; replacement characters cover the whole matched range."""
        text = self.text
        if pattern.search(text) is None:
            return
        pieces: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        last = 0
        for match in pattern.finditer(text):
            a, b = match.span()
            pieces.append(text[last:a])
            starts.extend(self.starts[last:a])
            ends.extend(self.ends[last:a])
            new = replacement(match) if callable(replacement) else replacement
            if new:
                pieces.append(new)
                starts.extend([self.starts[a]] * len(new))
                ends.extend([self.ends[b - 1]] * len(new))
            last = b
        pieces.append(text[last:])
        starts.extend(self.starts[last:])
        ends.extend(self.ends[last:])
        self.text = "".join(pieces)
        self.starts = starts
        self.ends = ends

    def strip(self) -> None:
        text = self.text
        left = len(text) - len(text.lstrip(" "))
        right = len(text.rstrip(" "))
        if left or right < len(text):
            self.text = text[left:right]
            self.starts = self.starts[left:right]
            self.ends = self.ends[left:right]


def normalize(text: str) -> NormalizedText:
    """Normalize customer text for tokenization, keeping an offset map to the original.

    Steps: full-width to half-width, lowercase Latin, traditional to simplified characters, URLs and @mentions removed, emoji modifiers
    and zero-width characters removed, runs of the same punctuation collapsed to one, control
    characters and whitespace runs collapsed to a single space, ends stripped.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize() needs a str, got {type(text).__name__}")
    builder = _Builder(text)
    builder.translate(char_table())
    if not builder.text.isascii():
        builder.sub(_ZERO_WIDTH, "")
        builder.sub(_EMOJI_MODIFIERS, "")
    builder.sub(_URL, " ")
    if "@" in builder.text:
        builder.sub(_MENTION, " ")
    builder.sub(_REPEATED_PUNCT, lambda m: m.group(1))
    builder.sub(_WHITESPACE, " ")
    builder.strip()
    return NormalizedText(text, builder.text, tuple(builder.starts), tuple(builder.ends))


def is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


def is_punctuation(char: str) -> bool:
    return unicodedata.category(char)[0] in "PS" and not is_emoji(char)


def is_emoji(char: str) -> bool:
    code = ord(char)
    return 0x1F000 <= code <= 0x1FAFF or 0x2600 <= code <= 0x27BF
