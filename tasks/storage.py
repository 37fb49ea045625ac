"""One small storage interface over URIs, with a local-filesystem and an S3 implementation.

Every input, cache artifact and output of the pipeline is named by a URI: a local path
(`/data/in`, `file:///data/in`) or `s3://bucket/key`. S3 goes through boto3 with the standard
AWS configuration chain (env vars, ~/.aws, instance roles); `AWS_ENDPOINT_URL` (or
`AWS_ENDPOINT_URL_S3`) points it at MinIO, R2 or a test server, and
`DREAMMOVER_S3_ADDRESSING_STYLE=path` forces path-style requests for servers that need them.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import random
import shutil
import stat
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Iterator, NamedTuple
from urllib.parse import urlparse


class StorageError(RuntimeError):
    """A storage operation failed for good (no bucket, no permission, no such object); the message names the URI."""


class TransientStorageError(StorageError):
    """A storage operation failed in a way that may pass (throttling, 5xx, connection lost): worth a retry."""


# Local errors that are not the caller's fault and may pass; permission / missing / read-only are permanent.
_TRANSIENT_OS = {errno.EAGAIN, errno.EINTR, errno.EIO, errno.EBUSY, errno.ETIMEDOUT}


def _local_error(what: str, uri: str, err: OSError) -> StorageError:
    kind = TransientStorageError if err.errno in _TRANSIENT_OS else StorageError
    return kind(f"cannot {what} {uri}: {err.strerror or err}")


def retry_transient(fn, *args, attempts: int = 6, base_delay: float = 1.0, max_delay: float = 16.0, **kwargs):
    """fn(*args, **kwargs), retried with jittered exponential backoff while it raises TransientStorageError.

    For storage calls made outside a Prefect task (the flow's own probes, lease operations), which
    have no task retry policy: the default waits about 1+2+4+8+16 s, enough for a 30 s outage on
    top of botocore's own retries. Permanent errors (no bucket, no permission, missing) raise at once.
    """
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except TransientStorageError:
            if attempt == attempts - 1:
                raise
            time.sleep(min(max_delay, base_delay * 2 ** attempt) * random.uniform(0.5, 1.5))


class ObjectInfo(NamedTuple):
    """What a listing says of one object: its version (as Storage.version gives it) and its size in bytes."""

    version: str
    size: int


class Storage(ABC):
    """A root (local folder or bucket + prefix); keys are '/'-separated paths relative to it."""

    @abstractmethod
    def uri(self, key: str = "") -> str: ...

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> str:
        """Write atomically (readers never see half an object); return the object's URI."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """All object keys under `prefix` (recursive), sorted, relative to this root."""

    def list_info(self, prefix: str = "") -> dict[str, ObjectInfo]:
        """Every key under `prefix` (as `list`) with its version and size, from the listing itself where the
        store gives them (S3's ETag and Size, a local stat), so no caller has to probe each object again."""
        return {key: ObjectInfo(self.version(key), len(self.read_bytes(key))) for key in self.list(prefix)}

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; no error if it is already gone."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Write only if no object exists at `key` (atomic test-and-set); False if one did."""

    @abstractmethod
    def version(self, key: str) -> str:
        """A cheap fingerprint of the object's content (size + mtime, or the S3 ETag), '' if missing."""

    # Compare-and-swap: what leases need so that exactly one of several racing runs wins.
    @abstractmethod
    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        """(content, version token) read together, or None if there is no object."""

    @abstractmethod
    def replace_if(self, key: str, data: bytes, version: str) -> bool:
        """Write `data` only if the object is still at `version` (atomically); False if it changed or is gone."""

    @abstractmethod
    def delete_if(self, key: str, version: str) -> bool:
        """Delete the object only if it is still at `version` (atomically); False if it changed or is gone."""

    def move(self, src: str, dst: str) -> str:
        """Publish `src` under `dst` in one step (readers of `dst` see the old or the whole new object)."""
        uri = self.write_bytes(dst, self.read_bytes(src))
        self.delete(src)
        return uri

    def download(self, key: str, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.read_bytes(key))
        return path

    def upload(self, path: str | Path, key: str) -> str:
        return self.write_bytes(key, Path(path).read_bytes())

    def publish_file(self, key: str, write: Callable[[Path], object]) -> str:
        """`write(path)` makes the object's content as a local file, published at `key` in one step; its URI.

        Written once: here into a temporary folder, then one atomic write (S3: one PUT). LocalStorage writes
        it beside the destination under a unique temporary name and renames it into place. A failed
        `write` publishes nothing.
        """
        with tempfile.TemporaryDirectory(prefix="dreammover-publish-") as tmp:
            path = Path(tmp) / Path(key).name  # same suffix: writers (ffmpeg) pick the format from it
            write(path)
            return self.upload(path, key)


def _temporary(path: Path) -> Path:
    """A hidden temporary name beside `path`, unique per call: threads of one process, and containers that
    all run as PID 1 on a shared volume, each get their own (a pid-based name collided)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")


def _stat_version(st: os.stat_result) -> str:
    """A local file's version: size + mtime (what `version` and a listing both give, so they compare equal)."""
    return f"{st.st_size}-{st.st_mtime_ns}"


def _info(st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(_stat_version(st), st.st_size)


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class LocalStorage(Storage):
    """A local folder: the embedded default, no services needed."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve() if key else self.root
        if path != self.root and self.root not in path.parents:
            raise StorageError(f"key {key!r} escapes {self.root}")
        return path

    def uri(self, key: str = "") -> str:
        return str(self._path(key))

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as err:
            raise StorageError(f"cannot read {self.uri(key)}: {err.strerror or err}") from err

    def write_bytes(self, key: str, data: bytes) -> str:
        path = self._path(key)
        tmp = _temporary(path)  # rename is atomic on one filesystem
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise _local_error("write", str(path), err) from err
        return str(path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as err:
            raise _local_error("delete", self.uri(key), err) from err

    def create(self, key: str, data: bytes) -> bool:
        # Written whole under a temporary name, then hard-linked into place (link fails if the key
        # exists): a reader never sees the object empty, which a lease reader would take for a dead one.
        path = self._path(key)
        tmp = _temporary(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as err:
            raise _local_error("write", str(path), err) from err
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return True

    def version(self, key: str) -> str:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return ""
        return _stat_version(st)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[Path]:
        """Hold the key's lock (flock on a hidden `.{name}.lock` beside it) across processes and threads.

        The lock file may be removed by delete_if while we wait for it, so after taking the lock
        we check that the path still names the file we locked, and start over if not.
        """
        path = self._path(key)
        lock = path.with_name(f".{path.name}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.stat(lock).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    yield lock
                    return
            finally:
                os.close(fd)  # closing releases the flock

    def _read_versioned(self, path: Path) -> tuple[bytes, str] | None:
        try:
            with open(path, "rb") as f:
                data = f.read()
                inode = os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            return None
        # The inode changes with every rename into place; the hash guards against inode reuse.
        return data, f"{inode}-{hashlib.sha256(data).hexdigest()}"

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            return self._read_versioned(self._path(key))
        except OSError as err:
            raise _local_error("read", self.uri(key), err) from err

    def replace_if(self, key: str, data: bytes, version: str) -> bool:
        path = self._path(key)
        try:
            with self._locked(key) as lock:
                current = self._read_versioned(path)
                if current is None:
                    lock.unlink()  # the key is gone: leave no lock file for it
                    return False
                if current[1] != version:
                    return False
                self.write_bytes(key, data)
                return True
        except OSError as err:
            raise _local_error("write", str(path), err) from err

    def delete_if(self, key: str, version: str) -> bool:
        path = self._path(key)
        try:
            with self._locked(key) as lock:
                current = self._read_versioned(path)
                if current is None:
                    lock.unlink()
                    return False
                if current[1] != version:
                    return False
                path.unlink()
                lock.unlink()  # waiters notice (inode check) and lock afresh: no lock files pile up
                return True
        except OSError as err:
            raise _local_error("delete", str(path), err) from err

    def move(self, src: str, dst: str) -> str:
        try:
            self._path(dst).parent.mkdir(parents=True, exist_ok=True)
            self._path(src).replace(self._path(dst))
        except OSError as err:
            raise _local_error("write", self.uri(dst), err) from err
        return self.uri(dst)

    def list(self, prefix: str = "") -> list[str]:
        return list(self.list_info(prefix))

    def list_info(self, prefix: str = "") -> dict[str, ObjectInfo]:
        base = self._path(prefix)
        if base.is_file():
            return {prefix: _info(base.stat())}
        if not base.is_dir():
            return {}
        found = {}
        for p in base.rglob("*"):
            if p.name.startswith("."):  # temporaries (.partial) and lock files are not objects
                continue
            try:
                st = p.stat()
            except FileNotFoundError:  # removed while we walked: not there
                continue
            if stat.S_ISREG(st.st_mode):
                found[p.relative_to(self.root).as_posix()] = _info(st)
        return dict(sorted(found.items()))

    def publish_file(self, key: str, write: Callable[[Path], object]) -> str:
        # Written in place under a unique hidden name (never listed), then renamed: one write, atomic.
        path = self._path(key)
        tmp = path.with_name(f".{uuid.uuid4().hex}.{path.name}")  # keeps the suffix the writer goes by
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
            tmp.replace(path)
        except OSError as err:
            raise _local_error("write", str(path), err) from err
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return str(path)

    def download(self, key: str, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(self._path(key), path)
        except OSError as err:
            raise StorageError(f"cannot read {self.uri(key)}: {err.strerror or err}") from err
        return path


def open_storage(uri: str | Path) -> Storage:
    """The storage rooted at `uri`: s3://bucket/prefix, file:///path or a plain local path."""
    uri = str(uri)
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"{uri}: no bucket in S3 URI")
        return S3Storage(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return LocalStorage(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # 'C:' style drive letters are local paths
        raise StorageError(f"{uri}: unsupported storage scheme {parsed.scheme!r} (use a local path or s3://)")
    return LocalStorage(uri)


def split_uri(uri: str | Path) -> tuple[Storage, str]:
    """(storage of the parent, object name) for a URI naming one object."""
    uri = str(uri).rstrip("/")
    parent, _, name = uri.rpartition("/")
    if not name:
        raise StorageError(f"{uri}: not an object URI")
    if uri.startswith("s3://") and "/" not in uri[5:]:
        raise StorageError(f"{uri}: names a bucket, not an object")
    return open_storage(parent or "."), name


def read_uri(uri: str) -> bytes:
    store, name = split_uri(uri)
    return store.read_bytes(name)


def write_uri(uri: str, data: bytes) -> str:
    store, name = split_uri(uri)
    return store.write_bytes(name, data)


def uri_exists(uri: str) -> bool:
    store, name = split_uri(uri)
    return store.exists(name)


def is_remote(uri: str) -> bool:
    return str(uri).startswith("s3://")


# The S3 implementation lives in its own module; these names stay importable from here.
from .s3_storage import S3Storage, _s3_error, s3_client  # noqa: E402,F401
