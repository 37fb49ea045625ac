"""The S3 implementation of tasks.storage.Storage (AWS, MinIO, R2, ...), with conditional writes.

Compare-and-swap is S3's own: `If-None-Match: *` creates only if absent, `If-Match: <ETag>`
replaces or deletes only the version that was read (PutObject since 2024-11, DeleteObject with
boto3 >= 1.35.69). 412 PreconditionFailed means another writer won; 409 ConditionalRequestConflict
means a concurrent conditional request was in flight, which is worth a retry.
"""
from __future__ import annotations

import functools
import os

from .storage import ObjectInfo, Storage, StorageError, TransientStorageError, _join

# S3 error codes that mean "try again later"; everything else (AccessDenied, NoSuchBucket, ...) is permanent.
_TRANSIENT_S3 = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                 "InternalError", "ServiceUnavailable", "ConditionalRequestConflict", "409",
                 "503", "500", "502", "504"}
_LOST_RACE = {"PreconditionFailed", "412"}
_MISSING = {"404", "NoSuchKey", "NotFound"}


def _etag(answer: dict) -> str:
    """The object's version: its ETag without quotes (HEAD and a listing give the same one)."""
    return str(answer.get("ETag", "")).strip('"')


def _code(err) -> str:
    return str(err.response.get("Error", {}).get("Code"))


def _s3_error(what: str, uri: str, err: Exception) -> StorageError:
    """Sort a botocore error into transient or permanent, naming the URI and the code, never credentials."""
    from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError

    if isinstance(err, ClientError):
        code = _code(err)
        status = str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        kind = TransientStorageError if code in _TRANSIENT_S3 or status.startswith("5") else StorageError
        return kind(f"cannot {what} {uri}: {code}")
    if isinstance(err, (BotoConnectionError, HTTPClientError, ConnectionError, TimeoutError)):
        return TransientStorageError(f"cannot {what} {uri}: {type(err).__name__}")
    return StorageError(f"cannot {what} {uri}: {type(err).__name__}: {err}")


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

    def _read_or_none(self, key: str, call, read=lambda answer: answer):
        """read(call(...)) for the object at `key`, None if there is none; other errors raise, sorted."""
        from botocore.exceptions import ClientError

        try:
            return read(call(Bucket=self.bucket, Key=self._key(key)))
        except ClientError as err:
            if _code(err) in _MISSING:
                return None
            raise _s3_error("read", self.uri(key), err) from err
        except Exception as err:
            raise _s3_error("read", self.uri(key), err) from err

    def _head(self, key: str) -> dict | None:
        return self._read_or_none(key, self.client.head_object)

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def version(self, key: str) -> str:
        head = self._head(key)
        return _etag(head) if head else ""

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as err:
            raise _s3_error("delete", self.uri(key), err) from err

    def _conditional(self, what: str, key: str, call, **kwargs) -> bool:
        """Run a conditional request: True if it applied, False if its precondition failed."""
        from botocore.exceptions import ClientError

        try:
            call(Bucket=self.bucket, Key=self._key(key), **kwargs)
        except ClientError as err:
            if _code(err) in _LOST_RACE or _code(err) in _MISSING:
                return False
            raise _s3_error(what, self.uri(key), err) from err
        except Exception as err:
            raise _s3_error(what, self.uri(key), err) from err
        return True

    def create(self, key: str, data: bytes) -> bool:
        return self._conditional("write", key, self.client.put_object, Body=data, IfNoneMatch="*")

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        return self._read_or_none(key, self.client.get_object, lambda got: (got["Body"].read(), got["ETag"]))

    def replace_if(self, key: str, data: bytes, version: str) -> bool:
        return self._conditional("write", key, self.client.put_object, Body=data, IfMatch=version)

    def delete_if(self, key: str, version: str) -> bool:
        return self._conditional("delete", key, self.client.delete_object, IfMatch=version)

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
        return list(self.list_info(prefix))

    def list_info(self, prefix: str = "") -> dict[str, ObjectInfo]:
        # The ETag and Size come with every listed object: kept, so nobody HEADs the objects again.
        full = self._key(prefix)
        full = full + "/" if full and not full.endswith("/") else full
        found = {}
        cut = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                for o in page.get("Contents", []):
                    found[o["Key"][cut:]] = ObjectInfo(_etag(o), int(o.get("Size", 0)))
        except Exception as err:
            raise _s3_error("list", self.uri(prefix), err) from err
        return dict(sorted(found.items()))


def s3_client():
    """The boto3 S3 client of this process for the current AWS_* configuration (standard chain; endpoint and
    region from AWS_* env vars or config files), made once and shared: clients are thread-safe, and making
    one costs about 0.1 CPU s (botocore loads its service model), which every open_storage of an s3:// URI
    paid, about ten times per pair. Keyed by the process (a forked child makes its own) and the settings
    that shape a client, so a changed environment gets a new one."""
    settings = tuple(sorted((k, v) for k, v in os.environ.items()
                            if k.startswith("AWS_") or k == "DREAMMOVER_S3_ADDRESSING_STYLE"))
    return _shared_client(os.getpid(), settings)


@functools.lru_cache(maxsize=8)
def _shared_client(pid: int, settings: tuple):
    return new_s3_client()


def new_s3_client():
    """A new boto3 S3 client from the standard chain (s3_client shares one)."""
    import boto3
    from botocore.config import Config

    style = os.environ.get("DREAMMOVER_S3_ADDRESSING_STYLE")
    cfg = Config(retries={"max_attempts": 5, "mode": "standard"},
                 s3={"addressing_style": style} if style else None)
    return boto3.session.Session().client("s3", config=cfg)
