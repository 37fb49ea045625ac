"""What a scheduled discovery remembers between runs: the photos seen (key -> version) and the bursts they made."""
from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Optional

from pydantic import BaseModel, Field

from .bursts import Burst
from .photos import Photo


class DiscoverState(BaseModel):
    """Keys and versions (ETag, or size+mtime) seen, and every burst (singles included) with its photos' capture data."""

    source: str = ""
    burst_gap_s: float = 3.0
    seen: dict[str, str] = Field(default_factory=dict)
    bursts: list[Burst] = Field(default_factory=list)

    def extended_by(self, photos: list[Photo], gap_s: float) -> list[Burst]:
        """The known bursts that a new photo joins: same camera, within `gap_s` of one of their photos' span."""
        by_camera: dict[str, list[Burst]] = defaultdict(list)
        for b in self.bursts:
            by_camera[b.camera].append(b)
        for runs in by_camera.values():
            runs.sort(key=lambda b: b.start)
        starts = {camera: [b.start for b in runs] for camera, runs in by_camera.items()}
        touched: dict[int, Burst] = {}
        for p in photos:
            runs = by_camera.get(p.camera, [])
            # A camera's bursts never overlap (they are > gap apart): only the last one starting by when+gap can reach.
            i = bisect.bisect_right(starts.get(p.camera, []), p.when + gap_s) - 1
            for b in runs[max(i - 1, 0):i + 1]:
                if b.start - gap_s <= p.when <= b.end + gap_s:
                    touched[id(b)] = b
        return list(touched.values())


def load_state(uri: str) -> Optional[DiscoverState]:
    """The state saved at `uri`, or None when there is none yet (the first scheduled run)."""
    from dreammover_tasks.storage import read_uri, uri_exists

    if not uri_exists(uri):
        return None
    return DiscoverState.model_validate_json(read_uri(uri))


def save_state(state: DiscoverState, uri: str) -> str:
    """Write the state at `uri` (one atomic object write)."""
    from dreammover_tasks.storage import write_uri

    return write_uri(uri, state.model_dump_json().encode())
