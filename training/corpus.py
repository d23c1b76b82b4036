"""Readers for the public corpora the team labels (texts are read from the user's copy).

Row ids:
- `stc3-<dialogue id>`: NTCIR-14 STC-3 DCH-1 dialogue; the comment is ALL customer turns of
  the dialogue joined with newlines (follow-up turns are where "still not solved" shows up),
  the helpdesk's replies left out;
- `waimai-<n>`, `hotel-<n>`, `shopping-<n>`: the `id` column of the review CSVs.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

__all__ = ["CORPUS_ENV", "CorpusError", "SOURCES", "read_corpus", "resolve_corpus_dir", "source_of"]

CORPUS_ENV = "KESHENG_CORPUS_DIR"
SOURCES = {
    "stc3": "stc3_dch1_train.json",
    "waimai": "waimai_10k.csv",
    "hotel": "hotel_reviews.csv",
    "shopping": "online_shopping_10_cats.csv",
}


class CorpusError(ValueError):
    """A corpus file is missing or not in the expected format."""


def resolve_corpus_dir(corpus_dir: str | os.PathLike | None) -> Path:
    chosen = corpus_dir or os.environ.get(CORPUS_ENV)
    if not chosen:
        raise CorpusError(f"no corpus directory: pass --corpus-dir or set ${CORPUS_ENV}")
    path = Path(chosen)
    if not path.is_dir():
        raise CorpusError(f"corpus directory {path} does not exist")
    return path


def source_of(row_id: str) -> str:
    return row_id.split("-", 1)[0]


def _read_stc3(path: Path) -> dict[str, str]:
    try:
        dialogues = json.loads(path.read_text(encoding="utf-8"))
        texts = {}
        for dialogue in dialogues:
            turns = ["".join(t["utterances"]) for t in dialogue["turns"] if t["sender"] == "customer"]
            texts[f"stc3-{dialogue['id']}"] = "\n".join(turns)
        return texts
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CorpusError(f"{path}: not an STC-3 dialogue file (list of {{id, turns[{{sender, utterances}}]}}): {exc!r}") from exc


def _read_reviews(path: Path) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"id", "review"} <= set(reader.fieldnames):
                raise CorpusError(f"{path}: expected columns 'id' and 'review', found {reader.fieldnames}")
            return {row["id"]: row["review"] or "" for row in reader}
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 ({exc.reason})") from exc


def read_corpus(corpus_dir: str | os.PathLike | None, sources: list[str] | None = None) -> dict[str, str]:
    """id -> comment text for the requested sources (all by default)."""
    directory = resolve_corpus_dir(corpus_dir)
    texts: dict[str, str] = {}
    for source in sources or list(SOURCES):
        if source not in SOURCES:
            raise CorpusError(f"unknown source {source!r}; known: {sorted(SOURCES)}")
        path = directory / SOURCES[source]
        if not path.is_file():
            raise CorpusError(f"{directory}: missing {SOURCES[source]} (needed for {source}-* ids)")
        texts.update(_read_stc3(path) if source == "stc3" else _read_reviews(path))
    return texts
