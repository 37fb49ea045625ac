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
import os
import random
import shutil
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import urlparse


class StorageError(RuntimeError):
    """A storage operation failed for good (no bucket, no permission, no such object); the message names the URI."""


class TransientStorageError(StorageError):
    """A storage operation failed in a way that may pass (throttling, 5xx, connection lost): worth a retry."""


# S3 error codes that mean "try again later"; everything else (AccessDenied, NoSuchBucket, ...) is permanent.
_TRANSIENT_S3 = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                 "InternalError", "ServiceUnavailable", "503", "500", "502", "504"}
# Local errors that are not the caller's fault and may pass; permission / missing / read-only are permanent.
_TRANSIENT_OS = {errno.EAGAIN, errno.EINTR, errno.EIO, errno.EBUSY, errno.ETIMEDOUT}


def _local_error(what: str, uri: str, err: OSError) -> StorageError:
    kind = TransientStorageError if err.errno in _TRANSIENT_OS else StorageError
    return kind(f"cannot {what} {uri}: {err.strerror or err}")


def _s3_error(what: str, uri: str, err: Exception) -> StorageError:
    """Sort a botocore error into transient or permanent, naming the URI and the code, never credentials."""
    from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError

    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code"))
        status = str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        kind = TransientStorageError if code in _TRANSIENT_S3 or status.startswith("5") else StorageError
        return kind(f"cannot {what} {uri}: {code}")
    if isinstance(err, (BotoConnectionError, HTTPClientError, ConnectionError, TimeoutError)):
        return TransientStorageError(f"cannot {what} {uri}: {type(err).__name__}")
    return StorageError(f"cannot {what} {uri}: {type(err).__name__}: {err}")


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

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; no error if it is already gone."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Write only if no object exists at `key` (atomic test-and-set); False if one did."""

    @abstractmethod
    def version(self, key: str) -> str:
        """A cheap fingerprint of the object's content (size + mtime, or the S3 ETag), '' if missing."""

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
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")  # rename is atomic on one filesystem
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
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
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
        return f"{st.st_size}-{st.st_mtime_ns}"

    def move(self, src: str, dst: str) -> str:
        try:
            self._path(dst).parent.mkdir(parents=True, exist_ok=True)
            self._path(src).replace(self._path(dst))
        except OSError as err:
            raise _local_error("write", self.uri(dst), err) from err
        return self.uri(dst)

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix)
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        keys = [p.relative_to(self.root).as_posix() for p in base.rglob("*")
                if p.is_file() and not p.name.startswith(".")]
        return sorted(keys)

    def download(self, key: str, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(self._path(key), path)
        except OSError as err:
            raise StorageError(f"cannot read {self.uri(key)}: {err.strerror or err}") from err
        return path


class S3Storage(Storage):
    """An S3 bucket + prefix (AWS, MinIO, R2, ...), via boto3 and the standard credential chain."""

    def __init__(self, bucket: str, prefix: str = "", client=None):
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = client or s3_client()

    def _key(self, key: str) -> str:
        return _join(self.prefix, key)

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as err:
            raise _s3_error("read", self.uri(key), err) from err

    def write_bytes(self, key: str, data: bytes) -> str:
        # A single PUT is atomic in S3: readers see the old object or the whole new one.
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as err:
            raise _s3_error("write", self.uri(key), err) from err
        return self.uri(key)

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if err.response["Error"].get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise _s3_error("read", self.uri(key), err) from err
        except Exception as err:
            raise _s3_error("read", self.uri(key), err) from err

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def version(self, key: str) -> str:
        head = self._head(key)
        return str(head.get("ETag", "")).strip('"') if head else ""

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as err:
            raise _s3_error("delete", self.uri(key), err) from err

    def create(self, key: str, data: bytes) -> bool:
        # Conditional PUT (If-None-Match: *): S3, MinIO and R2 refuse it with 412 if the key exists.
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
        except ClientError as err:
            if err.response["Error"].get("Code") in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                return False
            raise _s3_error("write", self.uri(key), err) from err
        except Exception as err:
            raise _s3_error("write", self.uri(key), err) from err
        return True

    def move(self, src: str, dst: str) -> str:
        # Server-side copy: the destination appears whole, in one step.
        try:
            self.client.copy_object(Bucket=self.bucket, Key=self._key(dst),
                                    CopySource={"Bucket": self.bucket, "Key": self._key(src)})
        except Exception as err:
            raise _s3_error("write", self.uri(dst), err) from err
        self.delete(src)
        return self.uri(dst)

    def list(self, prefix: str = "") -> list[str]:
        full = self._key(prefix)
        full = full + "/" if full and not full.endswith("/") else full
        keys = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys += [o["Key"] for o in page.get("Contents", [])]
        except Exception as err:
            raise _s3_error("list", self.uri(prefix), err) from err
        cut = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[cut:] for k in keys)


def s3_client():
    """A boto3 S3 client from the standard chain; endpoint/region come from AWS_* env vars or config files."""
    import boto3
    from botocore.config import Config

    style = os.environ.get("DREAMMOVER_S3_ADDRESSING_STYLE")
    cfg = Config(retries={"max_attempts": 5, "mode": "standard"},
                 s3={"addressing_style": style} if style else None)
    return boto3.session.Session().client("s3", config=cfg)


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
