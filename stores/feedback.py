"""The label store: corrected labels from agents, appended durably, read by retraining.

SQLite in WAL mode with synchronous=FULL: `append` returns only after the row is on disk, so
an acknowledged correction survives a crash or a kill of the serving process. Several serving
processes may append to one file; SQLite serializes the writers.

Each row records which tags the annotator judged (`judged_tags`, the taxonomy of the model
they were correcting). A tag added to the taxonomy later is unknown for old rows, not 0.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from kesheng.models.schema import SENTIMENTS

__all__ = ["FeedbackRecord", "FeedbackStore", "FeedbackStoreError"]

SCHEMA_VERSION = 2  # 2 added `escalate`; a version-1 store is migrated in place when opened

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    comment_id TEXT,
    text TEXT NOT NULL,
    tags TEXT NOT NULL,
    judged_tags TEXT NOT NULL,
    sentiment TEXT,
    model_version TEXT,
    annotator TEXT,
    note TEXT,
    escalate INTEGER
);
CREATE TABLE IF NOT EXISTS store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class FeedbackStoreError(Exception):
    """The store file cannot be opened or is not a kesheng label store."""


@dataclass(frozen=True)
class FeedbackRecord:
    seq: int  # insertion order, unique; retraining can read "everything after seq N"
    received_at: str  # UTC, ISO 8601
    comment_id: str | None  # the caller's id for the comment (ticket id), if given
    text: str
    tags: tuple[str, ...]  # tags that apply
    judged_tags: tuple[str, ...]  # tags the annotator decided on; a tag outside this set is unknown
    sentiment: str | None  # None: sentiment not judged
    model_version: str | None  # the model whose output was corrected
    annotator: str | None
    note: str | None
    escalate: bool | None = None  # None: escalation not judged

    def label(self, tag: str) -> int:
        """1 / 0 for a judged tag, -1 (unknown) for a tag the annotator never saw."""
        if tag not in self.judged_tags:
            return -1
        return int(tag in self.tags)


class FeedbackStore:
    """Append-only label store in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit, so a commit is exactly one append.
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO store_info (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            version = self._db.execute("SELECT value FROM store_info WHERE key = 'schema_version'").fetchone()[0]
            if version == "1":
                # Old rows keep escalate NULL: not judged, never "no".
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("ALTER TABLE feedback ADD COLUMN escalate INTEGER")
                self._db.execute("UPDATE store_info SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
                self._db.execute("COMMIT")
                version = str(SCHEMA_VERSION)
        except sqlite3.DatabaseError as exc:
            raise FeedbackStoreError(f"{self.path}: cannot open as a label store ({exc})") from exc
        except OSError as exc:
            raise FeedbackStoreError(f"{self.path}: {exc}") from exc
        if version != str(SCHEMA_VERSION):
            raise FeedbackStoreError(f"{self.path}: label store schema {version}, this kesheng reads {SCHEMA_VERSION}")
        self._lock = threading.Lock()

    def append(
        self,
        text: str,
        tags: Sequence[str],
        judged_tags: Sequence[str],
        sentiment: str | None = None,
        comment_id: str | None = None,
        model_version: str | None = None,
        annotator: str | None = None,
        note: str | None = None,
        escalate: bool | None = None,
    ) -> FeedbackRecord:
        """Store one correction; returns after the row is durable."""
        unknown = sorted(set(tags) - set(judged_tags))
        if unknown:
            raise ValueError(f"tags {unknown} are not among the judged tags {list(judged_tags)}")
        if sentiment is not None and sentiment not in SENTIMENTS:
            raise ValueError(f"sentiment {sentiment!r} is not one of {list(SENTIMENTS)}")
        received_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        row = (
            received_at,
            comment_id,
            text,
            json.dumps(list(tags), ensure_ascii=False),
            json.dumps(list(judged_tags), ensure_ascii=False),
            sentiment,
            model_version,
            annotator,
            note,
            None if escalate is None else int(bool(escalate)),
        )
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO feedback (received_at, comment_id, text, tags, judged_tags, sentiment, model_version, "
                "annotator, note, escalate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            seq = cursor.lastrowid
        return FeedbackRecord(
            seq, received_at, comment_id, text, tuple(tags), tuple(judged_tags), sentiment, model_version, annotator, note,
            None if escalate is None else bool(escalate),
        )

    def records(self, after_seq: int = 0) -> Iterator[FeedbackRecord]:
        """Every stored correction in insertion order (optionally only those after `after_seq`)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, received_at, comment_id, text, tags, judged_tags, sentiment, model_version, annotator, note, "
                "escalate FROM feedback WHERE seq > ? ORDER BY seq",
                (after_seq,),
            ).fetchall()
        for seq, received_at, comment_id, text, tags, judged, sentiment, version, annotator, note, escalate in rows:
            yield FeedbackRecord(
                seq, received_at, comment_id, text, tuple(json.loads(tags)), tuple(json.loads(judged)), sentiment, version,
                annotator, note, None if escalate is None else bool(escalate),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "FeedbackStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
