"""Read an archive's photos where they are: a local folder (header reads, mtime) or an s3:// prefix (ranged GETs)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Iterable, Iterator

from .photos import PHOTO_SUFFIXES, Photo, PhotoProblem, read_capture, thumbnail


REMOTE_READS = 16  # header GETs in flight on S3: each is a round trip, so serial reads would wait, not work


class PhotoSource:
    """The photos under `source` (recursive), listed once with versions and sizes (tasks.storage)."""

    def __init__(self, source: str, max_pixels: int, head_bytes: int = 65536):
        from dreammover_tasks.storage import LocalStorage, open_storage

        self.store = open_storage(source)
        self.local = isinstance(self.store, LocalStorage)
        self.max_pixels, self.head_bytes = max_pixels, head_bytes

    def uri(self, key: str = "") -> str:
        return self.store.uri(key)

    def listing(self) -> dict:
        """key -> ObjectInfo(version, size) of every file under the source, sorted by key."""
        return self.store.list_info()

    @staticmethod
    def is_photo(key: str) -> bool:
        return PurePosixPath(key).suffix.lower() in PHOTO_SUFFIXES

    def _head(self, key: str, n: int) -> tuple[bytes, float]:
        """The first n bytes of an object and its file time (mtime, or S3 LastModified): one ranged GET on S3."""
        if self.local:
            path = self.store.root / key
            with open(path, "rb") as f:
                return f.read(n), os.fstat(f.fileno()).st_mtime
        bucket, _, name = self.uri(key).removeprefix("s3://").partition("/")
        answer = self.store.client.get_object(Bucket=bucket, Key=name, Range=f"bytes=0-{n - 1}")
        return answer["Body"].read(), answer["LastModified"].timestamp()

    def read(self, key: str) -> bytes:
        """The whole photo (thumbnails need all of its entropy-coded data)."""
        return self.store.read_bytes(key)

    def capture(self, key: str, version: str, size: int) -> Photo:
        """The photo's capture data from its header; `problem` set (one line) when it cannot be used."""
        photo = Photo(key=key, uri=self.uri(key), version=version, size=size)
        try:
            if size == 0:
                raise PhotoProblem("empty file (0 bytes)")
            head, file_time = self._head(key, self.head_bytes)
            try:
                found = read_capture(head, key, size, file_time, self.max_pixels)
            except PhotoProblem:
                if len(head) >= size:
                    raise
                # The header did not fit the first bytes (a huge maker note, a HEIF box order): read it all.
                found = read_capture(self.read(key), key, size, file_time, self.max_pixels)
        except PhotoProblem as err:
            return photo.model_copy(update={"problem": str(err)})
        except Exception as err:  # storage errors (permissions, vanished objects): reported, never fatal
            return photo.model_copy(update={"problem": f"cannot read: {err}"})
        return found.model_copy(update={"uri": photo.uri, "version": version})

    def captures(self, items: Iterable[tuple[str, "object"]]) -> Iterator[Photo]:
        """capture() of each (key, ObjectInfo), in order; on S3 REMOTE_READS at a time, locally one by one."""
        read = lambda item: self.capture(item[0], item[1].version, item[1].size)  # noqa: E731
        if self.local:
            yield from map(read, items)
            return
        with ThreadPoolExecutor(REMOTE_READS) as pool:  # the boto3 client is thread-safe
            yield from pool.map(read, items)

    def thumbnail(self, key: str, size: int, mode: str = "RGB"):
        """RGB (or "L": grey) thumbnail of the photo (PhotoProblem when its pixels cannot be decoded)."""
        try:
            data = self.read(key)
        except Exception as err:
            raise PhotoProblem(f"cannot read: {err}") from err
        return thumbnail(data, key, size, self.max_pixels, mode)
