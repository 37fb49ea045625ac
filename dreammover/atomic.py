"""Atomic local writes: build under a unique temporary name, then rename into place (issue #15 item 3).

Every writer gets its own temporary name (a uuid, not the pid: threads of one process and containers
that all run as PID 1 share pids), so concurrent writers never write into each other's files; the
rename is atomic, so a reader sees the old content or the whole new one, never a half-written one.
"""
from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable


def temp_sibling(path: Path, tag: str = "partial") -> Path:
    """A unique hidden name beside `path` (same filesystem, so renaming it into place is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.{tag}")


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` whole or not at all; concurrent writers each win or lose as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def publish_folder(folder: str | Path, is_ready: Callable[[Path], bool], build: Callable[[Path], object]) -> Path:
    """`folder`, built by `build(temporary folder)` and renamed into place unless `is_ready(folder)` already.

    Processes that build at once each build their own copy; the first rename wins and the others
    discard theirs. A folder that exists but is not ready (an interrupted build of old code) is moved
    aside atomically and replaced.
    """
    folder = Path(folder)
    if is_ready(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(folder)
    try:
        build(tmp)
        while True:
            try:
                os.rename(tmp, folder)  # atomic; fails while `folder` exists and is not empty
                return folder
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            if is_ready(folder):
                return folder  # another process won the race: its copy is the same build, ours goes
            stale = temp_sibling(folder, "stale")
            try:
                os.rename(folder, stale)
            except FileNotFoundError:
                continue  # someone else moved it aside first
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
