"""The label schema: problem tags (multi-label, none = other) and sentiment.

The tag set is data, not code: a taxonomy file (models/resources/taxonomy.json is the default;
training reads the one its config names) lists the tags with Chinese names and descriptions,
plus `renamed` (old label name -> tag) and `retired` (removed tags whose old labels are dropped
on purpose). A trained model stores the taxonomy it was trained with, so reports and the API
always show the tags of the model in use, not of the code that happens to load it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

__all__ = ["DEFAULT_TAXONOMY", "ESCALATE", "ESCALATE_ZH", "OTHER_ZH", "SENTIMENTS", "TagSpec", "Taxonomy", "TaxonomyError", "UnknownLabelError", "sentiment_name"]

TAXONOMY_FORMAT_VERSION = 1


class TaxonomyError(ValueError):
    """A taxonomy file is unreadable or inconsistent; the message says what to fix."""


class UnknownLabelError(TaxonomyError):
    """Labels name a tag the taxonomy neither defines, renames nor retires."""

SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
SENTIMENT_ZH = {"negative": "负面", "neutral": "中性", "positive": "正面"}
_SENTIMENT_NAMES = {**{s: s for s in SENTIMENTS}, **{zh: s for s, zh in SENTIMENT_ZH.items()}}


def sentiment_name(value: object) -> str | None:
    """A sentiment given by its machine or Chinese name (负面/中性/正面) as its machine name; None if neither."""
    return _SENTIMENT_NAMES.get(value) if isinstance(value, str) else None


# The fifth label of ../shared/LABELING.md: a message a person must handle now (threat to go to a
# regulator or the media, insult, safety or money harm, angry cancellation). It is a flag beside
# the tags, not a tag: it is judged from tone and stakes, and a calm complaint with any tags is
# not escalated, so it never enters the problem shares.
ESCALATE = "escalate"
ESCALATE_ZH = "需升级处理"

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
    # Label names used before a rename, mapped to the current tag: old label files keep counting.
    renamed: tuple[tuple[str, str], ...] = ()
    # Tags removed on purpose: their labels in old files are dropped instead of being an error.
    retired: tuple[str, ...] = ()

    def __post_init__(self):
        names = [t.name for t in self.tags]
        if not names:
            raise TaxonomyError("a taxonomy needs at least one tag")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise TaxonomyError(f"duplicate tag names in taxonomy: {duplicates}")
        if ESCALATE in names:
            raise TaxonomyError(f"{ESCALATE!r} is not a tag: it is the escalation flag every model predicts beside the tags; name the tag differently")
        for tag in self.tags:
            if not tag.name.isidentifier() or not tag.name.islower() or not tag.name.isascii() or len(tag.name) > 40:
                raise TaxonomyError(f"tag name {tag.name!r} must be a lowercase ASCII identifier (letters, digits, _), at most 40 chars")
            if not tag.zh.strip():
                raise TaxonomyError(f"tag {tag.name!r} needs a Chinese name (zh)")
        for old, new in self.renamed:
            if old in names:
                raise TaxonomyError(f"renamed: {old!r} is still a tag; a rename maps an old label name to a new tag")
            if new not in names:
                raise TaxonomyError(f"renamed: {old!r} -> {new!r}, but {new!r} is not a tag of this taxonomy")
        for name in self.retired:
            if name in names:
                raise TaxonomyError(f"retired: {name!r} is still a tag; remove it from tags or from retired")
            if name in dict(self.renamed):
                raise TaxonomyError(f"{name!r} is both renamed and retired")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tags)

    def zh(self, name: str) -> str:
        for tag in self.tags:
            if tag.name == name:
                return tag.zh
        raise KeyError(f"unknown tag {name!r}; known: {list(self.names)}")

    def label_name(self, name: str) -> str | None:
        """The tag a label name counts for: itself, its Chinese name's tag, its new name, or None when retired.

        Raises UnknownLabelError for anything else, so a taxonomy that drops a tag still
        present in the labels fails before training instead of silently losing the labels.
        """
        if name in self.names:
            return name
        by_zh = {t.zh: t.name for t in self.tags}
        if name in by_zh:
            return by_zh[name]
        renamed = dict(self.renamed)
        if name in renamed:
            return renamed[name]
        if name in self.retired:
            return None
        raise UnknownLabelError(
            f"label {name!r} is not a tag of the taxonomy {list(self.names)}: add it to the taxonomy's tags, "
            f"map it under \"renamed\", or list it under \"retired\" to drop its labels"
        )

    def is_label_name(self, name: str) -> bool:
        return name in self.names or name in {t.zh for t in self.tags} or name in dict(self.renamed) or name in self.retired

    def to_list(self) -> list[dict]:
        return [asdict(t) for t in self.tags]

    def to_file_dict(self) -> dict:
        return {
            "version": TAXONOMY_FORMAT_VERSION,
            "tags": self.to_list(),
            "renamed": dict(self.renamed),
            "retired": list(self.retired),
        }

    @classmethod
    def from_list(cls, items: list[dict], renamed: dict | None = None, retired: list | None = None) -> "Taxonomy":
        try:
            tags = tuple(TagSpec(name=i["name"], zh=i["zh"], description=i.get("description", "")) for i in items)
        except (KeyError, TypeError) as exc:
            raise TaxonomyError(f"malformed taxonomy entry (each tag needs name and zh): {exc!r}") from exc
        return cls(tags, tuple(sorted((renamed or {}).items())), tuple(retired or ()))

    @classmethod
    def from_file(cls, path: str | Path) -> "Taxonomy":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise TaxonomyError(f"taxonomy file {path}: {exc.strerror or exc}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TaxonomyError(f"taxonomy file {path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("tags"), list):
            raise TaxonomyError(f"taxonomy file {path}: expected an object with a \"tags\" list")
        unknown = sorted(set(data) - {"version", "tags", "renamed", "retired"})
        if unknown:
            raise TaxonomyError(f"taxonomy file {path}: unknown keys {unknown}")
        if data.get("version", TAXONOMY_FORMAT_VERSION) != TAXONOMY_FORMAT_VERSION:
            raise TaxonomyError(f"taxonomy file {path}: version {data.get('version')!r}, expected {TAXONOMY_FORMAT_VERSION}")
        renamed, retired = data.get("renamed") or {}, data.get("retired") or []
        if not isinstance(renamed, dict) or not isinstance(retired, list):
            raise TaxonomyError(f"taxonomy file {path}: \"renamed\" must be an object and \"retired\" a list")
        try:
            return cls.from_list(data["tags"], renamed, retired)
        except TaxonomyError as exc:
            raise TaxonomyError(f"taxonomy file {path}: {exc}") from exc


def bundled_taxonomy_path() -> Path:
    return Path(str(resources.files("kesheng.models") / "resources" / "taxonomy.json"))


# The four service-quality problems of the reports; other tag sets are taxonomy files.
DEFAULT_TAXONOMY = Taxonomy.from_file(bundled_taxonomy_path())
