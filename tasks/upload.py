"""Publish the per-pair JSON summary, last: after the clip (tasks/encode.py publish_clip) is complete.

A reader (or the archive's skip check) that sees the summary therefore sees the whole clip it
describes; a run that dies in between leaves no summary, so the pair is rendered again next time.
"""
from __future__ import annotations

import json

from prefect import task
from prefect.cache_policies import NO_CACHE

from .retry import retry_options
from .storage import write_uri


@task(name="write-summary", cache_policy=NO_CACHE, **retry_options())
def write_summary(summary: dict, destination: str) -> str:
    return write_uri(destination, (json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n").encode())
