"""Publish: copy the clip to its destination and write the per-pair JSON summary (S3 or local)."""
from __future__ import annotations

import json

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from .storage import read_uri, write_uri


@task(name="upload-clip", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def upload_clip(clip_uri: str, destination: str) -> str:
    uri = write_uri(destination, read_uri(clip_uri))
    get_run_logger().info("wrote %s", uri)
    return uri


@task(name="write-summary", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def write_summary(summary: dict, destination: str) -> str:
    return write_uri(destination, (json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n").encode())
