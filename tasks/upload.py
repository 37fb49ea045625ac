"""The per-pair JSON summary, written last: by publish_clip (tasks/encode.py) right after its clip.

A reader (or the archive's skip check) that sees the summary therefore sees the whole clip it
describes; a run that dies in between leaves no summary, so the pair is rendered again next time.
"""
from __future__ import annotations

import json

from .storage import write_uri


def summary_uri(output: str) -> str:
    """The per-pair JSON summary sits next to the clip: <pair>.mp4 -> <pair>.json."""
    return output.rsplit(".", 1)[0] + ".json"


def store_summary(summary: dict, destination: str) -> str:
    """Write the summary JSON at `destination` (publish_clip calls it right after the clip)."""
    return write_uri(destination, (json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n").encode())
