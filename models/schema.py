"""The label schema: problem tags (multi-label, none = other) and sentiment, defined once.

A trained model stores the taxonomy it was trained with, so reports and the API always show
the tags of the model in use, not of the code that happens to load it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["DEFAULT_TAXONOMY", "OTHER_ZH", "SENTIMENTS", "TagSpec", "Taxonomy"]

SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
SENTIMENT_ZH = {"negative": "负面", "neutral": "中性", "positive": "正面"}
# Reports list comments without any tag under this name.
OTHER_ZH = "其他"


@dataclass(frozen=True)
class TagSpec:
    name: str  # machine name used in files and the API, e.g. "slow_response"
    zh: str  # Chinese name used in reports, e.g. "响应缓慢"
    description: str  # one line for label guides and the API's /v1/model


@dataclass(frozen=True)
class Taxonomy:
    tags: tuple[TagSpec, ...]

    def __post_init__(self):
        names = [t.name for t in self.tags]
        if not names:
            raise ValueError("a taxonomy needs at least one tag")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate tag names in taxonomy: {duplicates}")
        for name in names:
            if not name.isidentifier() or not name.islower():
                raise ValueError(f"tag name {name!r} must be a lowercase identifier (letters, digits, _)")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tags)

    def zh(self, name: str) -> str:
        for tag in self.tags:
            if tag.name == name:
                return tag.zh
        raise KeyError(f"unknown tag {name!r}; known: {list(self.names)}")

    def to_list(self) -> list[dict]:
        return [asdict(t) for t in self.tags]

    @classmethod
    def from_list(cls, items: list[dict]) -> "Taxonomy":
        try:
            return cls(tuple(TagSpec(name=i["name"], zh=i["zh"], description=i.get("description", "")) for i in items))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed taxonomy entry: {exc}") from exc


DEFAULT_TAXONOMY = Taxonomy(
    (
        TagSpec("slow_response", "响应缓慢", "waiting, slow replies, slow handling or late delivery by the provider"),
        TagSpec("unresolved", "解决不彻底", "a problem still open after contact: repeated contacts, transfers, broken promises"),
        TagSpec("attitude", "服务态度", "staff rude, impatient, indifferent, perfunctory or shirking responsibility"),
        TagSpec("opacity", "信息不透明", "unexplained charges, unclear or misleading information, no notification or reason"),
    )
)
