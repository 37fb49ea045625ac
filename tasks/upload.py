"""Publish: the clip under a temporary key, then renamed into place; the per-pair JSON summary last.

A reader (or the archive's skip check) that sees the summary therefore sees the whole clip it
describes; a run that dies in between leaves at most a `.partial` object and no summary, so the
pair is rendered again next time.
"""
from __future__ import annotations

import json
import uuid

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from .retry import retry_options
from .storage import read_uri, split_uri, write_uri


@task(name="upload-clip", cache_policy=NO_CACHE, **retry_options())
def upload_clip(clip_uri: str, destination: str) -> str:
    store, name = split_uri(destination)
    temporary = f".{name}.{uuid.uuid4().hex[:12]}.partial"
    store.write_bytes(temporary, read_uri(clip_uri))
    uri = store.move(temporary, name)
    get_run_logger().info("wrote %s", uri)
    return uri


@task(name="write-summary", cache_policy=NO_CACHE, **retry_options())
def write_summary(summary: dict, destination: str) -> str:
    return write_uri(destination, (json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n").encode())
