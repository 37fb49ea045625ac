"""discover(): an archive's listing -> capture data (headers) -> bursts (streamed) -> checked pairs -> manifest entries."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable, Optional

from .bursts import Burst, group_bursts
from .config import DiscoverConfig
from .pairs import chains_of, entries_of
from .source import PhotoSource
from .state import DiscoverState

NO_EXIF = "no EXIF capture time: file time and name order used"


@dataclass
class DiscoverResult:
    """Manifest entries, rejected candidates with reasons, per-photo notes, the bursts, and the state to save."""

    source: str
    pairs: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    photos_report: list[dict] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)
    state: DiscoverState = field(default_factory=DiscoverState)
    photos: int = 0  # photos whose capture data were read this run


def discover(source: str, config: Optional[DiscoverConfig] = None, known: Optional[DiscoverState] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> DiscoverResult:
    """Find the clip-worthy pairs under `source` (local folder or s3:// prefix, recursive).

    EXIF of every new photo is read first (headers only: times are needed before sorting); then bursts are
    formed in time order and each is checked as soon as it is complete, holding only its thumbnails.
    known: the state of an earlier run; only photos new since (key or version) are read, plus the photos of
    the bursts they extend, and only those bursts are paired (again). progress(done, total): per photo read.
    """
    cfg = config or DiscoverConfig()
    src = PhotoSource(source, cfg.max_pixels, cfg.head_bytes)
    result = DiscoverResult(source=src.uri())
    if known is not None and known.burst_gap_s != cfg.burst_gap_s:
        known = None  # bursts were cut with another gap: read everything again (rendered pairs are still skipped)
    listing = src.listing()
    known_seen = known.seen if known else {}
    todo = [(k, i) for k, i in listing.items() if src.is_photo(k) and known_seen.get(k) != i.version]
    seen, new = {}, []
    for key, info in listing.items():
        if not src.is_photo(key):
            suffix = PurePosixPath(key).suffix or "no suffix"
            result.photos_report.append({"key": key, "note": f"skipped: not a photo ({suffix} files are not read)"})
        else:
            seen[key] = info.version
    for done, ((key, _), photo) in enumerate(zip(todo, src.captures(todo)), 1):
        if photo.problem:
            result.photos_report.append({"key": key, "note": f"skipped: {photo.problem}"})
        else:
            if photo.time_source == "file":
                result.photos_report.append({"key": key, "note": NO_EXIF})
            new.append(photo)
        if progress:
            progress(done, len(todo))
    result.photos = len(todo)
    # Known bursts keep only photos still there unchanged (a changed photo is read again as new).
    kept = []
    for b in known.bursts if known else []:
        photos = [p for p in b.photos if seen.get(p.key) == p.version]
        if photos:
            kept.append(b if len(photos) == len(b.photos) else b.model_copy(update={"photos": photos}))
    state = DiscoverState(source=src.uri(), burst_gap_s=cfg.burst_gap_s, seen=seen, bursts=kept)
    touched = state.extended_by(new, cfg.burst_gap_s)
    again = [p for b in touched for p in b.photos]
    untouched = [b for b in kept if all(b is not t for t in touched)]
    taken_ids = set()
    ordered = sorted(new + again, key=lambda p: (p.when, p.key))
    for burst in group_bursts(ordered, cfg.burst_gap_s):
        result.bursts.append(burst)
        if len(burst.photos) < 2:
            continue
        chains, rejected, problems = chains_of(burst, src, cfg)
        result.pairs += entries_of(burst, chains, cfg, taken_ids)
        result.rejected += rejected
        result.photos_report += problems
    result.state = state.model_copy(update={"bursts": untouched + result.bursts})
    return result
