"""The resume journal: a sidecar directory beside the output, `.<output name>.kesheng-partial/`.

    progress.json   what the run is (input SHA-256, settings, model version) and how far it got
    lock            an exclusive lock: two runs appending to one output would interleave rows
    data / part-*   the output committed so far (see `writers`)

Rerunning an interrupted command verifies progress.json against the input and the settings and
continues after the last committed chunk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kesheng.files.atomic import write_atomic
from kesheng.files.readers import InputFileError

__all__ = ["BrokenPartial", "PartialRun", "committed_rows", "partial_dir_for"]

PROGRESS_FILE = "progress.json"
LOCK_FILE = "lock"
DATA_FILE = "data"
PROGRESS_VERSION = 1


def partial_dir_for(target: Path) -> Path:
    return target.parent / f".{target.name}.kesheng-partial"


def committed_rows(target: Path) -> int:
    """Rows an interrupted run of `target` has committed (what a rerun resumes after); 0 when none."""
    try:
        state = json.loads((partial_dir_for(Path(target)) / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    rows = state.get("rows_done") if isinstance(state, dict) else None
    return rows if isinstance(rows, int) and rows > 0 else 0


class PartialRun:
    """The sidecar directory of one output: verified identity, committed chunks, problem counts."""

    def __init__(self, directory: Path, state: dict, lock):
        self.directory = directory
        self.state = state
        self.lock = lock

    @classmethod
    def begin(cls, target: Path, identity: dict, restart: bool, overwrite: bool) -> "PartialRun":
        directory = partial_dir_for(target)
        directory.mkdir(parents=True, exist_ok=True)
        lock = _lock(directory, target)
        try:
            return cls._begin_locked(target, directory, identity, restart, overwrite, lock)
        except BaseException:
            lock.close()
            raise

    @classmethod
    def _begin_locked(cls, target: Path, directory: Path, identity: dict, restart: bool, overwrite: bool, lock) -> "PartialRun":
        if target.exists() and not overwrite:
            # Another run finished this output between the caller's check and the lock.
            raise InputFileError(f"{target} exists; pass --overwrite to replace it")
        if restart:
            for stale in directory.iterdir():
                if stale.name != LOCK_FILE:
                    stale.unlink()
        if (directory / PROGRESS_FILE).exists():
            try:
                state = json.loads((directory / PROGRESS_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputFileError(f"{directory}: unreadable progress of an interrupted run ({exc}); pass --restart to discard it") from exc
            if state.get("identity") != identity:
                differs = _differences(state.get("identity") or {}, identity)
                raise InputFileError(
                    f"{directory} holds an interrupted run with a different {', '.join(differs)}; "
                    "rerun with the same input and options to resume it, or pass --restart to discard it"
                )
            return cls(directory, state, lock)
        run = cls(directory, {"version": PROGRESS_VERSION, "identity": identity, "chunks_done": 0, "rows_done": 0, "data_bytes": 0, "problems": {}}, lock)
        run.save()
        return run

    def save(self) -> None:
        write_atomic(self.directory / PROGRESS_FILE, json.dumps(self.state, ensure_ascii=False))

    def commit(self, result, data_bytes: int) -> None:
        """Record a chunk result (its index, rows and note rows) as durable."""
        state = self.state
        state["chunks_done"] = result.index + 1
        state["rows_done"] += result.rows
        state["data_bytes"] = data_bytes
        for kind, rows in result.problems.items():
            entry = state["problems"].setdefault(kind, {"count": 0, "rows": []})
            entry["count"] += len(rows)
            entry["rows"] = (entry["rows"] + rows)[:10]
        self.save()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.release()

    def release(self) -> None:
        self.lock.close()


def _lock(directory: Path, target: Path):
    """An exclusive lock on the sidecar: two runs appending to one output would interleave rows."""
    handle = open(directory / LOCK_FILE, "a+")
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one run per output is then up to the user
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise InputFileError(f"another kesheng tag is writing {target} right now ({directory} is locked); wait for it to finish or stop it") from None
    return handle


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    found = []
    for key in keys:
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            found += _differences(old[key], new[key], f"{prefix}{key}.")
        elif old.get(key) != new.get(key):
            found.append(f"{prefix}{key} ({old.get(key)!r} then, {new.get(key)!r} now)")
    return found or ["format"]


class BrokenPartial(InputFileError):
    """The sidecar's files disagree with its progress record (deleted or edited by hand)."""


