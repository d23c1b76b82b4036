"""Atomic writes: a file or directory appears under its name complete, or not at all.

Every output kesheng writes for a user (reports, tagged files, suggestions, model directories,
progress records) goes through here, so a crash or a full disk never leaves half a file under
the real name, and every file gets the permissions a plain `open(path, "w")` would give
(0666 minus the umask): temporary files from `mkstemp` are owner-only, which would hide a
report from colleagues.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "default_file_mode", "replace_directory", "staging_directory", "write_atomic"]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def default_file_mode() -> int:
    """What `open(path, "w")` would create: 0666 minus the process umask."""
    return 0o666 & ~_umask()


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = ".part") -> Iterator[Path]:
    """A temporary path beside `target`; once the block ends without error it becomes `target`.

    The caller (or a library such as pyarrow or openpyxl) writes the temporary file by name; it
    is flushed to disk, given the default file mode and renamed over `target` in one step.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(temporary, default_file_mode())
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_atomic(target: str | os.PathLike, content: bytes | str, encoding: str = "utf-8") -> Path:
    """Write `content` to `target` atomically (text is encoded with `encoding`)."""
    data = content.encode(encoding) if isinstance(content, str) else content
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)
    return Path(target)


def staging_directory(target: str | os.PathLike) -> Path:
    """An empty directory beside `target` to build it in; `replace_directory` puts it in place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".incoming", dir=target.parent))


def replace_directory(staging: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move a finished staging directory to `target`, replacing what was there.

    The old directory is renamed aside first and removed only after the new one is in place,
    so at every moment `target` is either the complete old or the complete new directory.
    `mkdtemp` directories are owner-only; the result gets the default directory mode.
    """
    staging, target = Path(staging), Path(target)
    os.chmod(staging, 0o777 & ~_umask())
    if target.exists():
        backup = target.with_name(f".{target.name}.old")
        shutil.rmtree(backup, ignore_errors=True)
        target.rename(backup)
        staging.rename(target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        staging.rename(target)
    return target
