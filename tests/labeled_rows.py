"""Small labeled rows written by the tests themselves."""

import json
from pathlib import Path

TAGS = ("slow_response", "unresolved", "attitude", "opacity")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def labeled(text: str, tags=(), sentiment="negative", id=None) -> dict:
    row = {"text": text, "sentiment": sentiment, **{t: int(t in tags) for t in TAGS}}
    if id is not None:
        row["id"] = id
    return row
