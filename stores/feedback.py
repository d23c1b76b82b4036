"""The label store: corrected labels from agents, appended durably, read by retraining.

SQLite in WAL mode with synchronous=FULL: `append` returns only after the row is on disk, so
an acknowledged correction survives a crash or a kill of the serving process. Several serving
processes may append to one file; SQLite serializes the writers.

Each row records which tags the annotator judged (`judged_tags`, the taxonomy of the model
they were correcting). A tag added to the taxonomy later is unknown for old rows, not 0.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from kesheng.models.schema import SENTIMENTS

__all__ = ["FeedbackRecord", "FeedbackStore", "FeedbackStoreError"]

log = logging.getLogger("kesheng.stores")

# Corrections hold customers' words: owner read-write, group read (a retraining job), nobody else.
# SQLite gives its -wal and -shm files the mode of the database file.
FILE_MODE = 0o640
# Below this much free space an append would soon fail with "database or disk is full".
MIN_FREE_BYTES = 1 << 20

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
    """The store file cannot be opened, is not a kesheng label store, or cannot take a write now."""


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
            _create_private(self.path)
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
            try:
                cursor = self._db.execute(
                    "INSERT INTO feedback (received_at, comment_id, text, tags, judged_tags, sentiment, model_version, "
                    "annotator, note, escalate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            except sqlite3.Error as exc:  # disk full, read-only file or directory, I/O error: nothing was stored
                raise FeedbackStoreError(f"{self.path}: {exc}") from exc
            seq = cursor.lastrowid
        return FeedbackRecord(
            seq, received_at, comment_id, text, tuple(tags), tuple(judged_tags), sentiment, model_version, annotator, note,
            None if escalate is None else bool(escalate),
        )

    def write_problem(self) -> str | None:
        """None when an append would be stored now; else why not (no space left, read-only file or directory)."""
        try:
            usage = os.statvfs(self.path.parent)
        except OSError as exc:
            return f"{self.path.parent}: {exc.strerror}"
        free = usage.f_bavail * usage.f_frsize
        if free < MIN_FREE_BYTES:
            return f"{self.path}: {free:,} bytes free on its disk"
        with self._lock:
            try:
                # Takes the write lock without writing: refused on a read-only file or directory.
                self._db.execute("PRAGMA busy_timeout = 1000")
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    return None  # another process is writing: the store takes writes
                return f"{self.path}: {exc}"
            finally:
                self._db.execute("PRAGMA busy_timeout = 30000")
        return None

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


def _create_private(path: Path) -> None:
    """Create the store file owner-and-group only; take world access away from an existing one."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        return
    except FileExistsError:
        pass
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = file.stat().st_mode & 0o777
            if mode & 0o007:
                os.chmod(file, mode & ~0o007)
                log.warning("%s was readable by every user (mode %o); now %o", file, mode, mode & ~0o007)
        except FileNotFoundError:
            continue
        except PermissionError:
            log.warning("%s is readable by every user (mode %o) and not ours to change", file, mode)
