"""The one output type every caller gets: CLI, batch files and the API."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Evidence", "Prediction"]


@dataclass(frozen=True)
class Evidence:
    """A span of the ORIGINAL text that pushed a tag: text[start:end] == self.text.

    `start`/`end` count Unicode code points (Python string indices). JavaScript strings count
    UTF-16 code units, where a character outside the Basic Multilingual Plane (most emoji, rare
    CJK) takes two, so the same span is also given as `start_utf16`/`end_utf16`.
    """

    tag: str
    start: int  # code points
    end: int
    text: str
    weight: float  # the span's share of the tag's score (model-specific, larger = stronger)
    start_utf16: int  # UTF-16 code units, for JavaScript clients
    end_utf16: int

    @classmethod
    def in_text(cls, tag: str, original: str, start: int, end: int, weight: float) -> "Evidence":
        """The span original[start:end], with its UTF-16 offsets."""
        before = _utf16_length(original[:start])
        return cls(tag, start, end, original[start:end], weight, before, before + _utf16_length(original[start:end]))

    def to_dict(self) -> dict:
        return {
            "tag": self.tag, "start": self.start, "end": self.end, "text": self.text, "weight": round(self.weight, 4),
            "start_utf16": self.start_utf16, "end_utf16": self.end_utf16,
        }


def _utf16_length(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


@dataclass(frozen=True)
class Prediction:
    tags: list[str]  # tags whose score reached the tag's threshold, in taxonomy order
    scores: dict[str, float]  # probability per tag, every tag of the taxonomy
    sentiment: str | None  # negative | neutral | positive; None for an empty or missing text
    sentiment_scores: dict[str, float] | None  # probability per sentiment, sums to 1; None when sentiment is None
    evidence: list[Evidence] = field(default_factory=list)  # spans per predicted tag, and tag "escalate" when escalated
    notes: list[str] = field(default_factory=list)  # what the model could not do as usual (empty text, truncation)
    # Needs a person now (threat, insult, safety or money harm). None when the text is empty or the
    # model has no escalate head (trained before it existed): unknown, never "no".
    escalate: bool | None = None
    escalate_score: float | None = None  # probability behind `escalate`; None when `escalate` is None

    def to_dict(self, id=None) -> dict:
        return {
            "id": id,
            "tags": list(self.tags),
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "sentiment": self.sentiment,
            "sentiment_scores": None if self.sentiment_scores is None else {k: round(v, 4) for k, v in self.sentiment_scores.items()},
            "evidence": [e.to_dict() for e in self.evidence],
            "notes": list(self.notes),
            "escalate": self.escalate,
            "escalate_score": None if self.escalate_score is None else round(self.escalate_score, 4),
        }
